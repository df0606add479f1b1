"""One ModelPull run: resolve the source, download files in parallel, obey pause/cancel/SIGTERM, report.

Worker threads (``maxParallelFiles``) take files from a queue; the main thread reports progress
every quarter second (the Reporter sends at most one per second), reads pending actions and
watches for SIGTERM. Every stop goes through one event the partial-file writers check on each
chunk, so transfers end within a chunk; a transfer stuck on a silent server is abandoned after
a grace period (threads are daemons, the partial file stays valid).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from kubepilot_api.common import ErrorInfo
from kubepilot_api.modelpull import FileState, SourceType
from kubepilot_api.workers.config import DownloaderConfig
from kubepilot_api.workers.progress import DownloadReport, PendingAction, WorkState
from kubepilot_workers.downloader import http_transfer
from kubepilot_workers.downloader.errors import DownloadError, ErrorCode, Interrupted, classify
from kubepilot_workers.downloader.partfile import PartWriter, usable_cores
from kubepilot_workers.downloader.pipeline import FilePipeline
from kubepilot_workers.downloader.progress import FileProgress, ProgressTracker
from kubepilot_workers.downloader.retry import RetryPolicy, call_with_retries
from kubepilot_workers.downloader.sources import civitai_tasks, new_api_client, url_tasks
from kubepilot_workers.downloader.store import BlobStore
from kubepilot_workers.downloader.tasks import FileTask, Transport
from kubepilot_workers.reporting import Reporter

if TYPE_CHECKING:
    import httpx

    from kubepilot_workers.downloader.huggingface import HuggingFaceClient

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
STOP_GRACE_SECONDS = 5.0

EXIT_CODES = {
    WorkState.SUCCEEDED: 0,
    WorkState.PAUSED: 0,
    WorkState.CANCELLED: 0,
    WorkState.STOPPED: 143,  # 128 + SIGTERM, as a shell would report it
    WorkState.FAILED: 1,
}


class DownloadRun:
    """Everything one downloader process does for its ModelPull."""

    def __init__(
        self,
        config: DownloaderConfig,
        reporter: Reporter,
        *,
        token: str | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.reporter = reporter
        self.token = token
        self.retry = retry or RetryPolicy()
        self.store = BlobStore(Path(config.storeDir))
        self.target_dir = Path(config.targetDir)
        self.stop = threading.Event()
        self.signalled = threading.Event()
        self.pause: PendingAction | None = None
        self.cancel: PendingAction | None = None
        self.errors: list[DownloadError] = []
        self.revision = ""
        self.tracker = ProgressTracker([], resolved=False)
        # Created only for Civitai: building an httpx client (its TLS context) costs 40-90 ms of start-up.
        self._http: httpx.Client | None = None
        self._hf: HuggingFaceClient | None = None
        self._queue: deque[tuple[int, FileTask]] = deque()
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._workers_left = 0

    def request_stop_by_signal(self) -> None:
        """SIGTERM: stop now, keep partial files (safe to call from a signal handler)."""
        self.signalled.set()
        self.stop.set()
        self._wake.set()

    def run(self) -> DownloadReport:
        """Download everything (or stop); returns the final report, not yet sent."""
        try:
            return self._run()
        finally:
            if self._http is not None:
                self._http.close()

    def _run(self) -> DownloadReport:
        self.reporter.update(self.tracker.report(WorkState.STARTING, message="resolving the source"))
        try:
            tasks = self._resolve()
        except DownloadError as error:
            return self._failed(error)
        except Interrupted:
            return self.tracker.report(WorkState.STOPPED, message="stopped by SIGTERM while waiting to retry")
        except (OSError, ValueError) as error:
            # Client errors of the API calls are classified where they are made (sources, huggingface).
            return self._failed(classify(error, "resolving the source"))
        if self.signalled.is_set():
            return self.tracker.report(WorkState.STOPPED, message="stopped by SIGTERM before downloading")
        self.tracker = ProgressTracker(
            [FileProgress(self._report_path(t), self._size_for_progress(t)) for t in tasks]
        )
        parallel = min(self.config.maxParallelFiles, len(tasks))
        pipeline = FilePipeline(
            self.store,
            self.target_dir,
            self.tracker,
            self.stop,
            force=self.config.force,
            # Fewer transfers than cores: a hashing thread per file uses an idle core.
            hash_in_background=parallel < usable_cores(),
        )
        try:
            pipeline.check_free_space(tasks, self.config.expectedSizeBytes)
        except DownloadError as error:
            return self._failed(error)
        except OSError as error:
            return self._failed(classify(error, "checking free space"))
        self._queue.extend(enumerate(tasks))
        threads = [
            threading.Thread(target=self._worker, args=(pipeline,), name=f"download-{n}", daemon=True)
            for n in range(parallel)
        ]
        # Counted, not Thread.is_alive: a worker wakes this loop just before its thread ends, and
        # seeing it still alive would cost a whole extra tick at the end of every run.
        self._workers_left = len(threads)
        for thread in threads:
            thread.start()
        stop_deadline: float | None = None
        while self._workers_left:
            self._poll_controls()
            self.reporter.update(self._running_report())
            if self.stop.is_set():
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_SECONDS
                if time.monotonic() > stop_deadline:
                    log.warning("a transfer did not stop within %.0fs; leaving it behind", STOP_GRACE_SECONDS)
                    break
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
        self._poll_controls()
        return self._final(tasks, pipeline)

    def _resolve(self) -> list[FileTask]:
        source = self.config.source
        if source.type is SourceType.HUGGING_FACE:
            if source.huggingFace is None:
                raise DownloadError(ErrorCode.INVALID_CONFIG, "source type HuggingFace needs huggingFace")
            # A cluster worker tells the Hub no more than it must: without this, huggingface_hub
            # puts the installed torch version and any detected agent harness in its User-Agent,
            # and looking them up costs a tenth of a second. HF_HUB_DISABLE_TELEMETRY=0 sends them.
            os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
            # Imported here: huggingface_hub adds a quarter second of start-up that other sources skip.
            from kubepilot_workers.downloader.huggingface import HuggingFaceClient

            # The client retries each Hub request on its own (see retry), so resolve is called once.
            self._hf = HuggingFaceClient(
                source.huggingFace,
                endpoint=self.config.huggingFaceEndpoint,
                token=self.token,
                retry=self.retry,
                stop=self.stop,
            )
            tasks = self._hf.resolve()
            self.revision = self._hf.commit
            return tasks
        if source.type is SourceType.CIVITAI:
            civitai = source.civitai
            if civitai is None:
                raise DownloadError(ErrorCode.INVALID_CONFIG, "source type Civitai needs civitai")
            http = self._http = new_api_client()
            return call_with_retries(
                lambda: civitai_tasks(http, civitai, api_base=self.config.civitaiApiBase, key=self.token),
                self.retry,
                self.stop,
            )
        if not source.urls:
            raise DownloadError(ErrorCode.INVALID_CONFIG, "source type URL needs urls")
        return url_tasks(source.urls)

    def _worker(self, pipeline: FilePipeline) -> None:
        try:
            while not self.stop.is_set():
                with self._queue_lock:
                    if not self._queue:
                        return
                    index, task = self._queue.popleft()
                try:
                    # Not retried as a whole: its requests are retried one by one, within the budget.
                    self._run_file(pipeline, index, task)
                except Interrupted:
                    self.tracker.finish(index, FileState.PENDING)
                except Exception as error:
                    failure = classify(error, task.relative_path)
                    log.error("%s", failure.message)
                    self.errors.append(failure)
                    self.tracker.finish(index, FileState.FAILED)
                    # Fail fast: the other transfers stop too, keeping their partial files for a retry.
                    self.stop.set()
        finally:
            with self._queue_lock:
                self._workers_left -= 1
            self._wake.set()

    def _run_file(self, pipeline: FilePipeline, index: int, task: FileTask) -> None:
        try:
            pipeline.run(index, task, self._fetch)
        except (DownloadError, Interrupted):
            raise
        except Exception as error:
            raise classify(error, task.relative_path) from None

    def _fetch(self, task: FileTask, writer: PartWriter) -> None:
        if task.transport is Transport.HUGGING_FACE and self._hf is not None:
            self._hf.fetch(task, writer)
        else:
            http_transfer.fetch(
                task.url, task.headers, writer, size=task.size, label=task.relative_path, retry=self.retry
            )

    def _poll_controls(self) -> None:
        for action in self.reporter.take_actions():
            if action.name == "pause":
                self.pause = action
            elif action.name == "cancel":
                self.cancel = action
            else:
                self.reporter.ack(
                    action.name, action.nonce, ok=False, message="the downloader has no such action"
                )
                continue
            log.info("action %s received; stopping", action.name)
            self.stop.set()

    def _running_report(self) -> DownloadReport:
        state = WorkState.RUNNING
        message = "downloading"
        if self.stop.is_set():
            message = "stopping"
        return self.tracker.report(state, revision=self.revision, message=message)

    def _final(self, tasks: list[FileTask], pipeline: FilePipeline) -> DownloadReport:
        verified = self.tracker.all_verified() and not self.errors
        if self.cancel is not None and not verified:
            for task in tasks:
                pipeline.remove_partial(task)
            self.reporter.ack("cancel", self.cancel.nonce, message="cancelled; partial files removed")
            return self._done(WorkState.CANCELLED, "cancelled; partial files removed")
        if self.errors:
            return self._failed(self.errors[0])
        if verified:
            for action in (self.pause, self.cancel):
                if action is not None:
                    self.reporter.ack(action.name, action.nonce, message="the download had already completed")
            total = sum(f.sizeBytes for f in self.tracker.files() if f.sizeBytes > 0)
            return self._done(WorkState.SUCCEEDED, f"{len(tasks)} file(s), {total} bytes verified")
        if self.pause is not None:
            self.reporter.ack("pause", self.pause.nonce, message="paused; partial files kept for resume")
            return self._done(WorkState.PAUSED, "paused; partial files kept for resume")
        if self.signalled.is_set():
            log.info("stopped by a signal; partial files kept for resume")
            return self._done(WorkState.STOPPED, "stopped by SIGTERM; partial files kept for resume")
        return self._failed(
            DownloadError(ErrorCode.DOWNLOAD_FAILED, "stopped before every file was verified")
        )

    def _done(self, state: WorkState, message: str) -> DownloadReport:
        return self.tracker.report(state, revision=self.revision, message=message)

    def _failed(self, error: DownloadError) -> DownloadReport:
        return self.tracker.report(
            WorkState.FAILED,
            revision=self.revision,
            message=error.message,
            error=ErrorInfo(code=error.code.value, message=error.message[:4096]),
        )

    def _report_path(self, task: FileTask) -> str:
        """The file's final path relative to the models volume (absolute when outside it)."""
        destination = self.target_dir / task.relative_path
        relative = os.path.relpath(destination, self.config.modelsRoot) if self.config.modelsRoot else ".."
        return str(destination) if relative.startswith("..") else relative

    @staticmethod
    def _size_for_progress(task: FileTask) -> int:
        if task.size is not None:
            return task.size
        return task.size_hint if task.size_hint is not None else -1
