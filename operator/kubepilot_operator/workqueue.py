"""A work queue of object keys, as controller-runtime has: each key queued once, processed by one
worker at a time, re-queued when it changed while being processed, with delays and backoff.

Everything that may change an object's desired or observed state enqueues its key: a watch event
of the object or of a child, a progress report, a timer. The reconcile of a key is level-based:
it reads the current state, so ten events in a burst cost one pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple


class WorkKey(NamedTuple):
    """One object: its plural (``modelpulls``, ...), namespace and name."""

    plural: str
    namespace: str
    name: str


MAX_BACKOFF_SECONDS = 30.0


class WorkQueue:
    """Keys waiting to be reconciled, with per-key delay, coalescing and failure backoff."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[WorkKey] = asyncio.Queue()
        self._queued: set[WorkKey] = set()
        self._active: set[WorkKey] = set()
        self._dirty: set[WorkKey] = set()
        self._timers: dict[WorkKey, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[WorkKey, int] = {}
        self._last_done: dict[WorkKey, float] = {}

    def add(self, key: WorkKey, delay: float = 0.0) -> None:
        """Queue ``key`` now, or after ``delay`` seconds (an earlier request wins)."""
        if delay > 0:
            loop = asyncio.get_running_loop()
            due = loop.time() + delay
            current = self._timers.get(key)
            if current is not None and current[0] <= due:
                return
            if current is not None:
                current[1].cancel()
            self._timers[key] = (due, loop.call_at(due, self._fire, key))
            return
        if key in self._active:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_coalesced(self, key: WorkKey, interval: float) -> None:
        """Queue ``key`` at most once per ``interval`` after its last pass (progress reports)."""
        since = time.monotonic() - self._last_done.get(key, 0.0)
        self.add(key, max(0.0, interval - since))

    def _fire(self, key: WorkKey) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def pending(self) -> int:
        return len(self._queued) + len(self._timers)

    async def run(
        self,
        worker: Callable[[WorkKey], Awaitable[float | None]],
        on_error: Callable[[WorkKey, Exception], None],
    ) -> None:
        """Process keys forever: ``worker`` returns seconds until the key wants another pass, or None."""
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            requeue: float | None = None
            try:
                requeue = await worker(key)
                self._failures.pop(key, None)
            except Exception as error:  # a failed pass is retried with backoff, never lost
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                requeue = min(MAX_BACKOFF_SECONDS, 0.25 * 2**failures)
                on_error(key, error)
            finally:
                self._active.discard(key)
                self._last_done[key] = time.monotonic()
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif requeue is not None:
                self.add(key, requeue)

    def forget(self, key: WorkKey) -> None:
        """Drop bookkeeping of a deleted object."""
        self._failures.pop(key, None)
        self._last_done.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()
