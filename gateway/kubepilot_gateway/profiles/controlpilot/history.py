"""ControlPilot's telemetry history (CP-42): a ring buffer of CPU and GPU samples in the gateway.

A background task (started and stopped with the profile app's lifespan) takes a sample every
``sample_seconds`` and keeps ``retention_seconds`` of them in memory. The history is a dashboard
chart, not a record: a gateway restart starts it afresh, as ControlPilot's own does, and each
replica keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
Sampler = Callable[[], Awaitable[JsonObject]]
"""Takes one point without its ``ts``: ``{"cpu": {...}, "gpus": [...]}``."""


def _number(value: float) -> float | int:
    """30.0 → 30, so whole settings read as ControlPilot's integers."""
    return int(value) if float(value).is_integer() else value


class TelemetryHistory:
    """Points ``{ts, cpu, gpus}`` of the last ``retention_seconds``, oldest first."""

    def __init__(self, sample_seconds: float, retention_seconds: float) -> None:
        self.sample_seconds = sample_seconds
        self.retention_seconds = retention_seconds
        # One more than the window holds, so a full window is still there after a late sample.
        self._points: deque[JsonObject] = deque(maxlen=math.ceil(retention_seconds / sample_seconds) + 1)

    def add(self, point: JsonObject, ts: float) -> None:
        self._points.append({"ts": round(ts, 3), **point})
        self._expire(ts)

    def _expire(self, now: float) -> None:
        while self._points and self._points[0]["ts"] < now - self.retention_seconds:
            self._points.popleft()

    def __len__(self) -> int:
        return len(self._points)

    def body(self, max_seconds: int, now: float) -> JsonObject:
        """CP-42's answer: the points of the last ``max_seconds`` (0: everything retained)."""
        self._expire(now)
        points = list(self._points)
        available = points[-1]["ts"] - points[0]["ts"] if points else 0
        if max_seconds > 0:
            points = [point for point in points if point["ts"] >= now - max_seconds]
        return {
            "sample_seconds": _number(self.sample_seconds),
            "retention_seconds": _number(self.retention_seconds),
            "available_seconds": _number(round(available, 3)),
            "from_ts": points[0]["ts"] if points else None,
            "to_ts": points[-1]["ts"] if points else None,
            "points": points,
        }


class HistoryRecorder:
    """Runs ``sampler`` every ``history.sample_seconds`` into ``history`` until stopped."""

    def __init__(self, history: TelemetryHistory, sampler: Sampler) -> None:
        self.history = history
        self.sampler = sampler
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        interval = self.history.sample_seconds
        started = time.monotonic()
        ticks = 0
        while True:
            try:
                self.history.add(await self.sampler(), time.time())
            except Exception:
                # A failed sample leaves a gap in the chart; the next tick tries again.
                log.exception("telemetry sample failed")
            ticks += 1
            # On a fixed grid, so slow samples do not make the interval drift; a missed tick is skipped.
            next_at = started + ticks * interval
            now = time.monotonic()
            if next_at < now:
                ticks = math.ceil((now - started) / interval)
                next_at = started + ticks * interval
            await asyncio.sleep(next_at - now)

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name="controlpilot-telemetry-history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
