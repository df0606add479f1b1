"""The profile's own settings: ``profileSettings.comfyui-docker`` of the gateway settings."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict

PROFILE_NAME = "comfyui-docker"


class ComfyUiDockerSettings(Strict):
    """Everything the dashboard's endpoints read besides the gateway-wide settings."""

    catalogConfigMap: str = Field(
        default="comfyui-docker-presets",
        description="ConfigMap (gateway namespace) holding the preset catalog; when it does not exist, "
        "a built-in catalog is served.",
    )
    catalogKey: str = Field(
        default="presets", description="Key of the catalog (YAML or JSON) in that ConfigMap."
    )
    catalogCacheSeconds: float = Field(
        default=5.0, ge=0, description="How long a catalog read is reused before the ConfigMap is read again."
    )
    recentDownloadSeconds: float = Field(
        default=600.0,
        ge=0,
        description="GET /api/downloads lists finished downloads for this long after they finished.",
    )
    assumedSpeedBytesPerSecond: int = Field(
        default=50_000_000,
        gt=0,
        description="Speed assumed for an install's estimated_time_seconds (before any is measured).",
    )
    removalTimeoutSeconds: float = Field(
        default=60.0, gt=0, description="How long to wait for the operator to remove a ModelPull's files."
    )
    storageReserveBytes: int = Field(
        default=0, ge=0, description="Free space an install must leave on the models volume (else 507)."
    )

    workflowTemplatesConfigMap: str = Field(
        default="comfyui-docker-workflows",
        description="ConfigMap (gateway namespace) of workflow templates, one <id>.json key each; when it "
        "does not exist, a built-in template set is served.",
    )
    workflowCacheSeconds: float = Field(
        default=5.0, ge=0, description="How long a read of the template ConfigMap is reused."
    )
    workflowUserFolder: str = Field(
        default="workflows/user",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Folder of the saved (user) workflows, relative to the outputs volume.",
    )
    workflowMaxBytes: int = Field(
        default=2_000_000, gt=0, description="Largest workflow save request body (else 413)."
    )

    nodeAgentUrls: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:9400"],
        description="Node agents to read (`/v1/snapshot`) for the system figures (CPU, memory, GPU); none "
        "answering: the gateway host's CPU and memory, GPU 0. The chart points it at its node agents.",
    )
    nodeAgentTimeoutSeconds: float = Field(default=2.0, gt=0, description="Wait for one agent's snapshot.")

    enableAuth: bool | None = Field(
        default=None,
        description="Require a login token on every route; unset: the ENABLE_AUTH environment variable "
        "(true/1/yes).",
    )
    authSecret: str = Field(
        default="comfyui-docker-auth",
        description="Secret (gateway namespace) with the token signing key (signing-key) and users (users).",
    )
    authCacheSeconds: float = Field(
        default=10.0, ge=0, description="How long a read of that Secret is reused."
    )
    tokenSeconds: int = Field(default=3600, gt=0, description="Lifetime of a login token (expires_in).")
    rateLimitEnabled: bool = Field(default=True, description="Apply the seed's rate limits.")
    rateLimitPerIp: int = Field(default=100, gt=0, description="Requests a window per IP without a token.")
    rateLimitPerToken: int = Field(default=1000, gt=0, description="Requests a window per login token.")
    rateLimitWindowSeconds: int = Field(default=60, gt=0, description="The rate limit window.")
    systemStatusSeconds: float = Field(
        default=5.0, gt=0, description="Interval of the WebSocket's system_status messages."
    )

    maxQueueSize: int = Field(
        default=100,
        gt=0,
        description="Unfinished workflow executions (pending and running) this profile holds; an execute "
        "beyond it is 507 QUEUE_FULL.",
    )
    autoStartComfyUI: bool = Field(
        default=True,
        description="An execution queued for a stopped ComfyUI ServiceInstance starts it "
        "(spec.autoStartService of the GenerationJob).",
    )
    executionTtlSeconds: int | None = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="How long a finished execution's GenerationJob (its history entry) is kept; "
        "unset keeps it until deleted. The images stay on the outputs volume either way.",
    )

    def auth_enabled(self, environ: Mapping[str, str]) -> bool:
        if self.enableAuth is not None:
            return self.enableAuth
        return environ.get("ENABLE_AUTH", "").strip().lower() in ("1", "true", "yes")


def comfyui_docker_settings(ctx: GatewayContext) -> ComfyUiDockerSettings:
    """This profile's settings from ``ctx.settings.profileSettings`` (a bad value fails the app build)."""
    return ComfyUiDockerSettings.model_validate(ctx.settings.profileSettings.get(PROFILE_NAME, {}))
