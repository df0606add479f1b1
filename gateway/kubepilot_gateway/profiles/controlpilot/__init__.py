"""The ControlPilot profile (LoRA Pilot's portal API, native port 7878) on kubepilot's CRs.

``create_app(ctx)`` builds the FastAPI app as ControlPilot configures its own: no ``/docs`` or
``/redoc`` (``/openapi.json`` stays), CORS open to every origin with credentials, and no-cache
headers on every ``/api/*`` answer. The translation to and from CRs lives in pure modules
(``services``); the routes (``routes_services``) only read the cache and write through the store.

``PROFILE`` hands the gateway's listeners the app without its own CORS layer and the same policy
as ``PROFILE.cors``, so the listener settings can override it (one CORS layer, not two).
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from kubepilot_gateway.app.errors import install_error_envelope
from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles import Profile
from kubepilot_gateway.profiles.controlpilot import (
    routes_comfy,
    routes_copilot,
    routes_datasets,
    routes_models,
    routes_system,
    routes_training,
)
from kubepilot_gateway.profiles.controlpilot.config import controlpilot_settings
from kubepilot_gateway.profiles.controlpilot.middleware import NO_CACHE_HEADERS, no_cache_middleware
from kubepilot_gateway.profiles.controlpilot.routes_services import create_router as create_services_router
from kubepilot_gateway.profiles.controlpilot.ui import mount_ui

__all__ = [
    "CORS",
    "NATIVE_PORT",
    "NO_CACHE_HEADERS",
    "PROFILE",
    "TITLE",
    "build_app",
    "create_app",
    "no_cache_middleware",
]

NAME = "controlpilot"
NATIVE_PORT = 7878
TITLE = "LoRA Pilot Portal"
DESCRIPTION = "ControlPilot (LoRA Pilot portal)"
CORS = CorsSettings(allowOrigins=["*"], allowCredentials=True, allowMethods=["*"], allowHeaders=["*"])
"""ControlPilot's policy: every origin (seed), with credentials and all methods and headers (its code)."""


def build_app(ctx: GatewayContext, *, cors: bool = True) -> FastAPI:
    """The ControlPilot app over ``ctx`` (whose cache the caller starts and stops); ``cors``
    False leaves CORS to whoever serves it."""
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None)
    app.middleware("http")(no_cache_middleware)
    # FastAPI's own {"detail": ...} shapes, but bad input can never turn into a 500 on the way out.
    install_error_envelope(app)
    if cors:
        # Added last, so outermost: preflights are answered before anything else runs.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=CORS.allowOrigins,
            allow_credentials=CORS.allowCredentials,
            allow_methods=CORS.allowMethods,
            allow_headers=CORS.allowHeaders,
        )
    config = controlpilot_settings(ctx)
    app.include_router(create_services_router(ctx, secret_env={"copilot": config.copilot.tokenSecret}))
    app.include_router(routes_models.create_router(ctx, config.models))
    app.include_router(routes_datasets.create_router(ctx, config.datasets))
    app.include_router(routes_copilot.create_router(ctx, config.copilot))
    app.include_router(routes_training.create_router(ctx, config.training))
    app.include_router(routes_comfy.create_router(ctx, config.comfy))
    app.include_router(routes_system.create_router(ctx, config.system))
    mount_ui(app, config.ui)
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The ControlPilot app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(NAME, NATIVE_PORT, partial(build_app, cors=False), DESCRIPTION, cors=CORS)
