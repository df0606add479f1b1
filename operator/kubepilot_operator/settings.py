"""The operator's one typed settings object: Helm values → ConfigMap (a YAML file) → these models.

Read from a YAML file (``--settings`` or ``$KUBEPILOT_OPERATOR_SETTINGS``) and then from
environment variables prefixed ``KUBEPILOT_OPERATOR_`` (nested keys joined with ``__``, e.g.
``KUBEPILOT_OPERATOR_INTAKE__PORT=9443``); the environment wins. Every default works for the
devcluster started by ``scripts/dev.sh`` except the storage folders, which the dev command sets.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kubepilot_api.serviceinstance import ServiceType

SETTINGS_FILE_ENV = "KUBEPILOT_OPERATOR_SETTINGS"


def contained_relative(path: str) -> bool:
    """True for a relative path that stays inside its root: no leading ``/``, no ``..`` step."""
    return bool(path) and not path.startswith("/") and ".." not in posixpath.normpath(path).split("/")


class Strict(BaseModel):
    """Unknown keys are an error: a typo in Helm values must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Toleration(Strict):
    """A pod toleration, as in the Kubernetes API."""

    key: str = ""
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""


class GpuProfile(Strict):
    """How a ``resources.gpu.profile`` name becomes pod fields on this cluster."""

    resourceName: str = Field(default="nvidia.com/gpu", description="Device resource, or a MIG slice.")
    nodeSelector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    runtimeClassName: str = Field(default="", description="e.g. nvidia; empty leaves the cluster default.")


class Volume(Strict):
    """One of the three storage volumes (models, datasets, outputs).

    On a cluster it is a PVC (``claimName``); in the devcluster a ``hostPath`` whose mount path
    equals the host folder, so processes see the same paths. ``operatorPath`` is where the
    operator process itself sees the volume (it removes files, checks datasets, publishes LoRAs).
    """

    claimName: str = Field(default="", description="PVC name in the workload's namespace.")
    hostPath: str = Field(default="", description="Host folder (devcluster, single-node clusters).")
    mountPath: str = Field(description="Where worker pods mount the volume.")
    operatorPath: str = Field(default="", description="Where the operator sees it; empty: not mounted.")

    def pod_volume(self, name: str) -> dict[str, Any]:
        if self.claimName:
            return {"name": name, "persistentVolumeClaim": {"claimName": self.claimName}}
        return {
            "name": name,
            "hostPath": {"path": self.hostPath or self.mountPath, "type": "DirectoryOrCreate"},
        }

    @property
    def shared_across_namespaces(self) -> bool:
        """A hostPath is one folder for every namespace; a PVC is per namespace."""
        return not self.claimName

    def local(self, relative: str = "") -> Path | None:
        """A path inside the volume as the operator sees it, or None when the operator cannot."""
        if not self.operatorPath:
            return None
        return Path(self.operatorPath) / relative if relative else Path(self.operatorPath)


class Storage(Strict):
    models: Volume = Field(default_factory=lambda: Volume(mountPath="/models"))
    datasets: Volume = Field(default_factory=lambda: Volume(mountPath="/datasets"))
    outputs: Volume = Field(default_factory=lambda: Volume(mountPath="/outputs"))


class Images(Strict):
    """The image of each worker; the devcluster maps ``kubepilot/*`` to local processes."""

    downloader: str = "kubepilot/downloader:0.1.0"
    trainer: str = "kubepilot/trainer:0.1.0"
    kohya: str = "kubepilot/kohya:0.1.0"
    diffusionPipe: str = "kubepilot/diffusion-pipe:0.1.0"
    onetrainer: str = "kubepilot/onetrainer:0.1.0"
    generator: str = "kubepilot/generator:0.1.0"
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class CatalogPort(Strict):
    name: str
    port: int = Field(ge=1, le=65535)


class ServiceCatalogEntry(Strict):
    """How one ``serviceType`` runs: image, command, ports, probe and where it executes jobs."""

    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    ports: list[CatalogPort] = Field(default_factory=list)
    readinessPath: str = Field(default="", description="HTTP GET probe path on the first port; empty: TCP.")
    executor: Literal["none", "native", "adapter"] = Field(
        default="none",
        description="native: the program serves the executor API itself; adapter: a sidecar does.",
    )
    executorPort: int = Field(default=0, ge=0, le=65535, description="Port of the executor API.")
    adapterBackend: Literal["", "comfyui", "sdcpp"] = ""
    latestVersion: str = Field(default="", description="Newest version known, shown as an update.")


def default_catalog() -> dict[str, ServiceCatalogEntry]:
    python_worker = ["python", "-m"]
    return {
        ServiceType.KUBEPILOT_GENERATOR.value: ServiceCatalogEntry(
            image="kubepilot/generator:0.1.0",
            command=[*python_worker, "kubepilot_workers.generator"],
            ports=[CatalogPort(name="http", port=7860)],
            readinessPath="/v1/health",
            executor="native",
            executorPort=7860,
        ),
        ServiceType.COMFYUI.value: ServiceCatalogEntry(
            image="kubepilot/comfyui:0.1.0",
            command=["/opt/ComfyUI/venv/bin/python", "/opt/ComfyUI/main.py", "--listen", "0.0.0.0"],
            # Images land on the outputs volume, where ControlPilot's latest-image endpoint and the
            # dashboards look for them ($(VAR) is expanded from the pod's environment).
            args=["--port", "8188", "--output-directory", "$(KUBEPILOT_OUTPUTS_DIR)/comfy"],
            ports=[CatalogPort(name="http", port=8188)],
            readinessPath="/system_stats",
            executor="adapter",
            executorPort=7861,
            adapterBackend="comfyui",
        ),
        ServiceType.SDCPP_SERVER.value: ServiceCatalogEntry(
            image="kubepilot/sdcpp-server:0.1.0",
            command=["sd-server", "--listen-ip", "0.0.0.0", "--listen-port", "7862"],
            ports=[CatalogPort(name="http", port=7862)],
            executor="adapter",
            executorPort=7861,
            adapterBackend="sdcpp",
        ),
        ServiceType.JUPYTER.value: ServiceCatalogEntry(
            image="kubepilot/jupyter:0.1.0",
            command=["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root"],
            ports=[CatalogPort(name="http", port=8888)],
            readinessPath="/api",
        ),
        ServiceType.CODE_SERVER.value: ServiceCatalogEntry(
            image="kubepilot/code-server:0.1.0",
            command=["code-server", "--bind-addr", "0.0.0.0:8080", "--auth", "none", "--disable-telemetry"],
            ports=[CatalogPort(name="http", port=8080)],
            readinessPath="/healthz",
        ),
        # ControlPilot's Copilot sidecar (CS-01 … CS-03): runs the Copilot CLI in /workspace. Pods mount
        # the volumes at their own paths; the sidecar links each `--volume` into /workspace (so
        # /workspace/models is the models volume) and accepts it as a cwd. The token comes from the
        # ServiceInstance's envFromSecrets (the gateway's copilot-token Secret). It binds the pod's IP,
        # as the generator does: probes and Services reach it there, and in the devcluster, where
        # pods share the host's network, a wildcard bind would collide with the Service's proxy.
        ServiceType.COPILOT.value: ServiceCatalogEntry(
            image="kubepilot/copilot:0.1.0",
            command=[*python_worker, "kubepilot_workers.copilot", "--host", "$(POD_IP)", "--port", "7879"],
            args=[
                arg
                for variable in ("KUBEPILOT_MODELS_DIR", "KUBEPILOT_DATASETS_DIR", "KUBEPILOT_OUTPUTS_DIR")
                for arg in ("--volume", f"$({variable})")
            ],
            ports=[CatalogPort(name="http", port=7879)],
            readinessPath="/health",
        ),
        # TensorBoard over the outputs volume (ControlPilot's "diffpipe" service), from the
        # diffusion-pipe image, whose virtualenv (on its PATH) has tensorboard; the command replaces
        # the image's trainer entrypoint.
        ServiceType.TENSORBOARD.value: ServiceCatalogEntry(
            image="kubepilot/diffusion-pipe:0.1.0",
            command=["tensorboard", "--logdir=$(KUBEPILOT_OUTPUTS_DIR)", "--host=0.0.0.0", "--port=6006"],
            ports=[CatalogPort(name="http", port=6006)],
            readinessPath="/",
        ),
        # The HomePilot application's FastAPI backend (the gateway's HomePilot profile proxies to it).
        # HomePilot reads its folders from the environment only, and the catalog has no env, so
        # `env` sets them: the uploads and the data folder (its SQLite database) on the outputs
        # volume, where they outlive the pod. It binds the pod's IP, as copilot does: probes and
        # Services reach it there, and in the devcluster a wildcard bind would collide with the
        # Service's proxy. No GPU: its image work goes to ComfyUI or, through the gateway, to
        # GenerationJobs.
        ServiceType.HOMEPILOT.value: ServiceCatalogEntry(
            image="kubepilot/homepilot:0.1.0",
            command=[
                "env",
                "DATA_DIR=$(KUBEPILOT_OUTPUTS_DIR)/homepilot",
                "UPLOAD_DIR=$(KUBEPILOT_OUTPUTS_DIR)/homepilot/uploads",
                "python",
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "$(POD_IP)",
                "--port",
                "8000",
            ],
            ports=[CatalogPort(name="http", port=8000)],
            readinessPath="/health",
        ),
    }


class Intake(Strict):
    """The progress intake (DESIGN §4): where it binds and the URL pods are given."""

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    advertiseUrl: str = Field(
        default="", description="Base URL pods use (the operator Service); empty: http://<host>:<port>."
    )
    statusWriteIntervalSeconds: float = Field(default=1.0, ge=0.05, description="Coalescing window.")


class LeaderElection(Strict):
    enabled: bool = True
    leaseName: str = "kubepilot-operator"
    leaseNamespace: str = Field(default="", description="Empty: the operator's own namespace or default.")
    leaseDurationSeconds: float = Field(default=15, gt=0)
    renewIntervalSeconds: float = Field(default=5, gt=0)


class Rendezvous(Strict):
    """How the pods of a multi-pod TrainingRun find rank 0: a Service in front of it."""

    servicePort: int = Field(default=29500, ge=1, le=65535, description="Port the other ranks dial.")
    listenPort: int = Field(
        default=29500,
        ge=1,
        le=65535,
        description="Port rank 0 listens on. Differs from servicePort only where pods share one network "
        "namespace (the devcluster); only the built-in trainer supports that.",
    )


class Settings(BaseSettings):
    """Everything the operator reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEPILOT_OPERATOR_", env_nested_delimiter="__", extra="forbid"
    )

    namespaces: list[str] = Field(default_factory=list, description="Watch these; empty: all namespaces.")
    operatorNamespace: str = Field(default="default", description="Where the operator's own objects live.")
    storage: Storage = Field(default_factory=Storage)
    images: Images = Field(default_factory=Images)
    gpuProfiles: dict[str, GpuProfile] = Field(default_factory=lambda: {"default": GpuProfile()})
    services: dict[str, ServiceCatalogEntry] = Field(
        default_factory=default_catalog,
        description="The service catalog, over the built-in one: an entry given here replaces the keys it "
        "names of the built-in entry of that serviceType (`{homepilot: {image: my/build:1}}` keeps its "
        "command, ports and probe); a new serviceType needs a whole entry; `null` removes a built-in one.",
    )
    intake: Intake = Field(default_factory=Intake)
    leaderElection: LeaderElection = Field(default_factory=LeaderElection)
    workerServiceAccount: str = Field(
        default="kubepilot-worker", description="Created per namespace, with no API rights."
    )
    huggingFaceEndpoint: str = Field(default="", description="HF_ENDPOINT for downloads; empty: public hub.")
    civitaiApiBase: str = ""
    reconcileWorkers: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Objects reconciled at once (passes mostly wait on the API server).",
    )
    healthPort: int = Field(default=8080, ge=0, le=65535, description="kopf liveness endpoint; 0: off.")
    defaultGeneratorModel: str = Field(
        default="", description="Model (relative to models) for jobs and generator services that name none."
    )
    upscalers: dict[str, str] = Field(
        default_factory=dict,
        description="Upscaler name → model file relative to the models volume (e.g. 'RealESRGAN 4x+': "
        "upscale_models/RealESRGAN_x4plus.pth), given to every generator. A GenerationJob may also name "
        "a file directly: a path relative to the models volume, or a bare file name in upscale_models/.",
    )
    rendezvous: Rendezvous = Field(default_factory=Rendezvous)
    downloadBackoffLimit: int = Field(default=3, ge=0)
    trainingBackoffLimit: int = Field(default=0, ge=0)
    scheduleConfigMap: str = Field(
        default="kubepilot-schedule", description="ConfigMap (operator namespace) with shutdownAt."
    )

    @field_validator("services", mode="before")
    @classmethod
    def _over_the_built_in_catalog(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {name: entry.model_dump() for name, entry in default_catalog().items()}
        for name, entry in value.items():
            if entry is None:
                merged.pop(name, None)  # `code-server: null`: this cluster does not offer it
            elif isinstance(entry, dict) and name in merged:
                merged[name] = {**merged[name], **entry}
            else:
                merged[name] = entry
        return merged

    @field_validator("upscalers")
    @classmethod
    def _upscaler_files_inside_models(cls, value: dict[str, str]) -> dict[str, str]:
        for name, file in value.items():
            if not contained_relative(file):
                raise ValueError(f"upscaler {name!r}: {file!r} is not a path inside the models volume")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it wins over the file, which arrives as init values.
        return (env_settings, init_settings)

    @property
    def intake_url(self) -> str:
        return self.intake.advertiseUrl.rstrip("/") or f"http://{self.intake.host}:{self.intake.port}"


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from a YAML file (if any), overridden by the environment."""
    path = path or os.environ.get(SETTINGS_FILE_ENV) or None
    data: dict[str, Any] = {}
    if path:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: operator settings must be a mapping")
        data = loaded
    return Settings(**data)
