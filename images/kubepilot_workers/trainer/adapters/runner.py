"""Run an external trainer for one TrainingRun: launch, follow, carry actions, report the end.

``run(config, reporter)`` is what the trainer CLI calls for kohya, diffusion-pipe and OneTrainer.
A stop (an action, or SIGTERM to this process when the pod is deleted) is passed to the tool the way
it understands; when the tool is still running after the grace period it gets SIGTERM, and SIGKILL
a little later.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from kubepilot_api.common import ErrorInfo
from kubepilot_api.trainingrun import TrainerKind, TrainingOutputFile
from kubepilot_api.workers.config import TrainerConfig
from kubepilot_api.workers.progress import PendingAction, WorkState
from kubepilot_workers.reporting import Reporter
from kubepilot_workers.trainer.adapters.base import AdapterConfigError, ToolAdapter, stop_grace_seconds
from kubepilot_workers.trainer.adapters.diffusion_pipe import DiffusionPipeAdapter
from kubepilot_workers.trainer.adapters.kohya import KohyaAdapter
from kubepilot_workers.trainer.adapters.onetrainer import OneTrainerAdapter
from kubepilot_workers.trainer.adapters.process import LaunchError, ToolProcess
from kubepilot_workers.trainer.adapters.progress import ProgressTracker, classify_failure
from kubepilot_workers.trainer.control import ActionFailed, TrainerControl

log = logging.getLogger(__name__)

ADAPTERS: dict[TrainerKind, type[ToolAdapter]] = {
    TrainerKind.KOHYA: KohyaAdapter,
    TrainerKind.DIFFUSION_PIPE: DiffusionPipeAdapter,
    TrainerKind.ONETRAINER: OneTrainerAdapter,
}
POLL_SECONDS = 0.2
KILL_AFTER_TERM_SECONDS = 10.0
EXIT_FAILED = 1
EXIT_INVALID = 2


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _sigterm_forwarded(on_signal: Callable[[], None]) -> Iterator[None]:
    """While the tool runs, SIGTERM to this process (pod deletion) becomes a graceful stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        on_signal()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Session:
    """One launched tool: the loop that follows it and carries actions to it."""

    def __init__(
        self, adapter: ToolAdapter, process: ToolProcess, reporter: Reporter, signal_stop: threading.Event
    ) -> None:
        self.adapter = adapter
        self.process = process
        self.reporter = reporter
        self.tracker = adapter.tracker
        self.control: TrainerControl = adapter.control(process)
        self.grace = stop_grace_seconds()
        self.stop_requested_at: float | None = None
        self.term_sent_at: float | None = None
        self.signal_stop = signal_stop

    def follow(self) -> int:
        while True:
            code = self.process.wait(POLL_SECONDS)
            if code is not None:
                return code
            if self.signal_stop.is_set() and self.stop_requested_at is None:
                self._stop("SIGTERM received")
            for action in self.reporter.take_actions():
                self._act(action)
            self._escalate()
            message = "stopping" if self.stop_requested_at is not None else None
            self.reporter.update(self.tracker.report(WorkState.RUNNING, message=message))

    def _stop(self, why: str) -> str:
        if self.stop_requested_at is not None:
            return "already stopping"
        self.stop_requested_at = time.monotonic()
        log.info("stopping the trainer: %s", why)
        try:
            return self.control.stop()
        except ActionFailed as error:
            # A tool-level stop failed: fall back to the signal right away.
            self.process.signal_group(signal.SIGTERM)
            self.term_sent_at = time.monotonic()
            return f"{error}; sent SIGTERM instead"

    def _act(self, action: PendingAction) -> None:
        name = action.name
        try:
            if name == "stop":
                message = self._stop("stop action")
            elif name == "save":
                message = self.control.save()
            elif name == "backup":
                message = self.control.backup()
            elif name == "sample":
                message = self.control.sample(dict(action.params))
            else:
                raise ActionFailed(
                    f"action {name!r} is not supported by the {self.adapter.tool_name} adapter"
                )
        except ActionFailed as error:
            self.reporter.ack(name, action.nonce, ok=False, message=str(error))
            return
        except OSError as error:
            self.reporter.ack(
                name, action.nonce, ok=False, message=f"could not pass {name} to the trainer: {error}"
            )
            return
        self.reporter.ack(name, action.nonce, ok=True, message=message)

    def _escalate(self) -> None:
        now = time.monotonic()
        if self.stop_requested_at is None:
            return
        if self.term_sent_at is None and now - self.stop_requested_at >= self.grace:
            log.warning("the trainer did not stop within %.0f s: sending SIGTERM", self.grace)
            self.process.signal_group(signal.SIGTERM)
            self.term_sent_at = now
        elif self.term_sent_at is not None and now - self.term_sent_at >= KILL_AFTER_TERM_SECONDS:
            self.process.signal_group(signal.SIGKILL)


def _fail(reporter: Reporter, tracker: ProgressTracker, code: str, message: str, exit_code: int) -> int:
    log.error("%s: %s", code, message)
    reporter.finish(
        tracker.report(WorkState.FAILED, message=message, error=ErrorInfo(code=code, message=message))
    )
    return exit_code


def _outputs(adapter: ToolAdapter) -> list[TrainingOutputFile]:
    config, tracker = adapter.config, adapter.tracker
    outputs = []
    for path in adapter.final_outputs()[:50]:
        outputs.append(
            TrainingOutputFile(
                path=tracker.relative(path),
                sha256=_sha256(path) if path.is_file() else "",
                baseModel=config.baseModelPath,
                dataset=config.datasetDir,
                step=tracker.step,
            )
        )
    return outputs


def run(config: TrainerConfig, reporter: Reporter) -> int:
    """Train with the external tool ``config.trainer`` names; returns the process exit code."""
    stop_signal = threading.Event()
    # Installed before the tool starts: a SIGTERM in between must not orphan the tool's process group.
    with _sigterm_forwarded(stop_signal.set):
        return _run(config, reporter, stop_signal)


def _run(config: TrainerConfig, reporter: Reporter, stop_signal: threading.Event) -> int:
    tracker = ProgressTracker(Path(config.outputDir))
    adapter_class = ADAPTERS.get(config.trainer)
    if adapter_class is None:
        return _fail(
            reporter,
            tracker,
            "INVALID_SPEC",
            f"{config.trainer.value} is not an external trainer",
            EXIT_INVALID,
        )
    adapter = adapter_class(config, tracker)
    try:
        plan = adapter.prepare()
    except (AdapterConfigError, OSError) as error:
        return _fail(reporter, tracker, "INVALID_SPEC", f"{adapter.tool_name}: {error}", EXIT_INVALID)
    if stop_signal.is_set():
        reporter.finish(tracker.report(WorkState.STOPPED, message="stopped before the trainer started"))
        return 0
    reporter.update(tracker.report(WorkState.STARTING, message=f"starting {adapter.tool_name}"))

    def on_line(line: str) -> None:
        tracker.remember_line(line)
        adapter.parse_line(line)

    try:
        process = ToolProcess(plan, adapter.paths.log_file, on_line)
    except LaunchError as error:
        return _fail(reporter, tracker, "TRAINING_FAILED", str(error), EXIT_FAILED)
    session = _Session(adapter, process, reporter, stop_signal)
    try:
        exit_code = session.follow()
    finally:
        process.close()
    log.info("%s exited with code %d", adapter.tool_name, exit_code)

    if session.stop_requested_at is not None:
        report = tracker.report(
            WorkState.STOPPED, message="stopped on request", outputs=_outputs(adapter), exit_code=exit_code
        )
        reporter.finish(report)
        return 0
    if exit_code == 0:
        outputs = _outputs(adapter)
        message = "training finished" if outputs else "training finished; no final output file was found"
        reporter.finish(tracker.report(WorkState.SUCCEEDED, message=message, outputs=outputs, exit_code=0))
        return 0
    failure = classify_failure(tracker.tail_lines(), exit_code)
    report = tracker.report(WorkState.FAILED, message=failure.message, error=failure, exit_code=exit_code)
    reporter.finish(report)
    return EXIT_FAILED
