"""The HomePilot profile (HomePilot's FastAPI backend, native port 8000; 8001 in the one-host dev
stack, ``/p/homepilot`` on the combined listener) on kubepilot's CRs.

HomePilot is an application (chats, projects, personas, stories, a creator studio, agentic tools)
whose heavy work is image generation. The profile answers what is a cluster workload or cluster
state itself and passes the rest to the application, run as a ServiceInstance:

- answered here: ``/health``, ``/health/detailed``, ``/models`` (``provider=comfyui``),
  ``/model-catalog``, ``/v1/capabilities*`` (``routes_core``, ``catalog``); ``/chat`` in imagine
  mode as a txt2img GenerationJob, ``/v1/upscale`` and ``/v1/enhance`` as upscale GenerationJobs
  (upscalers the operator configures or files in ``upscale_models/``), ``/v1/outpaint`` as an
  inpaint GenerationJob on a canvas and mask built here (``outpaint``), and the generated images
  at ``/files/kubepilot/...`` (``routes_images``, ``media``, ``generation``); the edit sessions
  (``/v1/edit-sessions/*``, kept in ConfigMaps: ``sessions``), ``/chat`` in edit mode, ``/v1/edit``
  as img2img / inpaint GenerationJobs, and ``/v1/background`` (replace: inpainting a mask built
  here; blur: done here; remove: unavailable) (``routes_edit``, ``background``);
  ``/v1/edit-models*``, ``/image-presets``, ``/video-presets``, ``/models/health``
  (``routes_models``); ``/settings/api-keys*`` as a Secret (``routes_keys``); ``/models/install``
  and ``/models/delete`` as ModelPulls (``routes_install``; ollama models are the application's);
  ``/story/scene/image`` without an ``image_url`` as a txt2img GenerationJob on the scene's
  prompts, its URL then persisted in the application (``routes_story``); ``/docs`` and
  ``/openapi.json`` for these;
- passed through (``proxy``): everything else, to the ServiceInstance ``appService`` (default
  ``homepilot``), with a 503 naming that ServiceInstance while it is missing or not running
  (every such seed path is exercised in ``tests/gateway/test_homepilot_proxy.py``).

Shapes follow HomePilot's own backend, ``ruslanmv/HomePilot`` ``backend/app``: ``main.py`` at
commit 00d22de3f50e43eefa1b327354607da165c2c8c1 (``FastAPI(title="HomePilot Orchestrator",
version="2.1.0")``: ``ChatIn``/``ChatOut``, ``/health*``, ``/models``, ``/model-catalog``,
``/settings/api-keys*``), ``capabilities.py`` at 968685c74ca6f26823a6ddf5cb86361df2c267ea,
``upscale.py``, ``enhance.py`` and ``background.py`` at 09a47362830035d746c7b658be205347b603095f,
``outpaint.py`` at 15aaf42bf881b110b3c936cf1a3dd4c8e9f30538, ``story_mode.py`` and the story
routes of ``main.py`` at 7b425881c04ae898c4ccd24534a82f1b67c6733a, ``api_keys.py`` at
1a7484f3f4f066f00eef40dc1956c5f517739a91, ``edit_models.py`` at
2650b4237993129ffbdd51c09e09bee658525c0e, ``main.py``'s ``/image-presets``, ``/video-presets`` and
``/models/health`` (``main.py`` at 7b425881c04ae898c4ccd24534a82f1b67c6733a), the edit-session service
``edit-session/app/main.py`` at 05540563750d45e14ad0cd3ddfc090dca40a23de (``store.py`` at
05d94719385eae40bc3d12c0f8adb712790fa93e, ``utils_images.py`` at
9f71f490838482d8d7dd260966eeca9099ffce31), and the imagine
branch of ``orchestrator.py`` at 04782376bc455eb46b25ab91ce608470488eebc7 (``{"conversation_id",
"text": "Here you go.", "media": {"images": [...], "final_prompt", "seed", "seeds", "width",
"height", "steps", "cfg", "model"}}``; a failure is a 200 with ``text: "Image generation error:
..."``; a request with a ``project_id`` is its project chat's, whatever the mode). The code is
ours.

Decisions and deviations (document vs product):
- Errors: FastAPI's ``{"detail": ...}`` and 422 for invalid input, as HomePilot's
  ``HTTPException`` routes do; HomePilot's own ``{"ok": false, "code", "message"}`` where its
  handler uses it (``/models`` unsupported provider; an unexpected exception is its 500
  ``internal_error``). Never a 500 for bad input: numbers a GenerationJob cannot hold are refused
  (422) before a job is created (imagine's ``imgCfg`` outside 0..50 or not finite, seeds beyond
  int64), and a validation error that echoes NaN or Infinity answers them as text
  (``tests/gateway/test_homepilot_bad_input.py`` sweeps every route).
- Imagine: HomePilot refines the prompt with its LLM and stores the turn in its conversation;
  the gateway uses the message as the prompt and stores nothing (the conversation store is the
  application's). ``imgModel`` names a model on our volume (file name or relative path); HomePilot's
  workflow names (``sdxl``, ``flux-dev``) fall back to ``images.model``.
- Image URLs: HomePilot's ``/files`` is its upload folder; ours are ``/files/kubepilot/<path on the
  outputs volume>`` (the rest of ``/files`` still reaches the application). Input images are
  only read from there or fetched from the application's ``/files`` (no other host: no SSRF).
- ``/health`` does not probe LLM providers (``providers: {}``) and adds ``kubepilot``;
  ``/health/detailed`` reads ServiceInstances and is 503 while the application is not running.
- Capabilities are the generator's, not HomePilot's ComfyUI's: face restoration and background
  removal are unavailable (no generator support; removal needs a segmentation model) and say so;
  upscale and enhance are available once an upscaler is configured in the operator or installed
  in ``upscale_models/``; outpaint, ``/v1/edit`` inpaint and background replace with an installed
  image model; background blur always (Pillow, as HomePilot's own blur).
- Edit sessions: HomePilot runs them in a separate service (SQLite/Redis); here they are
  ConfigMaps (compare-and-swap writes; see ``sessions``), and a message's first result becomes
  the active image (HomePilot's service waits for ``select``), see ``routes_edit``.
- Background replace: HomePilot masks with U2-Net; we have no segmentation model, so the mask
  is built from the image itself (flood fill from the border, else a central ellipse), see
  ``background``. ``/models/health`` reports installed entries instead of probing download URLs.
- Presets: HomePilot's handlers over kubepilot's own preset tables (HomePilot's are its data
  files), configurable (``presets``).
- Outpaint: HomePilot's geometry, but the canvas grows by up to 7 more pixels on an extended side
  so both sides are multiples of 8 (the generator's rule); ``new_size`` is the size produced.
  The prompt HomePilot falls back to without one is worded by us.
- The proxy drops the gateway's credentials (cookie, authorization), as ``upstream`` does for
  every service; HomePilot's ``X-API-Key`` goes through. Timeouts are per route class
  (``ProxySettings``: ``default`` 30 s, ``llm``/``upload``/``export`` 300 s, for the connect and
  each read, so a long stream that keeps sending is never cut); no answer is 502, a timeout 504.
- ``/story/scene/image``: in HomePilot it only persists a URL (the frontend generates the image
  with ``/chat`` imagine first); that call passes through unchanged. Without ``image_url`` the
  profile generates the image itself (the seed's "Generate image for a scene", the issue's
  GenerationJob) and persists it with the same call: a kubepilot addition, see ``routes_story``.
- Edit sessions expire (``ttlSeconds``): their ConfigMaps and jobs are deleted lazily when read
  and by a sweep every ``sweepSeconds`` over an index ConfigMap the gateway keeps, since it may
  not list ConfigMaps (``sessions``). The operator is not involved.

``PROFILE`` hands the listeners the app without its own CORS layer and HomePilot's policy in
``PROFILE.cors`` (``CORS_ORIGINS`` default ``http://localhost:3000``, with credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator
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
from kubepilot_gateway.profiles.homepilot import (
    routes_core,
    routes_edit,
    routes_images,
    routes_install,
    routes_keys,
    routes_models,
    routes_story,
)
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME, homepilot_settings
from kubepilot_gateway.profiles.homepilot.media import Media
from kubepilot_gateway.upstream import UpstreamHttp

__all__ = ["CORS", "NATIVE_PORT", "PROFILE", "TITLE", "build_app", "create_app"]

NATIVE_PORT = 8001
TITLE = "HomePilot Orchestrator"
DESCRIPTION = "HomePilot (image and model endpoints on kubepilot, the application proxied)"
CORS = CorsSettings(
    allowOrigins=["http://localhost:3000"], allowCredentials=True, allowMethods=["*"], allowHeaders=["*"]
)


def homepilot_envelope(request: Request, problem: Problem) -> Response:
    """FastAPI's ``{"detail"}``, except HomePilot's own body for an unexpected exception.

    A validation error echoes the client's ``input``; Python's JSON reads NaN and Infinity, which
    a JSON answer cannot hold, so they are answered as text ("nan", "inf") instead of failing."""
    if problem.source == "internal":
        body = {"ok": False, "code": "internal_error", "message": "Internal server error."}
        return JSONResponse(body, status_code=500)
    if problem.source == "validation":
        problem = dataclasses.replace(problem, detail=_json_safe(problem.detail))
    return default_envelope(request, problem)


def _json_safe(value: object) -> object:
    """``value`` with every non-finite float replaced by its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def build_app(ctx: GatewayContext, *, cors: bool = True) -> FastAPI:
    """The HomePilot app over ``ctx`` (whose cache the caller starts and stops).

    Its lifespan closes the proxy's client and runs the expired edit sessions' sweep
    (``sessions.SessionStore.sweep_forever``)."""
    settings = homepilot_settings(ctx)
    http = UpstreamHttp()
    holder: list[routes_edit.EditSessions] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with http.lifespan(app):
            sweeper = asyncio.create_task(
                holder[0].store.sweep_forever(settings.editSessions.sweepSeconds),
                name="homepilot-edit-session-sweep",
            )
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper

    app = FastAPI(title=TITLE, version=settings.version, lifespan=lifespan)
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
    media = Media(ctx, settings, proxy)
    edits = routes_edit.EditSessions(ctx, settings, media)
    holder.append(edits)
    app.include_router(routes_core.create_router(ctx, settings, proxy))
    app.include_router(routes_images.create_router(ctx, settings, proxy, media, edits))
    app.include_router(routes_edit.create_router(edits))
    app.include_router(routes_models.create_router(ctx, settings))
    app.include_router(routes_keys.create_router(ctx, settings))
    app.include_router(routes_install.create_router(ctx, settings, proxy))
    app.include_router(routes_story.create_router(ctx, settings, proxy, media))
    # Last: whatever the routes above do not answer belongs to the application.
    app.include_router(proxy_routes.create_router(proxy))
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The HomePilot app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(PROFILE_NAME, NATIVE_PORT, partial(build_app, cors=False), DESCRIPTION, cors=CORS)
