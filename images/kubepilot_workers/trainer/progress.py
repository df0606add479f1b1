"""Training progress as the operator sees it: smoothed loss, throughput, ETA, checkpoints, samples."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.trainingrun import (
    Checkpoint,
    SampleSet,
    SamplingProgress,
    TrainingOutputFile,
    TrainingProgress,
)
from kubepilot_api.workers.progress import TrainingReport, WorkState
from kubepilot_workers.trainer.resources import ResourceProbe

LOSS_SMOOTHING = 0.9
RATE_SMOOTHING = 0.8
MAX_CHECKPOINTS_REPORTED = 20


@dataclass
class ProgressTracker:
    """Accumulates what the reports carry; :meth:`report` builds the next one."""

    max_steps: int
    steps_per_epoch: int
    step: int = 0
    loss: float | None = None
    learning_rate: float | None = None
    steps_per_second: float = 0.0
    checkpoints: list[Checkpoint] = field(default_factory=list)
    samples: SampleSet = field(default_factory=SampleSet)
    outputs: list[TrainingOutputFile] = field(default_factory=list)
    sampling: SamplingProgress | None = None
    """The sampling pass in progress, if any (OneTrainer's ``sample_*_progress``)."""
    probe: ResourceProbe | None = None
    """Adds the process's (and CUDA allocator's) figures to each report's metrics."""
    _last_step_time: float | None = None

    def record_step(self, step: int, loss: float, learning_rate: float) -> None:
        """An optimizer step finished with this (un-smoothed) loss."""
        moment = time.monotonic()
        if self._last_step_time is not None and step > self.step:
            elapsed = max(moment - self._last_step_time, 1e-9)
            rate = (step - self.step) / elapsed
            self.steps_per_second = (
                rate
                if self.steps_per_second == 0
                else (RATE_SMOOTHING * self.steps_per_second + (1 - RATE_SMOOTHING) * rate)
            )
        self._last_step_time = moment
        self.step = step
        if math.isfinite(loss):
            self.loss = (
                loss if self.loss is None else LOSS_SMOOTHING * self.loss + (1 - LOSS_SMOOTHING) * loss
            )
        self.learning_rate = learning_rate

    def resume_at(self, step: int) -> None:
        self.step = step
        self._last_step_time = None

    def add_checkpoint(self, step: int, path: str) -> None:
        self.checkpoints = [*self.checkpoints, Checkpoint(step=step, path=path, createdAt=now())][
            -MAX_CHECKPOINTS_REPORTED:
        ]

    def add_samples(self, directory: str, latest: str, count: int) -> None:
        self.samples = SampleSet(dir=directory, count=self.samples.count + count, latest=latest)

    def progress(self) -> TrainingProgress:
        per_epoch = max(1, self.steps_per_epoch)
        eta = -1
        if self.steps_per_second > 0:
            eta = round((self.max_steps - self.step) / self.steps_per_second)
        max_epochs = math.ceil(self.max_steps / per_epoch)
        # The last step of the last epoch still belongs to it (not to an epoch that never starts).
        epoch = min(self.step // per_epoch, max(0, max_epochs - 1))
        return TrainingProgress(
            step=self.step,
            maxSteps=self.max_steps,
            epoch=epoch,
            maxEpochs=max_epochs,
            epochStep=self.step - epoch * per_epoch,
            percent=min(100, self.step * 100 // max(1, self.max_steps)),
            loss=self.loss,
            learningRate=self.learning_rate,
            stepsPerSecond=round(self.steps_per_second, 4),
            etaSeconds=max(0, eta) if eta >= 0 else -1,
            lastUpdatedTime=now(),
        )

    def report(self, state: WorkState, message: str = "", error: ErrorInfo | None = None) -> TrainingReport:
        """A report of the current progress (the reporter stamps sequence and acks)."""
        metrics: dict[str, float] = {}
        if self.loss is not None:
            metrics["loss"] = self.loss
        if self.learning_rate is not None:
            metrics["learning_rate"] = self.learning_rate
        if self.probe is not None:
            metrics.update(self.probe.metrics())
        return TrainingReport(
            sequence=0,
            time=now(),
            state=state,
            message=message[:4096],
            error=error,
            progress=self.progress(),
            metrics=metrics,
            checkpoints=list(self.checkpoints),
            samples=self.samples if self.samples.count else None,
            sampling=self.sampling,
            outputs=list(self.outputs),
        )
