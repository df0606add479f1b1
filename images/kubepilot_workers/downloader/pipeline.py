"""One file's way into place: skip if verified, else fetch to ``.part``, verify, promote, link."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from kubepilot_api.modelpull import FileState
from kubepilot_workers.downloader.errors import DownloadError, ErrorCode
from kubepilot_workers.downloader.partfile import READ_CHUNK, PartWriter, sha256_of
from kubepilot_workers.downloader.progress import ProgressTracker
from kubepilot_workers.downloader.store import BlobStore
from kubepilot_workers.downloader.tasks import FileTask, git_blob_sha1

log = logging.getLogger(__name__)

Fetch = Callable[[FileTask, PartWriter], None]
"""Fills a partial file from the task's source, resuming from the writer's size."""


def git_sha1_of(path: Path) -> str:
    digest = git_blob_sha1(path.stat().st_size)
    with path.open("rb") as file:
        while chunk := file.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FilePipeline:
    """Brings files into the type folder through the blob store; shared by the worker threads."""

    def __init__(
        self,
        store: BlobStore,
        target_dir: Path,
        tracker: ProgressTracker,
        stop: threading.Event,
        *,
        force: bool,
        hash_in_background: bool = True,
    ) -> None:
        self.store = store
        self.target_dir = target_dir
        self.tracker = tracker
        self.stop = stop
        self.force = force
        self.hash_in_background = hash_in_background
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def destination(self, task: FileTask) -> Path:
        return self.target_dir / task.relative_path

    def run(self, index: int, task: FileTask, fetch: Fetch) -> None:
        """Put file ``index`` in place, verified; raises DownloadError or Interrupted."""
        # Two files with the same content share a partial file and a blob: one at a time.
        with self._lock_for(task.partial_key):
            destination = self.destination(task)
            if not self.force:
                sha = self._already_verified(task, destination)
                if sha is not None:
                    log.info("%s: already verified, skipped", task.relative_path)
                    self.tracker.finish(index, FileState.VERIFIED, sha, size=destination.stat().st_size)
                    return
            self._download(index, task, destination, fetch)

    def check_free_space(self, tasks: list[FileTask], expected_total: int = -1) -> None:
        """Fail before downloading when the models volume clearly cannot hold what is missing.

        Per file when every size is known (published, or hinted by the spec); otherwise from the
        spec's ``expectedSizeBytes`` when it is set (a catalog's figure for a URL or Civitai file whose
        size is not published), less what is already in place. Files already in place and bytes
        already in partial files need no room. Running out of space anyway (other writers) is still
        caught on write.
        """
        sizes = [task.size if task.size is not None else task.size_hint for task in tasks]
        needed = 0
        if all(size is not None for size in sizes):
            for task, size in zip(tasks, sizes, strict=True):
                needed += max(0, (size or 0) - self._bytes_in_place(task))
        elif expected_total >= 0:
            needed = max(0, expected_total - sum(self._bytes_in_place(task) for task in tasks))
        else:
            return
        self.store.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.store.root).free
        if needed > free:
            raise DownloadError(
                ErrorCode.INSUFFICIENT_STORAGE,
                f"{needed} bytes to download but only {free} free on the models volume",
            )

    def _bytes_in_place(self, task: FileTask) -> int:
        """Bytes of this file that need no new room: the whole file when it is in place, else its partial."""
        destination = self.destination(task)
        if destination.exists() and not self.force:
            return destination.stat().st_size
        part = self.store.partial_path(task.partial_key)
        return part.stat().st_size if part.exists() else 0

    def remove_partial(self, task: FileTask) -> None:
        self.store.partial_path(task.partial_key).unlink(missing_ok=True)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _expected_sha256(self, task: FileTask) -> str | None:
        if task.sha256:
            return task.sha256
        if task.git_sha1:
            return None
        return self.store.read_ref(task.partial_key)

    def _already_verified(self, task: FileTask, destination: Path) -> str | None:
        """The sha256 when the destination already holds the verified file (linking the blob in)."""
        expected = self._expected_sha256(task)
        if expected is not None:
            if self.store.is_placed(destination, expected):
                return expected
            if self.store.has_blob(expected):
                # Another pull (or an earlier run) verified these bytes: link them, download nothing.
                self.store.place(self.store.blob_path(expected), destination)
                return expected
            if (
                destination.is_file()
                and _size_matches(destination, task.size)
                and sha256_of(destination) == expected
            ):
                self.store.adopt(destination, expected)
                return expected
            return None
        # Small files kept in git (configs, tokenizers): re-hashing them is cheap.
        if (
            task.git_sha1
            and destination.is_file()
            and _size_matches(destination, task.size)
            and git_sha1_of(destination) == task.git_sha1
        ):
            sha = sha256_of(destination)
            self.store.adopt(destination, sha)
            return sha
        return None

    def _download(self, index: int, task: FileTask, destination: Path, fetch: Fetch) -> None:
        part = self.store.partial_path(task.partial_key)
        if self.force:
            part.unlink(missing_ok=True)
        with PartWriter(
            part,
            self.stop,
            on_bytes=lambda count: self.tracker.add_bytes(index, count),
            on_total=lambda total: self.tracker.set_size(index, total),
            hash_in_background=self.hash_in_background,
        ) as writer:
            if writer.resumed_from:
                log.info("%s: resuming at byte %d", task.relative_path, writer.resumed_from)
            self.tracker.start(index, writer.size)
            fetch(task, writer)
            size = writer.size
            sha = writer.sha256()
        self._verify(task, part, size, sha)
        blob = self.store.promote(part, sha, replace=self.force)
        self.store.place(blob, destination)
        if not task.sha256 and not task.git_sha1:
            self.store.write_ref(task.partial_key, sha)
        self.tracker.finish(index, FileState.VERIFIED, sha, size=size)
        log.info("%s: verified (%d bytes)", task.relative_path, size)

    def _verify(self, task: FileTask, part: Path, size: int, sha: str) -> None:
        problem = ""
        if task.size is not None and size != task.size:
            problem = f"size {size} instead of {task.size}"
        elif task.sha256 and sha != task.sha256:
            problem = f"sha256 {sha} instead of {task.sha256}"
        elif task.git_sha1 and git_sha1_of(part) != task.git_sha1:
            problem = f"git blob id differs from {task.git_sha1}"
        if problem:
            # Bad bytes are worthless for a resume: drop them so the next run starts clean.
            part.unlink(missing_ok=True)
            raise DownloadError(
                ErrorCode.CHECKSUM_MISMATCH, f"{task.relative_path}: {problem}; nothing was put in place"
            )


def _size_matches(path: Path, size: int | None) -> bool:
    return size is None or path.stat().st_size == size
