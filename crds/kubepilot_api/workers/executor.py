"""The executor API: how the operator hands GenerationJobs to a running service.

Our generator server and the adapters beside ComfyUI and sd.cpp serve it, so the operator
dispatches the same way to all three. One job runs at a time per GPU; the rest queue in order.

- ``POST /v1/jobs`` with :class:`ExecutorSubmit` → 202 and :class:`ExecutorJob`
  (a repeated jobId answers 200 with the existing job: dispatch is idempotent);
  422 for an invalid request; 503 when the backend is down.
- ``GET /v1/jobs`` → list of :class:`ExecutorJob`; ``GET /v1/jobs/{jobId}`` → one, or 404.
- ``POST /v1/jobs/{jobId}/cancel`` → the job, Cancelled (queued) or being interrupted (running).
- ``GET /v1/health`` → :class:`ExecutorHealth`.

Progress for each job is pushed to the job's own intake URL with the job's token, exactly as a
one-shot generator pod pushes it, so the operator's intake needs no second path.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from kubepilot_api.common import ErrorInfo, KubeModel
from kubepilot_api.generationjob import GenerationProgress, OutputImage
from kubepilot_api.workers.config import GenerationRequest

JOBS_PATH = "/v1/jobs"
HEALTH_PATH = "/v1/health"


class ReportTarget(KubeModel):
    """Where and with which token to push a job's progress."""

    url: str = Field(description="Full report URL of the GenerationJob.")
    token: str = Field(description="The GenerationJob's intake token.", repr=False)


class ExecutorSubmit(KubeModel):
    """A job handed to an executor."""

    jobId: str = Field(description="Stable id (the GenerationJob's uid).", min_length=1, max_length=64)
    request: GenerationRequest = Field(description="What to generate.")
    outputDir: str = Field(description="Absolute folder for this job's images.")
    priority: int = Field(default=0, description="Higher runs first among queued jobs.")
    report: ReportTarget | None = Field(
        default=None, description="Where to push progress; none keeps it local."
    )


class ExecutorJobState(StrEnum):
    """Where a job stands inside an executor."""

    QUEUED = "Queued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class ExecutorJob(KubeModel):
    """A job as the executor sees it."""

    jobId: str = Field(description="The job's id.")
    state: ExecutorJobState = Field(description="Queued, Running, Succeeded, Failed or Cancelled.")
    queuePosition: int = Field(default=-1, ge=-1, description="0 running, 1.. waiting, -1 finished.")
    progress: GenerationProgress | None = Field(default=None, description="Steps and images.")
    outputs: list[OutputImage] = Field(default_factory=list, description="Images written.")
    error: ErrorInfo | None = Field(default=None, description="Why it failed.")


class ExecutorHealth(KubeModel):
    """Health of an executor and its backend."""

    ready: bool = Field(description="The backend answers and jobs can run.")
    backend: str = Field(description="kubepilot-generator, comfyui or sdcpp.")
    model: str = Field(default="", description="Model loaded now.")
    queued: int = Field(default=0, ge=0, description="Jobs waiting.")
    running: int = Field(default=0, ge=0, description="Jobs executing.")
