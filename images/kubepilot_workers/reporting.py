"""Push progress to the operator's intake: coalesced, never blocking the work, never failing it.

``update()`` only stores the latest report; a background thread sends the newest one at most
once per interval, so a tight training loop can call it every step. ``finish()`` sends the final
report at once (with a few retries) and writes it as the termination message, the fallback the
operator reads when the intake was unreachable. Pending actions from each reply are queued for
the worker (``take_actions``) and acknowledged in a later report (``ack``).

Pushes go through the standard library's ``urllib.request``, not httpx: a report is one small POST
at most once a second, and every worker imports this module at start, where httpx (with the CLI
extras it loads when they are installed) adds a tenth of a second the downloader's end-to-end time
would pay. Like httpx, urllib honours the ``*_proxy`` environment variables.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TypeVar

from kubepilot_api.workers.env import (
    DEFAULT_TERMINATION_MESSAGE_PATH,
    DEFAULT_TOKEN_FILE,
    REPORT_URL_ENV,
    TERMINATION_MESSAGE_ENV,
    TOKEN_FILE_ENV,
)
from kubepilot_api.workers.progress import (
    MIN_REPORT_INTERVAL_SECONDS,
    TOKEN_HEADER,
    TOKEN_SCHEME,
    ActionAck,
    IntakeReply,
    PendingAction,
    ReportBase,
    termination_message,
)

log = logging.getLogger(__name__)

ReportT = TypeVar("ReportT", bound=ReportBase)

FINAL_ATTEMPTS = 3
REQUEST_TIMEOUT_SECONDS = 5.0


class Reporter:
    """Sends one workload's reports to the intake (or only writes the termination message)."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        *,
        termination_path: Path | None = None,
        interval: float = MIN_REPORT_INTERVAL_SECONDS,
        log_without_intake: bool = False,
    ) -> None:
        self._url = url or None
        # A worker started by hand (no intake URL) logs each coalesced report instead, so whoever runs
        # it sees the same progress the operator would get; other ranks of a job pass False.
        self._log_reports = log_without_intake and self._url is None
        self._headers = {TOKEN_HEADER: f"{TOKEN_SCHEME} {token}"} if token else {}
        self._termination_path = termination_path
        self._interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._latest: ReportBase | None = None
        self._sequence = 0
        self._acks: list[ActionAck] = []
        self._seen_nonces: set[tuple[str, str]] = set()
        self._actions: list[PendingAction] = []
        self.sent = 0
        """Reports the intake accepted (for tests and logs)."""
        self.failed = 0
        """Pushes that failed; the work goes on regardless."""
        self._thread = threading.Thread(target=self._run, name="kubepilot-reporter", daemon=True)
        if self._url is not None or self._log_reports:
            self._thread.start()

    @classmethod
    def from_env(cls, interval: float = MIN_REPORT_INTERVAL_SECONDS) -> Reporter:
        """A reporter configured by the environment the operator gives the pod.

        Without ``KUBEPILOT_REPORT_URL`` (a worker run by hand) each report is logged at INFO instead.
        """
        token_file = Path(os.environ.get(TOKEN_FILE_ENV, DEFAULT_TOKEN_FILE))
        token = token_file.read_text().strip() if token_file.is_file() else None
        termination = os.environ.get(TERMINATION_MESSAGE_ENV, DEFAULT_TERMINATION_MESSAGE_PATH)
        return cls(
            os.environ.get(REPORT_URL_ENV),
            token,
            termination_path=Path(termination),
            interval=interval,
            log_without_intake=True,
        )

    def update(self, report: ReportBase) -> None:
        """Remember the newest report; the background thread sends it soon."""
        with self._lock:
            self._latest = report
        self._wake.set()

    def ack(self, name: str, nonce: str, *, ok: bool = True, message: str = "") -> None:
        """Acknowledge an action; it rides on the next report."""
        with self._lock:
            self._acks.append(ActionAck(name=name, nonce=nonce, ok=ok, message=message))
        self._wake.set()

    def take_actions(self) -> list[PendingAction]:
        """Actions received since the last call, each nonce once."""
        with self._lock:
            actions, self._actions = self._actions, []
        return actions

    def finish(self, report: ReportT) -> ReportT:
        """Send the final report now and write it as the termination message; returns what was sent."""
        report = report.model_copy(update={"final": True})
        self._stop_thread()
        with self._lock:
            sent = self._stamp(report)
        # Without an intake (no URL) the termination message is the only channel: no retries.
        for attempt in range(FINAL_ATTEMPTS if self._url is not None else 0):
            if self._post(sent):
                break
            time.sleep(0.2 * 2**attempt)
        self._write_termination_message(sent)
        self.close()
        return sent

    def close(self) -> None:
        """Stop the background thread; later pushes are not made."""
        self._stop_thread()
        self._url = None

    def _stop_thread(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 1)

    def _stamp(self, report: ReportT) -> ReportT:
        """Give the report the next sequence number and the pending acks (caller holds the lock)."""
        self._sequence += 1
        acks, self._acks = self._acks, []
        return report.model_copy(update={"sequence": self._sequence, "acks": [*report.acks, *acks]})

    def _run(self) -> None:
        last_sent = 0.0
        while not self._closed.is_set():
            self._wake.wait()
            if self._closed.is_set():
                return
            pause = self._interval - (time.monotonic() - last_sent)
            if pause > 0 and self._closed.wait(pause):
                return
            self._wake.clear()
            with self._lock:
                base = self._latest
                if base is None:
                    continue
                report = self._stamp(base)
            last_sent = time.monotonic()
            if self._log_reports:
                log.info("progress: %s", report.model_dump_json(exclude_none=True, exclude={"acks"}))
                continue
            if not self._post(report):
                # Acks must not be lost with a failed push: put them back for the next one.
                with self._lock:
                    self._acks = [*report.acks, *self._acks]

    def _post(self, report: ReportBase) -> bool:
        url = self._url
        if url is None:
            return False
        request = urllib.request.Request(
            url,
            data=report.model_dump_json(exclude_none=True).encode(),
            headers={**self._headers, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            error.close()
            self.failed += 1
            log.warning("progress push refused: HTTP %s", error.code)
            return False
        except (OSError, ValueError) as error:
            # URLError, timeouts and resets are OSErrors; a malformed URL is a ValueError.
            self.failed += 1
            log.warning("progress push failed: %s", type(error).__name__)
            return False
        try:
            reply = IntakeReply.model_validate_json(body)
        except ValueError:
            self.failed += 1
            log.warning("progress push: unreadable intake reply")
            return False
        self.sent += 1
        with self._lock:
            for action in reply.pendingActions:
                key = (action.name, action.nonce)
                if key not in self._seen_nonces:
                    self._seen_nonces.add(key)
                    self._actions.append(action)
        return True

    def _write_termination_message(self, report: ReportBase) -> None:
        path = self._termination_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(termination_message(report))
        except OSError as error:
            log.warning("could not write the termination message to %s: %s", path, error)
