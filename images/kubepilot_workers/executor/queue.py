"""The executor's job queue: one job at a time, highest priority first, then first come.

A single worker thread calls ``ExecutorBackend.run``. Each job with a ``ReportTarget`` gets its own
:class:`~kubepilot_workers.reporting.Reporter`, so the operator's intake receives the same reports
from a service as from a one-shot generator pod. Final reports are sent from a small thread pool,
so an unreachable intake never holds up the next job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.generationjob import GenerationProgress, OutputImage, Timings
from kubepilot_api.workers.executor import ExecutorJob, ExecutorJobState, ExecutorSubmit
from kubepilot_api.workers.progress import MIN_REPORT_INTERVAL_SECONDS, GenerationReport, WorkState
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, ExecutorBackend, JobContext
from kubepilot_workers.reporting import Reporter

log = logging.getLogger(__name__)

MAX_FINISHED_JOBS = 1000
"""Finished jobs remembered for GET and idempotent resubmission; the oldest are forgotten first."""

_FINAL_STATES = {
    ExecutorJobState.SUCCEEDED: WorkState.SUCCEEDED,
    ExecutorJobState.FAILED: WorkState.FAILED,
    ExecutorJobState.CANCELLED: WorkState.CANCELLED,
}


@dataclass
class _Job:
    submit: ExecutorSubmit
    order: int
    context: JobContext
    reporter: Reporter | None
    state: ExecutorJobState = ExecutorJobState.QUEUED
    progress: GenerationProgress | None = None
    outputs: list[OutputImage] = field(default_factory=list)
    error: ErrorInfo | None = None
    message: str = ""
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    load_seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    def timings(self) -> Timings:
        started = self.started_at if self.started_at is not None else self.finished_at or time.monotonic()
        ended = self.finished_at if self.finished_at is not None else time.monotonic()
        run = max(0.0, ended - started) if self.started_at is not None else 0.0
        return Timings(
            queueSeconds=round(max(0.0, started - self.submitted_at), 3),
            loadSeconds=round(self.load_seconds, 3),
            runSeconds=round(max(0.0, run - self.load_seconds), 3),
        )


class JobQueue:
    """Jobs in front of one backend. Thread-safe; ``start`` runs the worker thread."""

    def __init__(
        self,
        backend: ExecutorBackend,
        *,
        report_interval: float = MIN_REPORT_INTERVAL_SECONDS,
        reporter_factory: Callable[[str, str, float], Reporter] | None = None,
    ) -> None:
        self.backend = backend
        self._report_interval = report_interval
        self._new_reporter = reporter_factory or (
            lambda url, token, interval: Reporter(url, token, interval=interval)
        )
        self._lock = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._waiting: list[_Job] = []
        self._running: _Job | None = None
        self._order = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="kubepilot-executor", daemon=True)
        self._finishers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kubepilot-final-report")

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the running job, stop taking new ones, and wait for the worker to end."""
        with self._lock:
            self._stopping = True
            if self._running is not None:
                self._running.context.cancelled.set()
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            queued = [job.reporter for job in self._waiting if job.reporter is not None]
        for reporter in queued:
            reporter.close()
        self._finishers.shutdown(wait=True)

    def submit(self, submit: ExecutorSubmit) -> tuple[ExecutorJob, bool]:
        """Queue a job; returns (job, created). A known jobId returns the existing job (idempotent)."""
        with self._lock:
            existing = self._jobs.get(submit.jobId)
            if existing is not None:
                return self._snapshot(existing), False
            self._order += 1
            job = _Job(submit=submit, order=self._order, context=self._context(submit), reporter=None)
            if submit.report is not None:
                job.reporter = self._new_reporter(
                    submit.report.url, submit.report.token, self._report_interval
                )
            self._jobs[submit.jobId] = job
            self._waiting.append(job)
            self._waiting.sort(key=lambda queued: (-queued.submit.priority, queued.order))
            self._forget_old_jobs()
            snapshot = self._snapshot(job)
            self._lock.notify_all()
        position = snapshot.queuePosition
        self._push(job, WorkState.STARTING, f"queued at position {position}")
        return snapshot, True

    def get(self, job_id: str) -> ExecutorJob | None:
        """One job, or None when unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            return self._snapshot(job) if job else None

    def list(self) -> list[ExecutorJob]:
        """All jobs remembered, in submission order."""
        with self._lock:
            return [self._snapshot(job) for job in sorted(self._jobs.values(), key=lambda job: job.order)]

    def counts(self) -> tuple[int, int]:
        """(queued, running)."""
        with self._lock:
            return len(self._waiting), 1 if self._running is not None else 0

    def cancel(self, job_id: str) -> ExecutorJob | None:
        """Cancel a queued job at once, interrupt a running one; None when unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.context.cancelled.set()
            if job.state is not ExecutorJobState.QUEUED:
                return self._snapshot(job)
            self._waiting.remove(job)
            job.message = "cancelled while queued"
            self._finish_locked(job, ExecutorJobState.CANCELLED)
            return self._snapshot(job)

    def wait(self, job_id: str, timeout: float) -> ExecutorJob | None:
        """Block until the job finished or the timeout passed; returns the job then."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            return None
        job.done.wait(timeout)
        return self.get(job_id)

    def _context(self, submit: ExecutorSubmit) -> JobContext:
        job_id = submit.jobId

        def report_progress(progress: GenerationProgress) -> None:
            with self._lock:
                job = self._jobs.get(job_id)
                if job is None:
                    return
                job.progress = progress
            self._push(job, WorkState.RUNNING, "generating")

        return JobContext(
            job_id=job_id,
            request=submit.request,
            output_dir=Path(submit.outputDir),
            report_progress=report_progress,
        )

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._waiting.pop(0)
                job.state = ExecutorJobState.RUNNING
                job.started_at = time.monotonic()
                self._running = job
            self._push(job, WorkState.RUNNING, "started")
            self._execute(job)

    def _execute(self, job: _Job) -> None:
        state = ExecutorJobState.FAILED
        try:
            outputs = self.backend.run(job.context)
            job.outputs = list(outputs)
            state = ExecutorJobState.SUCCEEDED
            job.message = f"{len(job.outputs)} image(s) written"
        except Cancelled as cancelled:
            state = ExecutorJobState.CANCELLED
            job.message = str(cancelled) or "interrupted"
        except ExecutionError as error:
            job.error = ErrorInfo(code=error.code, message=error.message[:4096])
            job.message = error.message[:4096]
        except Exception as error:  # a backend bug must fail the job, never the executor
            log.exception("job %s: backend raised", job.submit.jobId)
            job.error = ErrorInfo(code="INTERNAL_ERROR", message=f"{type(error).__name__}: {error}"[:4096])
            job.message = "internal error"
        job.load_seconds = float(getattr(self.backend, "last_load_seconds", 0.0) or 0.0)
        with self._lock:
            self._running = None
            self._finish_locked(job, state)

    def _finish_locked(self, job: _Job, state: ExecutorJobState) -> None:
        """Mark the job finished and send its final report in the background (caller holds the lock)."""
        job.state = state
        job.finished_at = time.monotonic()
        report = self._report(job, _FINAL_STATES[state], job.message)
        job.done.set()
        reporter = job.reporter
        job.reporter = None
        if reporter is not None:
            try:
                self._finishers.submit(reporter.finish, report)
            except RuntimeError:  # shutting down: send it from here rather than lose it
                threading.Thread(target=reporter.finish, args=(report,), daemon=True).start()
        log.info("job %s %s", job.submit.jobId, state.value)

    def _push(self, job: _Job, state: WorkState, message: str) -> None:
        with self._lock:
            reporter = job.reporter
            if reporter is None or job.state not in (ExecutorJobState.QUEUED, ExecutorJobState.RUNNING):
                return
            report = self._report(job, state, message)
        reporter.update(report)

    @staticmethod
    def _report(job: _Job, state: WorkState, message: str) -> GenerationReport:
        return GenerationReport(
            sequence=0,
            time=now(),
            state=state,
            message=message,
            error=job.error,
            progress=job.progress,
            outputs=job.outputs[:64],
            timings=job.timings(),
        )

    def _snapshot(self, job: _Job) -> ExecutorJob:
        if job.state is ExecutorJobState.RUNNING:
            position = 0
        elif job.state is ExecutorJobState.QUEUED:
            position = self._waiting.index(job) + 1
        else:
            position = -1
        return ExecutorJob(
            jobId=job.submit.jobId,
            state=job.state,
            queuePosition=position,
            progress=job.progress,
            outputs=list(job.outputs),
            error=job.error,
        )

    def _forget_old_jobs(self) -> None:
        finished = [job for job in self._jobs.values() if job.done.is_set()]
        for job in sorted(finished, key=lambda job: job.order)[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del self._jobs[job.submit.jobId]
