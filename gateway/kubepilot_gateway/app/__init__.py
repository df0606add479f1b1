"""The core every profile is built on: error envelopes, metrics, access logs, auth, CORS, listeners.

A profile's ``create_app(ctx)`` returns a FastAPI app and may call ``install_error_envelope``
to give its errors the seed's shape. The gateway then serves that app once, wrapped with the
request guard (latency metrics by route template, a JSON access line, a logged last-resort 500),
CORS and optional authentication, at its native port and under ``/p/<profile>`` on the combined
listener.
"""

from kubepilot_gateway.app.auth import BearerAuthMiddleware, TokenSource
from kubepilot_gateway.app.errors import (
    KUBE_ERROR_STATUS,
    Envelope,
    Problem,
    default_envelope,
    envelope_of,
    install_error_envelope,
)
from kubepilot_gateway.app.gateway import Gateway, build_combined_app, build_profile_app, mount_path
from kubepilot_gateway.app.metrics import GatewayMetrics
from kubepilot_gateway.app.observe import PROFILE_SCOPE_KEY, ObservedApp, redact_query, route_template
from kubepilot_gateway.app.settings import (
    AuthSettings,
    CorsSettings,
    ListenerSettings,
    ProfileListener,
    load_gateway_settings,
)

__all__ = [
    "KUBE_ERROR_STATUS",
    "PROFILE_SCOPE_KEY",
    "AuthSettings",
    "BearerAuthMiddleware",
    "CorsSettings",
    "Envelope",
    "Gateway",
    "GatewayMetrics",
    "ListenerSettings",
    "ObservedApp",
    "Problem",
    "ProfileListener",
    "TokenSource",
    "build_combined_app",
    "build_profile_app",
    "default_envelope",
    "envelope_of",
    "install_error_envelope",
    "load_gateway_settings",
    "mount_path",
    "redact_query",
    "route_template",
]
