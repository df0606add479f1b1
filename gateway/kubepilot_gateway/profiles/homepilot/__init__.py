"""The HomePilot profile (HomePilot's FastAPI backend, native port 8000; 8001 in the one-host dev
stack, ``/p/homepilot`` on the combined listener) on kubepilot's CRs.

HomePilot is an application (chats, projects, personas, stories, a creator studio, agentic tools)
whose heavy work is image generation. The profile answers what is a cluster workload or cluster
state itself and passes the rest to the application, run as a ServiceInstance:

- answered here: ``/health``, ``/health/detailed``, ``/models`` (``provider=comfyui``),
  ``/model-catalog``, ``/v1/capabilities*`` (``routes_core``, ``catalog``); ``/chat`` in imagine
  mode as a txt2img GenerationJob, ``/v1/upscale`` and ``/v1/enhance`` as upscale GenerationJobs,
  ``/v1/outpaint`` as an inpaint GenerationJob on a canvas and mask built here (``outpaint``),
  and the generated images at ``/files/kubepilot/...`` (``routes_images``, ``generation``);
  ``/settings/api-keys*`` as a Secret (``routes_keys``); ``/models/install`` and ``/models/delete``
  as ModelPulls (``routes_install``; ollama models are the application's); ``/docs`` and
  ``/openapi.json`` for these;
- passed through (``proxy``): everything else, to the ServiceInstance ``appService`` (default
  ``homepilot``), with a 503 naming that ServiceInstance while it is missing or not running.

Shapes follow HomePilot's own backend, ``ruslanmv/HomePilot`` ``backend/app``: ``main.py`` at
commit 00d22de3f50e43eefa1b327354607da165c2c8c1 (``FastAPI(title="HomePilot Orchestrator",
version="2.1.0")``: ``ChatIn``/``ChatOut``, ``/health*``, ``/models``, ``/model-catalog``,
``/settings/api-keys*``), ``capabilities.py`` at 968685c74ca6f26823a6ddf5cb86361df2c267ea,
``upscale.py`` and ``enhance.py`` at 09a47362830035d746c7b658be205347b603095f, ``outpaint.py`` at
15aaf42bf881b110b3c936cf1a3dd4c8e9f30538, ``api_keys.py`` at
1a7484f3f4f066f00eef40dc1956c5f517739a91, and the imagine
branch of ``orchestrator.py`` (``{"conversation_id", "text": "Here you go.", "media": {"images":
[...]}}``; a failure is a 200 with ``text: "Image generation error: ..."``). The code is ours.

Decisions and deviations (document vs product):
- Errors: FastAPI's ``{"detail": ...}`` and 422 for invalid input, as HomePilot's
  ``HTTPException`` routes do; HomePilot's own ``{"ok": false, "code", "message"}`` where its
  handler uses it (``/models`` unsupported provider; an unexpected exception is its 500
  ``internal_error``). Never a 500 for bad input.
- Imagine: HomePilot refines the prompt with its LLM and stores the turn in its conversation;
  the gateway uses the message as the prompt and stores nothing (the conversation store is the
  application's). ``imgModel`` names a model on our volume (file name or relative path); HomePilot's
  workflow names (``sdxl``, ``flux-dev``) fall back to ``images.model``.
- Image URLs: HomePilot's ``/files`` is its upload folder; ours are ``/files/kubepilot/<path on the
  outputs volume>`` (the rest of ``/files`` still reaches the application). Input images are
  only read from there or fetched from the application's ``/files`` (no other host: no SSRF).
- ``/health`` does not probe LLM providers (``providers: {}``) and adds ``kubepilot``;
  ``/health/detailed`` reads ServiceInstances and is 503 while the application is not running.
- Capabilities are the generator's, not HomePilot's ComfyUI's: face restore and background
  removal are unavailable (no generator support); upscale and enhance need upscalers the
  operator does not configure yet (``images.upscalers``), and say so; outpaint is available with
  an installed image model; background replace/blur and ``/v1/edit`` inpaint are not in this
  increment.
- Outpaint: HomePilot's geometry, but the canvas grows by up to 7 more pixels on an extended side
  so both sides are multiples of 8 (the generator's rule); ``new_size`` is the size produced.
  The prompt HomePilot falls back to without one is worded by us.
- The proxy drops the gateway's credentials (cookie, authorization), as ``upstream`` does for
  every service; HomePilot's ``X-API-Key`` goes through.

``PROFILE`` hands the listeners the app without its own CORS layer and HomePilot's policy in
``PROFILE.cors`` (``CORS_ORIGINS`` default ``http://localhost:3000``, with credentials).
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.responses import Response

from kubepilot_gateway.app.errors import Problem, default_envelope, install_error_envelope
from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles import Profile
from kubepilot_gateway.profiles.homepilot import proxy as proxy_routes
from kubepilot_gateway.profiles.homepilot import routes_core, routes_images, routes_install, routes_keys
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME, homepilot_settings
from kubepilot_gateway.upstream import UpstreamHttp

__all__ = ["CORS", "NATIVE_PORT", "PROFILE", "TITLE", "build_app", "create_app"]

NATIVE_PORT = 8001
TITLE = "HomePilot Orchestrator"
DESCRIPTION = "HomePilot (image and model endpoints on kubepilot, the application proxied)"
CORS = CorsSettings(
    allowOrigins=["http://localhost:3000"], allowCredentials=True, allowMethods=["*"], allowHeaders=["*"]
)


def homepilot_envelope(request: Request, problem: Problem) -> Response:
    """FastAPI's ``{"detail"}``, except HomePilot's own body for an unexpected exception."""
    if problem.source == "internal":
        body = {"ok": False, "code": "internal_error", "message": "Internal server error."}
        return JSONResponse(body, status_code=500)
    return default_envelope(request, problem)


def build_app(ctx: GatewayContext, *, cors: bool = True) -> FastAPI:
    """The HomePilot app over ``ctx`` (whose cache the caller starts and stops)."""
    settings = homepilot_settings(ctx)
    http = UpstreamHttp()
    app = FastAPI(title=TITLE, version=settings.version, lifespan=http.lifespan)
    install_error_envelope(app, homepilot_envelope)
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=CORS.allowOrigins,
            allow_credentials=CORS.allowCredentials,
            allow_methods=CORS.allowMethods,
            allow_headers=CORS.allowHeaders,
        )
    proxy = proxy_routes.AppProxy(ctx, settings, http)
    app.include_router(routes_core.create_router(ctx, settings, proxy))
    app.include_router(routes_images.create_router(ctx, settings, proxy))
    app.include_router(routes_keys.create_router(ctx, settings))
    app.include_router(routes_install.create_router(ctx, settings, proxy))
    # Last: whatever the routes above do not answer belongs to the application.
    app.include_router(proxy_routes.create_router(proxy))
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The HomePilot app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(PROFILE_NAME, NATIVE_PORT, partial(build_app, cors=False), DESCRIPTION, cors=CORS)
