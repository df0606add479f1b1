"""Thread-safe download counters and the DownloadReport built from them (speed over a moving window)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.modelpull import DownloadProgress, FileState, PulledFile
from kubepilot_api.workers.progress import DownloadReport, WorkState

SPEED_WINDOW_SECONDS = 5.0
MAX_REPORTED_FILES = 200


@dataclass
class FileProgress:
    """One file as the report shows it."""

    path: str
    size: int
    done: int = 0
    sha256: str = ""
    state: FileState = FileState.PENDING


class ProgressTracker:
    """Counts bytes as writers report them and turns the counts into reports."""

    def __init__(self, files: list[FileProgress], *, resolved: bool = True) -> None:
        self._lock = threading.Lock()
        self._files = files
        # Before the source is resolved nothing is known: totals and percent say -1, not "0 of 0, 100%".
        self._resolved = resolved
        self._transferred = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._current: list[int] = []

    def add_bytes(self, index: int, count: int) -> None:
        """Bytes written to (or, negative, truncated from) file ``index``'s partial file."""
        with self._lock:
            self._files[index].done = max(0, self._files[index].done + count)
            self._transferred += max(0, count)

    def set_size(self, index: int, size: int) -> None:
        """The exact size, once a server states it."""
        with self._lock:
            self._files[index].size = size

    def start(self, index: int, already: int) -> None:
        """File ``index`` begins downloading with ``already`` bytes resumed from disk."""
        with self._lock:
            entry = self._files[index]
            entry.done, entry.state = already, FileState.DOWNLOADING
            self._current.append(index)

    def finish(self, index: int, state: FileState, sha256: str = "", size: int | None = None) -> None:
        with self._lock:
            entry = self._files[index]
            entry.state = state
            if sha256:
                entry.sha256 = sha256
            if size is not None:
                entry.size = size
            if state is FileState.VERIFIED:
                entry.done = entry.size
            if index in self._current:
                self._current.remove(index)

    def files(self) -> list[PulledFile]:
        with self._lock:
            return [
                PulledFile(path=f.path, sizeBytes=f.size, sha256=f.sha256, state=f.state)
                for f in self._files[:MAX_REPORTED_FILES]
            ]

    def all_verified(self) -> bool:
        with self._lock:
            return all(f.state is FileState.VERIFIED for f in self._files)

    def progress(self) -> DownloadProgress:
        """Counts now; speed is the transfer rate over the last few seconds."""
        moment = time.monotonic()
        with self._lock:
            self._samples.append((moment, self._transferred))
            while len(self._samples) > 2 and moment - self._samples[0][0] > SPEED_WINDOW_SECONDS:
                self._samples.popleft()
            first_time, first_bytes = self._samples[0]
            span = moment - first_time
            speed = int((self._transferred - first_bytes) / span) if span > 0.05 else 0
            known = self._resolved and all(f.size >= 0 for f in self._files)
            total = sum(f.size for f in self._files) if known else -1
            done = sum(min(f.done, f.size) if f.size >= 0 else f.done for f in self._files)
            current = self._files[self._current[-1]].path if self._current else ""
            files_done = sum(f.state is FileState.VERIFIED for f in self._files)
            files_failed = sum(f.state is FileState.FAILED for f in self._files)
        percent = min(100, done * 100 // total) if total > 0 else (100 if total == 0 else -1)
        eta = int((total - done) / speed) if total >= 0 and speed > 0 else -1
        return DownloadProgress(
            bytesDone=done,
            bytesTotal=total,
            filesDone=files_done,
            filesTotal=len(self._files) if self._resolved else -1,
            filesFailed=files_failed,
            percent=percent,
            speedBytesPerSecond=speed,
            etaSeconds=eta if files_done < len(self._files) or not self._resolved else 0,
            currentFile=current[:1024],
            lastUpdatedTime=now(),
        )

    def report(
        self,
        state: WorkState,
        *,
        revision: str = "",
        message: str = "",
        error: ErrorInfo | None = None,
    ) -> DownloadReport:
        return DownloadReport(
            sequence=0,
            time=now(),
            state=state,
            message=message[:4096],
            error=error,
            progress=self.progress(),
            resolvedRevision=revision,
            files=self.files(),
        )
