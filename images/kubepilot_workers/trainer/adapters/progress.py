"""What an external trainer has told us so far, turned into TrainingReports.

The line parsers of each adapter feed a :class:`ProgressTracker` from the reader thread; the run
loop reads it to build reports. Counts follow ``TrainingProgress``: -1 while unknown, epochs
0-based.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.trainingrun import Checkpoint, SampleSet, TrainingOutputFile, TrainingProgress
from kubepilot_api.workers.progress import TrainingReport, WorkState

MAX_CHECKPOINTS = 20
TAIL_LINES = 80
SAMPLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".mp4", ".gif"}

_TIME = r"(?:\d+:)?\d+:\d+"
TQDM_LINE = re.compile(
    r"^(?P<desc>[A-Za-z_ ]+?):\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    rf"\[(?P<elapsed>{_TIME})<(?P<remaining>{_TIME}|\?)"
    r"(?:,\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>it/s|s/it))?(?:,\s*(?P<postfix>[^\]]*))?\]"
)
"""A tqdm progress line: ``steps:  12%|█▏   | 120/1000 [01:02<07:40,  1.91it/s, avr_loss=0.0812]``."""


@dataclass(frozen=True)
class TqdmLine:
    """The parts of one tqdm refresh."""

    desc: str
    n: int
    total: int
    remaining_seconds: int
    iterations_per_second: float
    postfix: dict[str, str]


def parse_clock(text: str) -> int:
    """``07:40`` or ``1:07:40`` as seconds; -1 for ``?``."""
    if text == "?":
        return -1
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def parse_tqdm(line: str) -> TqdmLine | None:
    """Parse a tqdm line (with or without a postfix); None for any other line."""
    match = TQDM_LINE.match(line.strip())
    if match is None:
        return None
    rate_text, unit = match.group("rate"), match.group("unit")
    rate = 0.0
    if rate_text and rate_text != "?":
        value = float(rate_text)
        rate = value if unit == "it/s" else (1.0 / value if value > 0 else 0.0)
    postfix: dict[str, str] = {}
    for item in (match.group("postfix") or "").split(","):
        key, sep, text = item.partition("=")
        if sep:
            postfix[key.strip()] = text.strip()
    return TqdmLine(
        desc=match.group("desc").strip(),
        n=int(match.group("n")),
        total=int(match.group("total")),
        remaining_seconds=parse_clock(match.group("remaining")),
        iterations_per_second=rate,
        postfix=postfix,
    )


def as_float(text: str | None) -> float | None:
    """A float from tool output, or None when it is missing or not a number (``nan`` included)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None


OOM_PATTERNS = (
    re.compile(r"OutOfMemoryError"),
    re.compile(r"CUDA out of memory", re.IGNORECASE),
    re.compile(r"CUDA error: out of memory", re.IGNORECASE),
    re.compile(r"HIP out of memory", re.IGNORECASE),
)
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt)\b:?.*$")


def classify_failure(tail: list[str], exit_code: int) -> ErrorInfo:
    """An error code and message for a tool that exited non-zero, from the last lines it wrote."""
    for line in reversed(tail):
        if any(pattern.search(line) for pattern in OOM_PATTERNS):
            return ErrorInfo(code="OUT_OF_MEMORY", message=line.strip()[:1024])
    for line in reversed(tail):
        stripped = line.strip()
        if EXCEPTION_LINE.match(stripped):
            return ErrorInfo(code="TRAINING_FAILED", message=f"{stripped[:1000]} (exit code {exit_code})")
    return ErrorInfo(code="TRAINING_FAILED", message=f"the trainer exited with code {exit_code}")


class ProgressTracker:
    """Thread-safe state of one training run, fed by a tool's output."""

    def __init__(self, output_dir: Path) -> None:
        self._lock = threading.Lock()
        self._output_dir = output_dir
        self.step = 0
        self.max_steps = -1
        self.epoch = 0
        self.max_epochs = -1
        self.epoch_step = 0
        self.loss: float | None = None
        self.learning_rate: float | None = None
        self.steps_per_second = 0.0
        self.eta_seconds = -1
        self.metrics: dict[str, float] = {}
        self.checkpoints: list[Checkpoint] = []
        self.sample_dir = ""
        self.sample_count = 0
        self.latest_sample = ""
        self.message = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.started = time.monotonic()
        self.seen_progress = False

    def relative(self, path: str | Path) -> str:
        """A path as reported: relative to the outputs volume (the output folder's parent) when under it."""
        resolved = Path(path)
        base = self._output_dir.parent
        try:
            return str(resolved.relative_to(base))
        except ValueError:
            return str(resolved)

    def remember_line(self, line: str) -> None:
        with self._lock:
            self.tail.append(line)

    def update(
        self,
        *,
        step: int | None = None,
        max_steps: int | None = None,
        epoch: int | None = None,
        max_epochs: int | None = None,
        epoch_step: int | None = None,
        loss: float | None = None,
        learning_rate: float | None = None,
        steps_per_second: float | None = None,
        eta_seconds: int | None = None,
    ) -> None:
        """Set the fields given; leave the others as they are."""
        with self._lock:
            self.seen_progress = True
            if step is not None:
                self.step = max(0, step)
            if max_steps is not None and max_steps > 0:
                self.max_steps = max_steps
            if epoch is not None:
                self.epoch = max(0, epoch)
            if max_epochs is not None and max_epochs > 0:
                self.max_epochs = max_epochs
            if self.max_epochs > 0:
                # Tools count a finished run as "epoch N of N"; the 0-based current epoch stops at N-1.
                self.epoch = min(self.epoch, self.max_epochs - 1)
            if epoch_step is not None:
                self.epoch_step = max(0, epoch_step)
            if loss is not None:
                self.loss = loss
                self.metrics["loss"] = loss
            if learning_rate is not None:
                self.learning_rate = learning_rate
                self.metrics["learning_rate"] = learning_rate
            if steps_per_second is not None and steps_per_second >= 0:
                self.steps_per_second = steps_per_second
            if eta_seconds is not None:
                self.eta_seconds = eta_seconds
            elif self.max_steps > 0 and self.steps_per_second > 0:
                self.eta_seconds = int((self.max_steps - self.step) / self.steps_per_second)

    def add_checkpoint(self, path: str | Path, step: int | None = None) -> None:
        with self._lock:
            checkpoint = Checkpoint(
                step=self.step if step is None else step, path=self.relative(path), createdAt=now()
            )
            self.checkpoints = [c for c in self.checkpoints if c.path != checkpoint.path][
                -(MAX_CHECKPOINTS - 1) :
            ]
            self.checkpoints.append(checkpoint)

    def add_sample(self, sample_dir: str | Path, latest: str | Path = "", count: int = 1) -> None:
        with self._lock:
            self.sample_dir = self.relative(sample_dir)
            self.sample_count += count
            if latest:
                self.latest_sample = self.relative(latest)

    def scan_samples(self, sample_dir: Path) -> None:
        """Count the images in a sample folder and remember the newest (tools write them after
        announcing them, so this runs on every announcement and once more at the end)."""
        try:
            images = [p for p in sample_dir.iterdir() if p.is_file() and p.suffix.lower() in SAMPLE_SUFFIXES]
        except OSError:
            return
        if not images:
            return
        newest = max(images, key=lambda p: (p.stat().st_mtime, p.name))
        with self._lock:
            self.sample_dir = self.relative(sample_dir)
            self.sample_count = len(images)
            self.latest_sample = self.relative(newest)

    def set_message(self, message: str) -> None:
        with self._lock:
            self.message = message[:512]

    def tail_lines(self) -> list[str]:
        with self._lock:
            return list(self.tail)

    def progress(self) -> TrainingProgress:
        with self._lock:
            percent = -1
            if self.max_steps > 0:
                percent = max(0, min(100, int(100 * self.step / self.max_steps)))
            return TrainingProgress(
                step=self.step,
                maxSteps=self.max_steps,
                epoch=self.epoch,
                maxEpochs=self.max_epochs,
                epochStep=self.epoch_step,
                percent=percent,
                loss=self.loss,
                learningRate=self.learning_rate,
                stepsPerSecond=round(self.steps_per_second, 4),
                etaSeconds=self.eta_seconds,
                lastUpdatedTime=now(),
            )

    def report(
        self,
        state: WorkState,
        *,
        message: str | None = None,
        error: ErrorInfo | None = None,
        outputs: list[TrainingOutputFile] | None = None,
        exit_code: int | None = None,
    ) -> TrainingReport:
        """A report of everything known now (sequence is set by the Reporter)."""
        progress = self.progress()
        with self._lock:
            samples = None
            if self.sample_count:
                samples = SampleSet(dir=self.sample_dir, count=self.sample_count, latest=self.latest_sample)
            return TrainingReport(
                sequence=0,
                time=now(),
                state=state,
                message=(self.message if message is None else message)[:4096],
                error=error,
                progress=progress if self.seen_progress else None,
                metrics=dict(self.metrics),
                checkpoints=list(self.checkpoints),
                samples=samples,
                outputs=outputs or [],
                exitCode=exit_code,
            )
