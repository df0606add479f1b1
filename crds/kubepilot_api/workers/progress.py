"""The progress protocol between worker pods and the operator's intake (DESIGN §4).

A worker POSTs a report to ``$KUBEPILOT_REPORT_URL`` with ``Authorization: Bearer <token>``.
The intake answers:

- 200 with an :class:`IntakeReply` (the actions pending for this workload);
- 401 for a missing or wrong token, 404 for an unknown workload, 413 for a body over
  :data:`MAX_REPORT_BYTES`, 422 for a body that is not a valid report.

The intake coalesces reports: at most about one status write per object per second, last value
wins, final reports written at once. A failed push never fails the workload: workers retry
the next report and always write the final report as the termination message too.

Actions travel back on the same channel: every reply lists the pending actions with their
nonces; the worker acknowledges each in a later report's ``acks`` once it has acted.
"""

from __future__ import annotations

import functools
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from kubepilot_api.common import ErrorInfo, FreeForm, KubeModel, Timestamp
from kubepilot_api.generationjob import GenerationProgress, OutputImage, Timings
from kubepilot_api.modelpull import DownloadProgress, PulledFile
from kubepilot_api.trainingrun import (
    Checkpoint,
    SampleSet,
    SamplingProgress,
    TrainingOutputFile,
    TrainingProgress,
)

REPORT_PATH_TEMPLATE = "/v1/reports/{namespace}/{plural}/{name}"
"""Path of the intake's report endpoint for one workload."""
TOKEN_HEADER = "Authorization"
TOKEN_SCHEME = "Bearer"
MAX_REPORT_BYTES = 64 * 1024
"""Reports larger than this are refused with 413."""
TERMINATION_MESSAGE_MAX_BYTES = 4096
"""Kubernetes keeps at most 4096 bytes of a termination message."""
MIN_REPORT_INTERVAL_SECONDS = 1.0
GPU_MEMORY_METRICS = ("memory_allocated_bytes", "memory_reserved_bytes", "memory_total_bytes")
"""A trainer's PyTorch CUDA allocator figures, reported per device as ``gpu.<index>.<name>`` metrics
(``torch.cuda.memory_allocated`` / ``memory_reserved`` / the device's total memory)."""
PROCESS_METRICS = ("pid", "cpu_percent", "memory_percent", "memory_rss_bytes", "num_threads")
"""A trainer's figures of its own process, reported as ``process.<name>`` metrics."""
"""Workers send at most one non-final report per this interval (the intake coalesces anyway)."""


def report_path(namespace: str, plural: str, name: str) -> str:
    """The intake path for one workload."""
    return REPORT_PATH_TEMPLATE.format(namespace=namespace, plural=plural, name=name)


class WorkState(StrEnum):
    """The worker's view of its work."""

    STARTING = "Starting"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    STOPPED = "Stopped"

    @property
    def is_final(self) -> bool:
        return self in {WorkState.SUCCEEDED, WorkState.FAILED, WorkState.CANCELLED, WorkState.STOPPED}


class ActionAck(KubeModel):
    """The worker's acknowledgement of one pending action."""

    name: str = Field(description="Action name, as in the pending action.", max_length=63)
    nonce: str = Field(description="Nonce of the pending action.", max_length=253)
    ok: bool = Field(default=True, description="False when the action could not be carried out.")
    message: str = Field(default="", description="What happened.", max_length=4096)


class ReportBase(KubeModel):
    """Fields every report carries."""

    sequence: int = Field(
        ge=0, description="Increases with every report of this worker; stale ones are dropped."
    )
    time: Timestamp = Field(description="When the worker wrote the report.")
    state: WorkState = Field(description="The worker's view of its work.")
    final: bool = Field(default=False, description="The last report: written at once, never coalesced away.")
    message: str = Field(default="", description="Short human-readable status.", max_length=4096)
    error: ErrorInfo | None = Field(default=None, description="Set when state is Failed.")
    acks: list[ActionAck] = Field(
        default_factory=list, description="Actions acted on since the last report.", max_length=32
    )


class DownloadReport(ReportBase):
    """Report of the downloader (ModelPull)."""

    kind: Literal["ModelPull"] = "ModelPull"
    progress: DownloadProgress | None = Field(default=None, description="Bytes, files, speed, ETA.")
    resolvedRevision: str = Field(default="", description="Commit the revision resolved to.", max_length=255)
    files: list[PulledFile] = Field(
        default_factory=list, description="Files and their state.", max_length=200
    )


class TrainingReport(ReportBase):
    """Report of a trainer (TrainingRun)."""

    kind: Literal["TrainingRun"] = "TrainingRun"
    progress: TrainingProgress | None = Field(default=None, description="Step, epoch, loss, ETA.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest scalar metrics.")
    checkpoints: list[Checkpoint] = Field(
        default_factory=list, description="Checkpoints saved so far (latest last).", max_length=20
    )
    samples: SampleSet | None = Field(default=None, description="Samples rendered.")
    sampling: SamplingProgress | None = Field(default=None, description="A sampling pass in progress.")
    logFile: str = Field(default="", description="Full trainer log file.", max_length=1024)
    outputs: list[TrainingOutputFile] = Field(
        default_factory=list, description="Final outputs.", max_length=50
    )
    exitCode: int | None = Field(default=None, description="Exit code of an external trainer process.")


class GenerationReport(ReportBase):
    """Report of a generator or executor (GenerationJob)."""

    kind: Literal["GenerationJob"] = "GenerationJob"
    progress: GenerationProgress | None = Field(default=None, description="Steps and images.")
    outputs: list[OutputImage] = Field(
        default_factory=list, description="Images written so far.", max_length=64
    )
    timings: Timings | None = Field(default=None, description="Queue, load and run time.")


class ServiceReport(ReportBase):
    """Report of a service's sidecar (ServiceInstance): activity and version."""

    kind: Literal["ServiceInstance"] = "ServiceInstance"
    lastActivityTime: Timestamp | None = Field(default=None, description="Last request or job seen.")
    installedVersion: str = Field(default="", description="Version running.", max_length=253)


Report = Annotated[
    DownloadReport | TrainingReport | GenerationReport | ServiceReport,
    Field(discriminator="kind"),
]
AnyReport = DownloadReport | TrainingReport | GenerationReport | ServiceReport


@functools.cache
def _report_adapter() -> TypeAdapter[AnyReport]:
    # Built on first use, not at import: a worker sends one kind of report and never parses any, and
    # building the validators of all four kinds would add to every worker's start-up.
    return TypeAdapter(Report)


def parse_report(body: bytes | str) -> AnyReport:
    """Parse and validate a report body (raises ``pydantic.ValidationError``)."""
    return _report_adapter().validate_json(body)


class PendingAction(KubeModel):
    """An action the worker should carry out, from a nonce annotation on the CR."""

    name: str = Field(description="save, backup, sample, stop, cancel, pause, ...", max_length=63)
    nonce: str = Field(description="Acknowledge with this nonce.", max_length=253)
    params: FreeForm = Field(default_factory=dict, description="Parameters (e.g. a custom sample's prompt).")


class IntakeReply(KubeModel):
    """The intake's answer to a report."""

    accepted: bool = Field(description="False when the report was stale (an older sequence) and dropped.")
    pendingActions: list[PendingAction] = Field(
        default_factory=list, description="Actions not yet acknowledged."
    )


def termination_message(report: ReportBase) -> str:
    """The final report, compact, cut down to fit the termination-message limit.

    Lists go first (the intake already has them), then the message, so the state and the error
    code always fit.
    """
    data: dict[str, Any] = report.to_dict()

    def encode(d: dict[str, Any]) -> str:
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False)

    encoded = encode(data)
    for key in ("files", "checkpoints", "outputs", "acks", "metrics", "samples", "progress", "timings"):
        if len(encoded.encode()) <= TERMINATION_MESSAGE_MAX_BYTES:
            break
        if key in data:
            data.pop(key)
            encoded = encode(data)
    while len(encoded.encode()) > TERMINATION_MESSAGE_MAX_BYTES and data.get("message"):
        data["message"] = data["message"][: len(data["message"]) // 2]
        encoded = encode(data)
    if len(encoded.encode()) > TERMINATION_MESSAGE_MAX_BYTES and isinstance(data.get("error"), dict):
        data["error"]["message"] = data["error"]["message"][:512]
        encoded = encode(data)
    return encoded
