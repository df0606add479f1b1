"""Types shared by the four kinds: the base model, conditions, references, GPU requests, actions.

Field names are camelCase, as in every Kubernetes API: the Python attribute *is* the JSON name,
so a CR body validates with ``Kind.model_validate(body)`` and serialises back unchanged.
Every field carries a description; it becomes the CRD description that ``kubectl explain`` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class KubeModel(BaseModel):
    """Base of every API object: unknown fields are an error, enum values serialise as strings.

    ``defer_build``: a model's validator is built on its first use, not when its module is imported.
    Every worker imports the whole API but validates two or three of its models; building all of them
    made up most of the downloader's start-up.
    """

    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_default=False, defer_build=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form a Kubernetes API server stores: no nulls, enums as their values."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


def immutable(message: str) -> dict[str, Any]:
    """JSON-schema extra for a CEL transition rule that forbids changing a field once set."""
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": message}]}


FreeForm = Annotated[
    dict[str, Any],
    Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}),
]
"""A free-form object kept as written (a ComfyUI graph, a trainer's own config file)."""

Quantity = Annotated[
    str,
    Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$", max_length=32),
]
"""A Kubernetes resource quantity such as ``500m``, ``4Gi`` or ``2``."""

Timestamp = Annotated[datetime, Field(json_schema_extra={"format": "date-time"})]


def now() -> datetime:
    """The current time, UTC, second precision, as Kubernetes timestamps are written."""
    return datetime.now(UTC).replace(microsecond=0)


class ConditionStatus(StrEnum):
    """Whether a condition holds."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One aspect of an object's state, in the shape of metav1.Condition."""

    type: str = Field(
        description="Kind of condition, in CamelCase (the vocabulary is listed per kind).",
        min_length=1,
        max_length=316,
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="Machine-readable CamelCase reason for the last transition.",
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
    )
    message: str = Field(default="", description="Human-readable detail.", max_length=32768)
    lastTransitionTime: Timestamp = Field(
        description="When status last changed; kept as is while status stays the same."
    )
    observedGeneration: int = Field(
        default=0, ge=0, description="metadata.generation this condition was computed from."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        }
    ),
]


class ObjectReference(KubeModel):
    """A reference to another object of ours in the same namespace."""

    name: str = Field(description="Name of the object.", min_length=1, max_length=253)


class SecretKeyReference(KubeModel):
    """A key inside a Secret in the same namespace; the value is mounted as a file, never logged."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253)
    key: str = Field(default="token", description="Key inside the Secret.", min_length=1, max_length=253)


class GpuRequest(KubeModel):
    """GPUs for a workload, through a profile the cluster admin defines in the operator's config.

    A profile names the node selector, tolerations, device resource (``nvidia.com/gpu`` or a MIG
    slice) and runtime class, so CRs never hard-code a cluster's GPU plumbing.
    """

    profile: str = Field(
        default="default",
        description="Name of a GPU profile from the operator configuration (Helm values gpuProfiles).",
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
    )
    count: int = Field(default=1, ge=0, le=16, description="Devices per pod; 0 runs on the CPU.")


class ComputeResources(KubeModel):
    """CPU, memory and GPUs for each pod of a workload."""

    gpu: GpuRequest | None = Field(default=None, description="GPU request; absent means no GPU.")
    cpu: Quantity | None = Field(default=None, description="CPU request, e.g. 4 or 500m.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit, e.g. 16Gi.")


class EnvVar(KubeModel):
    """A plain environment variable for the workload's container."""

    name: str = Field(
        description="Variable name.", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
    )
    value: str = Field(default="", description="Variable value.", max_length=32768)


class ActionState(StrEnum):
    """Where an imperative action stands."""

    PENDING = "Pending"
    """Requested and handed to the workload, not yet acknowledged."""
    DONE = "Done"
    """The workload acknowledged and completed it."""
    FAILED = "Failed"
    """The workload acknowledged it but could not complete it (see message)."""


class ActionStatus(KubeModel):
    """Acknowledgement of one nonce annotation ``kubepilot.io/action-<name>: <nonce>``.

    A new nonce requests the action again; the operator records which nonce it saw and which
    the workload acknowledged, so a request is neither lost nor done twice.
    """

    requestedNonce: str = Field(description="The nonce last seen on the annotation.", max_length=253)
    observedNonce: str = Field(default="", description="The nonce the workload acknowledged.", max_length=253)
    state: ActionState = Field(default=ActionState.PENDING, description="Pending, Done or Failed.")
    requestedAt: Timestamp | None = Field(default=None, description="When the nonce was first seen.")
    completedAt: Timestamp | None = Field(default=None, description="When the workload finished it.")
    message: str = Field(default="", description="What the workload said about it.", max_length=4096)


Actions = Annotated[
    dict[str, ActionStatus],
    Field(description="Imperative actions by name (save, backup, sample, restart, ...), with their nonces."),
]


class ErrorInfo(KubeModel):
    """The last error, with a stable code clients can switch on."""

    code: str = Field(description="Stable upper-case error code, e.g. DOWNLOAD_FAILED.", max_length=64)
    message: str = Field(default="", description="Human-readable detail.", max_length=4096)


class StatusBase(KubeModel):
    """Fields every kind's status has."""

    observedGeneration: int = Field(default=0, ge=0, description="metadata.generation last reconciled.")
    conditions: Conditions = Field(
        default_factory=list, description="Current conditions (see the kind's condition types)."
    )
    startedAt: Timestamp | None = Field(default=None, description="When the work started running.")
    completedAt: Timestamp | None = Field(default=None, description="When the work reached a final phase.")
    error: ErrorInfo | None = Field(default=None, description="The error behind a Failed phase.")


class ObjectMeta(KubeModel):
    """The parts of metadata our code reads; everything else is kept as written."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(default="", description="Object name.")
    namespace: str = Field(default="", description="Object namespace.")
    uid: str = Field(default="", description="Server-assigned unique id.")
    generation: int = Field(default=0, description="Bumped by the server on every spec change.")
    resourceVersion: str = Field(default="", description="Opaque version for optimistic concurrency.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
