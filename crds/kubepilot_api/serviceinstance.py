"""ServiceInstance: a long-running GPU service (ComfyUI, Jupyter, code-server, an sd.cpp server, ...).

Conditions used: WorkloadReady, Available, Progressing, Degraded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from kubepilot_api.common import (
    Actions,
    ComputeResources,
    EnvVar,
    KubeModel,
    ObjectReference,
    StatusBase,
    Timestamp,
    immutable,
)
from kubepilot_api.resource import AGE_COLUMN, PHASE_COLUMN, CrdInfo, CustomResource, PrinterColumn


class ServiceType(StrEnum):
    """Which program the service runs: names as their users write them."""

    COMFYUI = "comfyui"
    JUPYTER = "jupyter"
    CODE_SERVER = "code-server"
    KOHYA_UI = "kohya-ui"
    INVOKE = "invoke"
    AI_TOOLKIT = "ai-toolkit"
    TENSORBOARD = "tensorboard"
    SDCPP_SERVER = "sdcpp-server"
    KUBEPILOT_GENERATOR = "kubepilot-generator"
    """Our diffusers generator server; executes GenerationJobs."""
    COPILOT = "copilot"
    ONETRAINER_UI = "onetrainer-ui"
    HOMEPILOT = "homepilot"
    """The HomePilot application's backend; the gateway's HomePilot profile proxies to it."""


class ServicePort(KubeModel):
    """A port the service listens on."""

    name: str = Field(
        description="Port name (http, api, ...).",
        min_length=1,
        max_length=15,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    )
    port: int = Field(ge=1, le=65535, description="Container port.")


class SdCppModel(KubeModel):
    """sd.cpp server: which model it serves and how."""

    id: str = Field(description="Model id clients use.", min_length=1, max_length=253)
    modelPullRef: ObjectReference | None = Field(default=None, description="ModelPull holding the weights.")
    path: str = Field(default="", description="Model file relative to the models volume.", max_length=1024)
    execMode: Literal["server", "cli", "api"] = Field(default="server", description="How sd.cpp runs.")
    mode: Literal["preload", "on_demand"] = Field(
        default="on_demand", description="Load at start or on first use."
    )


class ServiceInstanceSpec(KubeModel):
    """The service to keep running (or stopped)."""

    serviceType: ServiceType = Field(
        description="The program. Immutable.", json_schema_extra=immutable("serviceType is immutable")
    )
    displayName: str = Field(default="", description="Name shown by dashboards.", max_length=253)
    running: bool = Field(default=True, description="Desired state: true runs one pod, false scales to zero.")
    autostart: bool = Field(
        default=True, description="Start again after a scheduled shutdown ends or the platform restarts."
    )
    image: str = Field(
        default="",
        description="Image override; default from the operator's service catalog.",
        max_length=1024,
    )
    version: str = Field(
        default="",
        description="Version (image tag or git ref) to run; empty is the catalog default.",
        max_length=253,
    )
    args: list[str] = Field(
        default_factory=list, description="Extra arguments for the program.", max_length=64
    )
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables.", max_length=64)
    envFromSecrets: list[str] = Field(
        default_factory=list, description="Secrets whose keys become environment variables.", max_length=16
    )
    ports: list[ServicePort] = Field(
        default_factory=list, description="Ports; default from the service catalog.", max_length=16
    )
    resources: ComputeResources = Field(default_factory=ComputeResources, description="CPU, memory and GPUs.")
    models: list[str] = Field(
        default_factory=list,
        description="Models it executes GenerationJobs for (ids or paths); the operator routes by it.",
        max_length=64,
    )
    sdcpp: SdCppModel | None = Field(
        default=None, description="sd.cpp server settings (serviceType sdcpp-server)."
    )
    idleTimeoutSeconds: int = Field(
        default=0, ge=0, description="Stop after this long without activity; 0 never."
    )
    maxDurationSeconds: int = Field(default=0, ge=0, description="Stop after running this long; 0 never.")


class ServicePhase(StrEnum):
    """Where a ServiceInstance stands."""

    STOPPED = "Stopped"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    ERROR = "Error"


class ServiceVersion(KubeModel):
    """Installed and available versions."""

    installed: str = Field(default="", description="Version running now.", max_length=253)
    latest: str = Field(default="", description="Latest version known.", max_length=253)
    updateAvailable: bool = Field(default=False, description="A newer version exists.")


class ServiceQueue(KubeModel):
    """GenerationJobs on this service."""

    pending: int = Field(default=0, ge=0, description="Jobs waiting.")
    running: int = Field(default=0, ge=0, description="Jobs executing.")


class ServiceInstanceStatus(StatusBase):
    """Observed state of a ServiceInstance."""

    phase: ServicePhase = Field(default=ServicePhase.STOPPED, description="Where the service stands.")
    ready: bool = Field(default=False, description="The endpoint answers.")
    endpoint: str = Field(
        default="", description="URL of the service inside the cluster (by cluster IP).", max_length=1024
    )
    podName: str = Field(default="", description="The pod serving now.", max_length=253)
    restartCount: int = Field(default=0, ge=0, description="Container restarts of the current pod.")
    lastExitCode: int | None = Field(default=None, description="Exit code of the last terminated container.")
    lastActivityTime: Timestamp | None = Field(
        default=None, description="Last request or job seen; drives idleTimeoutSeconds."
    )
    version: ServiceVersion | None = Field(default=None, description="Installed and latest versions.")
    queue: ServiceQueue | None = Field(default=None, description="GenerationJobs on this service.")
    actions: Actions = Field(default_factory=dict)


class ServiceInstance(CustomResource):
    """Keeps a GPU service (ComfyUI, Jupyter, code-server, sd.cpp, ...) running or stopped."""

    crd = CrdInfo(
        kind="ServiceInstance",
        plural="serviceinstances",
        short_names=("si",),
        description="Keeps a GPU service (ComfyUI, Jupyter, code-server, sd.cpp, ...) running or stopped.",
        printer_columns=(
            PrinterColumn("Type", ".spec.serviceType"),
            PrinterColumn("Running", ".spec.running", "boolean", "Desired state."),
            PHASE_COLUMN,
            PrinterColumn("Ready", ".status.ready", "boolean"),
            PrinterColumn("Endpoint", ".status.endpoint", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["ServiceInstance"] = Field(default="ServiceInstance", description="ServiceInstance")
    spec: ServiceInstanceSpec = Field(description="The service and its desired state.")
    status: ServiceInstanceStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
