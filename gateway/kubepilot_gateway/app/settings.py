"""Listener settings: where each profile listens, and its CORS and authentication.

Shaped to nest into ``Settings`` as ``listeners`` later. Until then the settings YAML may carry a
``listeners:`` mapping, which ``load_gateway_settings`` takes out before ``Settings`` (which
forbids unknown keys) reads the rest. Tokens are never part of this file (it is a ConfigMap):
they come from a mounted Secret file or an environment variable.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from kubepilot_gateway.settings import Settings, Strict, read_settings_file

DEFAULT_TOKENS_ENV = "KUBEPILOT_GATEWAY_AUTH_TOKENS"


class CorsSettings(Strict):
    """Cross-origin policy of one profile (the seed's, unless the settings override it)."""

    allowOrigins: list[str] = Field(default_factory=list, description='"*" allows every origin.')
    allowOriginRegex: str = ""
    allowMethods: list[str] = Field(default_factory=lambda: ["*"])
    allowHeaders: list[str] = Field(default_factory=lambda: ["*"])
    exposeHeaders: list[str] = Field(default_factory=list)
    allowCredentials: bool = False
    maxAgeSeconds: int = Field(default=600, ge=0)


class AuthSettings(Strict):
    """Static-token authentication in front of a profile; off by default."""

    enabled: bool = False
    tokensFile: str = Field(
        default="", description="One token a line (a mounted Secret); re-read when the file changes."
    )
    tokensEnv: str = Field(
        default=DEFAULT_TOKENS_ENV, description="Environment variable holding comma-separated tokens."
    )
    apiKeyHeader: str = Field(
        default="", description='Also accept the token in this header (e.g. "X-API-Key"); empty: only Bearer.'
    )
    queryParam: str = Field(
        default="",
        description='Also accept it as this query parameter (e.g. "token", for WebSocket clients '
        "that cannot set headers); empty: never.",
    )
    openPaths: list[str] = Field(
        default_factory=list, description="Paths (relative to the profile's root) served without a token."
    )


class ProfileListener(Strict):
    """One profile's listener; every field left unset keeps the profile's own default."""

    enabled: bool = True
    port: int | None = Field(
        default=None, ge=0, le=65535, description="Native listener port; unset: the profile's; 0: none."
    )
    cors: CorsSettings | None = Field(default=None, description="Unset: the policy the profile's seed sets.")
    auth: AuthSettings | None = Field(default=None, description="Unset: the gateway-wide `auth`.")


class ListenerSettings(Strict):
    """Where the gateway listens."""

    host: str = "127.0.0.1"
    combinedPort: int = Field(
        default=9000, ge=0, le=65535, description="Every profile under /p/<profile>; 0: no combined listener."
    )
    native: bool = Field(default=True, description="Also serve each profile at its root on its own port.")
    syncTimeoutSeconds: float = Field(
        default=60, gt=0, description="How long to wait for the first LIST of every cached type."
    )
    shutdownTimeoutSeconds: int = Field(
        default=5, ge=0, description="Open connections (WebSockets, streams) get this long to finish."
    )
    accessLog: bool = True
    auth: AuthSettings = Field(default_factory=AuthSettings)
    profiles: dict[str, ProfileListener] = Field(default_factory=dict)

    def for_profile(self, name: str) -> ProfileListener:
        return self.profiles.get(name) or ProfileListener()


def load_gateway_settings(path: str | Path | None = None) -> tuple[Settings, ListenerSettings]:
    """``Settings`` and ``ListenerSettings`` from one YAML file (if any), as ``load_settings`` reads it."""
    data = read_settings_file(path)
    listeners = ListenerSettings.model_validate(data.pop("listeners", None) or {})
    return Settings(**data), listeners
