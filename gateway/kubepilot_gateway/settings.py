"""The gateway's one typed settings object: Helm values → ConfigMap (a YAML file) → these models.

Read from a YAML file (``--settings`` or ``$KUBEPILOT_GATEWAY_SETTINGS``) and then from environment
variables prefixed ``KUBEPILOT_GATEWAY_`` (nested keys joined with ``__``, e.g.
``KUBEPILOT_GATEWAY_WATCH__TIMEOUTSECONDS=60``); the environment wins. Every default works against
the devcluster started by ``kubepilot dev`` with ``$KUBECONFIG`` pointing at it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

SETTINGS_FILE_ENV = "KUBEPILOT_GATEWAY_SETTINGS"


class Strict(BaseModel):
    """Unknown keys are an error: a typo in Helm values must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Kube(Strict):
    """How the gateway reaches the API server."""

    mode: Literal["auto", "in-cluster", "kubeconfig"] = Field(
        default="auto",
        description="auto: the pod's service account when running in a cluster, else a kubeconfig.",
    )
    kubeconfig: str = Field(default="", description="Kubeconfig file; empty: $KUBECONFIG or ~/.kube/config.")
    context: str = Field(default="", description="Kubeconfig context; empty: its current-context.")
    requestTimeoutSeconds: float = Field(default=30, gt=0, description="Ceiling for one non-watch call.")
    connectTimeoutSeconds: float = Field(default=5, gt=0)
    throttleRetries: int = Field(
        default=3, ge=0, description="429 answers retried (after Retry-After) before the caller sees them."
    )


class Watch(Strict):
    """The informers' list + watch loop."""

    timeoutSeconds: int = Field(
        default=300,
        ge=1,
        description="Server-side watch timeout; the stream then ends and resumes from the last version.",
    )
    idleTimeoutSeconds: float = Field(
        default=90,
        gt=0,
        description="A stream silent this long (no event, no bookmark) is treated as dead and reopened.",
    )
    listPageSize: int = Field(default=500, ge=0, description="LIST page size (limit); 0: one page.")
    resyncSeconds: float = Field(
        default=0,
        ge=0,
        description="Re-LIST this often as a safety net against drift (diffed, so only changes are "
        "announced); 0: only when the server says our version expired.",
    )
    backoffInitialSeconds: float = Field(default=0.2, gt=0)
    backoffMaxSeconds: float = Field(default=10, gt=0)
    backoffJitter: float = Field(
        default=0.5, ge=0, le=1, description="Each delay is randomised by up to this fraction, down."
    )

    @model_validator(mode="after")
    def _backoff_ordered(self) -> Watch:
        if self.backoffMaxSeconds < self.backoffInitialSeconds:
            raise ValueError("backoffMaxSeconds must be at least backoffInitialSeconds")
        return self


class Writes(Strict):
    """The CR store's writes."""

    conflictRetries: int = Field(
        default=5, ge=0, description="409 Conflicts retried (re-read, re-apply) before the caller sees one."
    )


class Bus(Strict):
    """The event bus between the informers and the WebSocket protocols."""

    queueSize: int = Field(
        default=1000,
        ge=1,
        description="Events buffered per subscriber; a slower one loses its oldest and is told it lagged.",
    )


class Volumes(Strict):
    """Where the gateway itself sees the three storage volumes (the same PVCs the workers mount).

    Profiles list and write files there (datasets, uploads, the model index, images); a volume
    left empty is not mounted, and the endpoints that need it answer that it is unavailable.
    """

    models: str = Field(default="/models", description="The models volume in the gateway's filesystem.")
    datasets: str = Field(default="/datasets", description="The datasets volume in the gateway's filesystem.")
    outputs: str = Field(default="/outputs", description="The outputs volume in the gateway's filesystem.")


class Settings(BaseSettings):
    """Everything the gateway reads at start."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEPILOT_GATEWAY_", env_nested_delimiter="__", extra="forbid"
    )

    namespace: str = Field(
        default="default", description="Where the profiles create, read and watch their objects."
    )
    kube: Kube = Field(default_factory=Kube)
    watch: Watch = Field(default_factory=Watch)
    writes: Writes = Field(default_factory=Writes)
    bus: Bus = Field(default_factory=Bus)
    volumes: Volumes = Field(default_factory=Volumes)
    operatorNamespace: str = Field(
        default="", description="Where the operator keeps its shared objects (schedule); empty: `namespace`."
    )
    profileSettings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Each profile's own settings by profile name, validated by that profile when its "
        "app is built (e.g. `controlpilot: {datasets: {maxZipBytes: ...}}`).",
    )

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


def read_settings_file(path: str | Path | None = None) -> dict[str, Any]:
    """The YAML mapping of the settings file (``path`` or ``$KUBEPILOT_GATEWAY_SETTINGS``); {} for none."""
    path = path or os.environ.get(SETTINGS_FILE_ENV) or None
    if not path:
        return {}
    loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: gateway settings must be a mapping")
    return dict(loaded)


def load_settings(path: str | Path | None = None) -> Settings:
    """Settings from a YAML file (if any), overridden by the environment."""
    return Settings(**read_settings_file(path))
