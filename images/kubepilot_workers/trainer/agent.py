"""The in-pod action agent: pending actions from the intake become :class:`TrainerControl` calls.

The reporter collects pending actions from every intake reply; the agent takes them, calls the
matching control method and acknowledges each one (ok with the method's message, or not ok with
the reason). The built-in trainer polls the agent between steps; the adapters for external
trainers run it on a background thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from kubepilot_api.workers.progress import PendingAction
from kubepilot_workers.trainer.control import ActionFailed, TrainerControl

log = logging.getLogger(__name__)

KNOWN_ACTIONS = ("save", "backup", "sample", "stop")
DEFAULT_POLL_INTERVAL_SECONDS = 0.5


class ActionSource(Protocol):
    """Where actions come from and acknowledgements go (the :class:`Reporter`)."""

    def take_actions(self) -> list[PendingAction]: ...

    def ack(self, name: str, nonce: str, *, ok: bool = True, message: str = "") -> None: ...


ActionExchange = Callable[[list[PendingAction]], list[PendingAction]]
"""Makes every training process see rank 0's actions (a broadcast); identity for one process."""


class ActionAgent:
    """Dispatches pending actions to a trainer and acknowledges them."""

    def __init__(
        self, source: ActionSource, control: TrainerControl, exchange: ActionExchange | None = None
    ) -> None:
        self._source = source
        self._control = control
        self._exchange = exchange
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.handled: list[tuple[str, bool, str]] = []
        """(action, ok, message) for each action handled, oldest first."""

    def poll(self) -> int:
        """Carry out the actions received since the last poll; returns how many there were."""
        actions = self._source.take_actions()
        if self._exchange is not None:
            actions = self._exchange(actions)
        for action in actions:
            ok, message = self._dispatch(action)
            self.handled.append((action.name, ok, message))
            self._source.ack(action.name, action.nonce, ok=ok, message=message[:4096])
        return len(actions)

    def _dispatch(self, action: PendingAction) -> tuple[bool, str]:
        log.info("action %s requested", action.name)
        try:
            if action.name == "save":
                return True, self._control.save()
            if action.name == "backup":
                return True, self._control.backup()
            if action.name == "sample":
                return True, self._control.sample(dict(action.params))
            if action.name == "stop":
                return True, self._control.stop()
        except ActionFailed as error:
            log.warning("action %s failed: %s", action.name, error)
            return False, str(error) or f"{action.name} failed"
        except Exception as error:
            # An action must never bring the training down: report it in the ack instead.
            log.exception("action %s raised", action.name)
            return False, f"{action.name} failed: {type(error).__name__}: {error}"
        return False, f"unknown action {action.name!r}; this trainer supports {', '.join(KNOWN_ACTIONS)}"

    def start(self, interval: float = DEFAULT_POLL_INTERVAL_SECONDS) -> None:
        """Poll on a background thread until :meth:`stop_polling` (for trainers running elsewhere)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stopping.wait(interval):
                self.poll()

        self._thread = threading.Thread(target=loop, name="kubepilot-action-agent", daemon=True)
        self._thread.start()

    def stop_polling(self) -> None:
        """Stop the background thread (after handling what is already queued)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.poll()
