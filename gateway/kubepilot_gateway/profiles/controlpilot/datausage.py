"""Bytes of data on the storage volumes (``workspace_data_used_bytes``), measured now and then.

ControlPilot shows the data under ``/workspace`` (a ``du``) beside the filesystem figures. A walk
of the model, dataset and output volumes can take long on a big cluster volume, so it runs in a
thread, at most one at a time, and its result is kept for a while: a request gets the last figure
(refreshed in the background once it is older than the TTL) and waits only briefly for the first.
Files are counted by their size; a file reached through several hard links is counted once and
symbolic links are not followed (the Hugging Face cache links into its own blobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)


def data_bytes(roots: Sequence[str]) -> int:
    """Total size of the regular files under ``roots`` (blocking; unreadable entries are skipped)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    pending = [root for root in roots if root]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            stat = entry.stat(follow_symlinks=False)
                            key = (stat.st_dev, stat.st_ino)
                            if key not in seen:
                                seen.add(key)
                                total += stat.st_size
                    except OSError:
                        continue  # removed while we walked, or unreadable
        except OSError:
            continue
    return total


class DataUsage:
    """The last measured total of ``roots``, refreshed in the background after ``ttl_seconds``."""

    def __init__(self, roots: Sequence[str], ttl_seconds: float, first_wait_seconds: float) -> None:
        self.roots = [root for root in roots if root]
        self.ttl = ttl_seconds
        self.first_wait = first_wait_seconds
        self._value: int | None = None
        self._measured_at = float("-inf")
        self._task: asyncio.Task[None] | None = None

    async def _measure(self) -> None:
        started = time.monotonic()
        self._value = await asyncio.to_thread(data_bytes, self.roots)
        self._measured_at = time.monotonic()
        log.debug("volume data: %d bytes (walked in %.1f s)", self._value, self._measured_at - started)

    async def get(self) -> int | None:
        """The latest figure; None when there are no volumes or the first walk is still running."""
        if not self.roots:
            return None
        stale = time.monotonic() - self._measured_at >= self.ttl
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._measure())
        if self._value is None and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.first_wait)
        return self._value

    async def close(self) -> None:
        """Stop waiting for a walk in progress (its thread finishes on its own)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
