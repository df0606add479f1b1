"""The interface a generation backend implements for the executor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kubepilot_api.generationjob import GenerationProgress, OutputImage
from kubepilot_api.workers.config import GenerationRequest


class ExecutionError(Exception):
    """A job failed; ``code`` is a stable upper-case code (MODEL_NOT_FOUND, INVALID_WORKFLOW, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Cancelled(Exception):
    """The job noticed ``JobContext.cancelled`` and stopped early."""


@dataclass
class JobContext:
    """What a backend gets for one job."""

    job_id: str
    request: GenerationRequest
    output_dir: Path
    report_progress: Callable[[GenerationProgress], None]
    """Call as often as convenient (per step); the executor coalesces."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set when the job is cancelled or interrupted; check it between steps and raise Cancelled."""


class ExecutorBackend(Protocol):
    """A backend runs one job at a time, synchronously, in the executor's worker thread."""

    name: str
    """kubepilot-generator, comfyui or sdcpp."""

    def health(self) -> tuple[bool, str]:
        """(ready, model loaded now)."""
        ...

    def run(self, context: JobContext) -> list[OutputImage]:
        """Run the job; return its images (written under ``context.output_dir``).

        Raise ExecutionError for a failure with a code, Cancelled when interrupted.
        """
        ...
