"""The HomePilot profile's own settings: ``profileSettings.homepilot`` of the gateway settings.

Everything an operator of the gateway may want to change without a code change: which
ServiceInstance is the HomePilot application (by default the one named ``homepilot``, of
``serviceType: homepilot``, which the operator's service catalog runs from the HomePilot image),
the proxy's timeout per route class, the image defaults of the GenerationJobs the profile
creates, and the model catalog it serves.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import Field

from kubepilot_api.serviceinstance import ServiceType
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict

PROFILE_NAME = "homepilot"
APP_SERVICE_TYPE = ServiceType.HOMEPILOT
"""The ``serviceType`` of the application's ServiceInstance. The profile reads only the instance's
status, so another type (an image override) serves too; this is the one the 503 tells people to
create."""

DEFAULT_TIMEOUTS: dict[str, float] = {"default": 30.0, "llm": 300.0, "upload": 300.0, "export": 300.0}
"""Seconds per route class: connect, and each read of a streamed body (not the whole answer)."""


class RouteRule(Strict):
    """Requests whose path matches ``pattern`` (fnmatch: ``*`` crosses ``/``) belong to ``routeClass``."""

    pattern: str = Field(min_length=1)
    routeClass: str = Field(min_length=1)


DEFAULT_RULES: tuple[RouteRule, ...] = (
    # Uploads: the body streams through while the application writes it.
    RouteRule(pattern="/upload", routeClass="upload"),
    RouteRule(pattern="/projects/*/upload", routeClass="upload"),
    RouteRule(pattern="/persona/import*", routeClass="upload"),
    RouteRule(pattern="/v1/edit-sessions/*/image", routeClass="upload"),
    # Work that waits on an LLM.
    RouteRule(pattern="/chat", routeClass="llm"),
    RouteRule(pattern="/story/start", routeClass="llm"),
    RouteRule(pattern="/story/continue", routeClass="llm"),
    RouteRule(pattern="/story/next", routeClass="llm"),
    RouteRule(pattern="/studio/videos/*/generate-outline", routeClass="llm"),
    RouteRule(pattern="/studio/videos/*/scenes/generate-from-outline", routeClass="llm"),
    RouteRule(pattern="/studio/videos/*/policy/check", routeClass="llm"),
    RouteRule(pattern="/v1/agentic/invoke", routeClass="llm"),
    RouteRule(pattern="/models", routeClass="llm"),
    # Packages built or fetched on request.
    RouteRule(pattern="/studio/videos/*/export", routeClass="export"),
    RouteRule(pattern="/projects/*/persona/export", routeClass="export"),
    RouteRule(pattern="/community/download/*", routeClass="export"),
)


class ProxySettings(Strict):
    """How the application's endpoints are passed through."""

    timeouts: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_TIMEOUTS),
        description="Seconds per route class (connect, and each read); `default` for unmatched paths.",
    )
    rules: list[RouteRule] = Field(
        default_factory=lambda: list(DEFAULT_RULES),
        description="Path patterns to route classes, first match wins.",
    )

    def route_class(self, path: str) -> str:
        """The class of ``path`` (relative to the profile's root)."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(path, rule.pattern):
                return rule.routeClass
        return "default"

    def timeout_for(self, path: str) -> float:
        route_class = self.route_class(path)
        return self.timeouts.get(route_class, self.timeouts.get("default", DEFAULT_TIMEOUTS["default"]))


class ImageSettings(Strict):
    """The GenerationJobs the image endpoints create."""

    model: str = Field(
        default="",
        description="Default image model, relative to the models volume (a diffusers folder or a file); "
        "empty: the first installed image model.",
        max_length=1024,
    )
    width: int = Field(default=512, ge=64, le=4096, description="Width when the request names none.")
    height: int = Field(default=512, ge=64, le=4096, description="Height when the request names none.")
    steps: int = Field(default=20, ge=1, le=500, description="Steps when the request names none.")
    cfgScale: float = Field(default=7.0, ge=0, le=50, description="CFG when the request names none.")
    maxSteps: int = Field(default=150, ge=1, le=500, description="Steps a request may ask for at most.")
    waitSeconds: float = Field(
        default=900, gt=0, description="How long a request waits for its job (it keeps running after)."
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=86400, ge=0, description="Finished jobs are deleted after this long (images stay)."
    )
    upscalers: list[str] = Field(
        default_factory=list,
        description="Upscaler names the operator configures for the generator (its `upscalers` "
        "setting), preferred in this order; the files in upscale_models/ of the models volume "
        "follow. None of either: upscale and enhance are reported unavailable and refused (503).",
    )
    editStrength: float = Field(
        default=0.6, ge=0, le=1, description="img2img strength of an edit message that names none."
    )
    maxInputBytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest input image fetched from the application."
    )
    maxOutputEdge: int = Field(default=4096, ge=64, description="HomePilot's guardrail on an output edge.")


class EditSessionSettings(Strict):
    """HomePilot's edit sessions (kept in ConfigMaps, see ``sessions``)."""

    ttlSeconds: float = Field(
        default=604800, gt=0, description="A session untouched this long reads as empty (HomePilot: 7 days)."
    )
    maxUploadBytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="Largest image upload (HomePilot: MAX_UPLOAD_MB 20)."
    )
    sweepSeconds: float = Field(
        default=3600,
        gt=0,
        description="How often the gateway deletes expired sessions' ConfigMaps (and once at start).",
    )


class HomePilotSettings(Strict):
    """Everything the HomePilot endpoints read besides the gateway-wide settings."""

    appService: str = Field(
        default="homepilot",
        min_length=1,
        max_length=253,
        description="The ServiceInstance running the HomePilot application (serviceType homepilot); "
        "every endpoint the profile does not implement is proxied to it.",
    )
    dependencyServices: dict[str, str] = Field(
        default_factory=lambda: {"comfyui": "comfy", "llm": "llm"},
        description="Other ServiceInstances /health/detailed reports, by the name HomePilot gives them.",
    )
    version: str = Field(default="2.1.0", description="The HomePilot version the profile presents.")
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    editSessions: EditSessionSettings = Field(default_factory=EditSessionSettings)
    catalog: dict[str, Any] | None = Field(
        default=None,
        description="The model catalog (`{version, last_updated, providers: {provider: {type: "
        "[entries]}}}`); unset: the built-in one.",
    )
    presets: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="`image` and/or `video` preset tables in the structure of HomePilot's "
        "image_presets.json / video_presets.json; unset: kubepilot's built-in ones.",
    )
    installWaitSeconds: float = Field(
        default=3600, gt=0, description="How long /models/install waits for its ModelPull (it goes on after)."
    )
    apiKeyTestUrls: dict[str, str] = Field(
        default_factory=lambda: {
            "huggingface": "https://huggingface.co/api/whoami-v2",
            "civitai": "https://civitai.com/api/v1/me",
        },
        description="Where /settings/api-keys/test checks a key (GET with `Authorization: Bearer`), by "
        "provider: HomePilot's endpoints, or a mirror.",
    )
    apiKeysSecret: str = Field(
        default="homepilot-provider-keys",
        min_length=1,
        max_length=253,
        description="The Secret holding the provider API keys of /settings/api-keys.",
    )


def homepilot_settings(ctx: GatewayContext) -> HomePilotSettings:
    """This profile's settings from ``ctx.settings.profileSettings`` (a bad value fails the app build)."""
    return HomePilotSettings.model_validate(ctx.settings.profileSettings.get(PROFILE_NAME, {}))
