"""Follow one ComfyUI prompt to its end: WebSocket events first, history polling as the fallback.

ComfyUI writes a prompt's history entry when it finishes (success, error or interrupt), then
sends ``executing`` with a null node. The follower returns that entry; events in between feed
the progress. While the socket is silent (or gone) it checks history and the queue, so a
missed event, a restarted ComfyUI or an unreachable one never leaves a job waiting forever.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from kubepilot_workers.adapters.comfyui_progress import ComfyProgress
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext

log = logging.getLogger(__name__)

SILENCE_CHECK_SECONDS = 5.0
"""Check history and the queue after this long without an event for the prompt."""
HISTORY_WAIT_SECONDS = 10.0
"""How long a finished prompt's history entry may take to appear."""


class ComfyAPI(Protocol):
    """The HTTP calls the follower needs (ComfyUIBackend implements them)."""

    @property
    def poll_interval(self) -> float: ...

    @property
    def unavailable_after(self) -> float: ...

    @property
    def cancel_grace(self) -> float: ...

    def history(self, prompt_id: str) -> dict[str, Any] | None: ...

    def queue_ids(self) -> tuple[set[str], set[str]]: ...

    def delete_queued(self, prompt_id: str) -> None: ...

    def interrupt(self, prompt_id: str) -> None: ...


def execution_error(data: dict[str, Any]) -> ExecutionError:
    """An ``execution_error`` event (or history message) as an ExecutionError."""
    exception_type = str(data.get("exception_type", ""))
    detail = str(data.get("exception_message", "")).strip()
    out_of_memory = "OutOfMemory" in exception_type or "out of memory" in detail.lower()
    where = f"node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
    message = f"{where}: {exception_type + ': ' if exception_type else ''}{detail}"
    return ExecutionError("OUT_OF_MEMORY" if out_of_memory else "EXECUTION_FAILED", message[:4000])


def history_failure(entry: dict[str, Any]) -> ExecutionError | None:
    """The failure a history entry records, None for a success (or an old ComfyUI without status)."""
    status = entry.get("status")
    if not isinstance(status, dict) or status.get("status_str") != "error":
        return None
    for message in status.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict):
            if message[0] == "execution_error":
                return execution_error(message[1])
            if message[0] == "execution_interrupted":
                return ExecutionError("INTERRUPTED", "the prompt was interrupted on ComfyUI")
    return ExecutionError("EXECUTION_FAILED", "ComfyUI reports that the prompt failed")


class EventFollower:
    """Follows one prompt; ``follow()`` returns its history entry or raises."""

    def __init__(
        self,
        api: ComfyAPI,
        prompt_id: str,
        context: JobContext,
        progress: ComfyProgress,
        socket: ClientConnection | None,
    ) -> None:
        self._api = api
        self._prompt_id = prompt_id
        self._context = context
        self._progress = progress
        self._socket = socket
        self._cancel_requested_at: float | None = None
        self._last_heard = time.monotonic()
        self._last_check = time.monotonic()
        self._last_contact = time.monotonic()

    def follow(self) -> dict[str, Any]:
        """Wait for the prompt to finish, following cancellation of the job."""
        while True:
            self._handle_cancel()
            if self._socket is not None:
                message = self._receive()
                if message is not None and self._handle(message):
                    return self._finished_entry()
            else:
                self._context.cancelled.wait(self._api.poll_interval)
            clock = time.monotonic()
            silent = clock - self._last_heard >= SILENCE_CHECK_SECONDS
            if self._socket is None or (silent and clock - self._last_check >= SILENCE_CHECK_SECONDS):
                self._last_check = clock
                entry = self._check()
                if entry is not None:
                    if self._cancel_requested_at is not None:
                        raise Cancelled()
                    return entry

    def _receive(self) -> dict[str, Any] | None:
        assert self._socket is not None
        try:
            raw = self._socket.recv(timeout=self._api.poll_interval)
        except TimeoutError:
            return None
        except ConnectionClosed:
            log.warning("ComfyUI WebSocket closed; following prompt %s by polling", self._prompt_id)
            self._socket = None
            return None
        if isinstance(raw, bytes):
            return None  # a latent preview
        try:
            message = json.loads(raw)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def _handle(self, message: dict[str, Any]) -> bool:
        """Apply one event; True when the prompt is done."""
        data = message.get("data")
        if not isinstance(data, dict) or data.get("prompt_id") != self._prompt_id:
            return False
        self._last_heard = time.monotonic()
        match message.get("type"):
            case "execution_start":
                self._progress.execution_started()
            case "execution_cached":
                self._progress.cached(data.get("nodes") or [])
            case "executing":
                if data.get("node") is None:
                    return True
                self._progress.executing(str(data["node"]))
            case "progress":
                node = data.get("node")
                self._progress.step(
                    int(data.get("value", 0)), int(data.get("max", -1)), str(node) if node else None
                )
            case "executed":
                images = (data.get("output") or {}).get("images") or []
                self._progress.images_written(
                    sum(1 for i in images if isinstance(i, dict) and i.get("type") == "output")
                )
            case "execution_success":
                return True
            case "execution_error":
                raise execution_error(data)
            case "execution_interrupted":
                if self._cancel_requested_at is not None:
                    raise Cancelled()
                raise ExecutionError("INTERRUPTED", "the prompt was interrupted on ComfyUI by someone else")
        return False

    def _handle_cancel(self) -> None:
        if not self._context.cancelled.is_set():
            return
        if self._cancel_requested_at is not None:
            if time.monotonic() - self._cancel_requested_at > self._api.cancel_grace:
                log.warning("ComfyUI did not confirm the interrupt of %s; giving up on it", self._prompt_id)
                raise Cancelled()
            return
        self._cancel_requested_at = time.monotonic()
        try:
            if not self._progress.started:
                self._api.delete_queued(self._prompt_id)
                running, _ = self._api.queue_ids()
                if self._prompt_id not in running:
                    raise Cancelled()
            self._api.interrupt(self._prompt_id)
        except ExecutionError as error:
            # The backend is gone, and the prompt with it: nothing is left running for this job.
            raise Cancelled() from error

    def _check(self) -> dict[str, Any] | None:
        """History entry when done; raises when ComfyUI lost the prompt or stayed unreachable."""
        try:
            entry = self._api.history(self._prompt_id)
            if entry is None:
                running, pending = self._api.queue_ids()
                if self._prompt_id not in running | pending:
                    entry = self._api.history(self._prompt_id)
                    if entry is None:
                        if self._cancel_requested_at is not None:
                            raise Cancelled()
                        raise ExecutionError("BACKEND_ERROR", "ComfyUI lost the prompt (was it restarted?)")
        except ExecutionError as error:
            # A short outage (a restart of the proxy) is ridden out; a long one fails the job.
            if (
                error.code == "BACKEND_UNAVAILABLE"
                and time.monotonic() - self._last_contact < self._api.unavailable_after
            ):
                return None
            raise
        self._last_contact = time.monotonic()
        return entry

    def _finished_entry(self) -> dict[str, Any]:
        deadline = time.monotonic() + HISTORY_WAIT_SECONDS
        while True:
            entry = self._api.history(self._prompt_id)
            if entry is not None:
                return entry
            if time.monotonic() > deadline:
                raise ExecutionError("BACKEND_ERROR", "ComfyUI finished the prompt but kept no history of it")
            time.sleep(self._api.poll_interval)
