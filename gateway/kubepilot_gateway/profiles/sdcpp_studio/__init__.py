"""The sd.cpp Studio profile (native port 3000): its REST API under ``/api`` and the
Automatic1111-compatible API at ``/sdapi/v1``, on kubepilot's GenerationJobs.

Decisions:

- **Every generation is a GenerationJob** named by the UUID the client sees (labelled with the
  profile), so the queue, the generations list and the images are all read from the cache and a
  gateway restart loses nothing. The operator schedules it (a running generator service for the
  model, else a one-shot generator Job). The request fields the spec cannot hold (size string,
  quality, style, sd.cpp job type, catalog model id) travel in one annotation (``jobs``).
- **Document shapes by default, the product's under ``compat: product``** (profile setting): the
  product answers epoch milliseconds instead of seconds, ``/api/generations`` as ``{generations,
  pagination}`` over every job instead of a bare array of completed ones, ``authRequired``
  instead of ``authEnabled`` in ``/api/config``, ``/api/models/running`` as ``{count, models}``,
  model start / stop answers with ``modelId`` and ``message``, and ``model_status_changed`` with
  ``modelId`` instead of ``id``.
- **/sdapi/v1 answers A1111's own shapes** (samplers ``[{name, aliases, options}]``, sd-models
  ``[{title, model_name, hash, sha256, filename, config}]``, progress with ``state.job_count`` and
  ``state.job_no``, txt2img ``{images, parameters, info}`` with ``info`` a JSON string), since
  every A1111 client reads those rather than the seed's short examples. txt2img honours width and
  height (the product ignores them). Its model: ``override_settings.sd_model_checkpoint``, then
  ``sd_model_checkpoint``, then the one set through ``POST /sdapi/v1/options`` (a ConfigMap),
  then the catalog default.
- **Errors** are ``{"error": ...}`` (plus ``detail`` where the product adds one), 400 for bad
  input (never FastAPI's 422), 404 for an unknown job, generation or image. The product's texts
  are used where known ("Missing required field: prompt", "Invalid model: x", "Generation
  timeout"). What a job could not hold is refused before one is created: a JSON body (the
  WebSocket's messages too, which are then ignored) nested more than 64 levels deep or holding a
  lone surrogate escape is "Invalid JSON body"; prompts longer than the GenerationJob schema's
  32768 characters, sampler and scheduler names longer than 100, A1111 ``styles`` that are not a
  list of names are 400s; a job the API server still refuses is a 400 "Invalid parameters" (its
  staged uploads removed). A refusal quotes at most the first 200 characters of a value.
- **Sizes** must be 64-4096 and multiples of 8 (what the generator accepts): anything else is a
  400 rather than a job that fails later. An A1111 sampler the generator lacks runs with the
  model's own scheduler instead of failing.
- **Any OPTIONS request answers 204 with CORS headers**, as the product does (SillyTavern pings
  ``OPTIONS /v1/images/generations``); CORS is open to every origin without credentials (the
  product's Express ``cors()``).
- **The WebSocket** (``/ws``) is fed by the event bus: document mode sends ``{"type", "data"}``
  with the full job / generation object; product mode sends the product's ``{"channel", "type",
  "data"}`` with its short payloads, a ``connected`` greeting, ``subscribed`` acks, ``job_created``
  and ``generation_complete``. Both answer ``ping`` with ``pong``. A client that lags behind the
  bus loses the dropped events (no snapshot is resent yet).
- **Deletes**: ``DELETE /api/generations/:id`` removes the CR and the image files its status
  names (cancelling it first when it still runs); ``DELETE /api/generations`` removes every
  finished job (queued and running ones stay), files only with ``delete_files=true``.
- **Image inputs** (edit, variation, their queue forms, upscale, A1111 img2img and extras): the
  image comes as a multipart file or base64 (a bare string or a ``data:`` URL); it is bounded
  (``maxUploadBytes``, ``maxUploadPixels``, ``maxRequestBytes`` while the body streams in), must
  decode in Pillow as PNG, JPEG or WebP, is re-encoded as PNG and written to the inputs area of
  the outputs volume (``inputsDir``) as ``<uuid>.png``: the client's file name is never used.
  Refusals are the product's 400s ("Image file is required", "File too large", "Only image files
  are allowed"). Staged inputs are removed when their job cannot be created and when the
  generation is deleted (see :mod:`.uploads`).
- **Edit / variation**: an edit is an ``img2img`` GenerationJob, or an ``inpaint`` when a ``mask``
  comes with it; a variation is a ``variation`` job; ``strength`` defaults to 0.75 for both. The
  document lists no ``model`` for them (the product requires one): without one the default model
  runs. Without ``size`` the output keeps the input image's size (fitted to multiples of 8,
  64-4096) rather than 512x512, so an edit keeps its picture's shape. A1111's img2img is an edit
  of ``init_images[0]`` (further init images are ignored), ``mask`` makes it an inpaint, and its
  echoed ``parameters`` carry ``init_images``/``mask`` as null, as A1111's do.
- **Upscale** (``/api/queue/upscale``, ``extra-single-image``, ``extra-batch-images``): one
  ``upscale`` GenerationJob (a batch is one job: ``inputs.image`` and ``inputs.images`` in order).
  The ``upscalers`` setting maps the names clients send to the operator's upscaler (a name it
  configures, a models-volume path, or a bare file in ``upscale_models/``); the default is the
  product's "RealESRGAN 4x+" as ``RealESRGAN_x4plus.pth``; an unknown name is a 400. ``resize_mode``
  1 (to a size) upscales by the factor that covers the target, keeping the aspect ratio (no crop:
  a GenerationJob has a factor, not a target size); the factor must be 1-8. The product's
  "Resize Lanczos/Bicubic/Nearest" pseudo-upscalers are not offered. ``extra-single-image`` reads
  the product's multipart names (``upscaler``, ``upscale_factor``, ``target_*``) from a form and
  A1111's (``upscaler_1``, ``upscaling_resize``, ``upscaling_resize_w/h``) from JSON.
- **Model start / stop** are one ServiceInstance per catalog model (its ``backend``: our
  generator server or an sd.cpp server), started with ``running: true`` and stopped with
  ``running: false`` (see :mod:`.services`); ``running``, each model's ``status`` and the
  WebSocket's ``model_status_changed`` (channel ``models``) come from those objects' phases.
  ``api`` models cannot start (400); starting a starting or running model is the product's 409,
  stopping a stopped one its 400.
- **Logs**: ``/api/logs`` merges the jobs' conditions (from the cluster) with the gateway's own
  actions for this profile (a bounded ring in this process), see :mod:`.logs`; per-generation
  logs are the job's conditions as the operator recorded them (``limit`` keeps the newest).
- The catalog (``models.yml``) is the profile setting ``models`` (list, one, status, files,
  downloaded, running, start/stop, and downloads as one ModelPull per model: ``downloads``): it
  lives in the gateway's settings ConfigMap, which the chart renders from Helm values
  (``gateway.settings.profileSettings.sdcpp-studio``), not in a ConfigMap of its own.
- **The API key** is checked inside the profile (:mod:`.auth`): ``Authorization: Bearer`` or
  ``X-API-Key``, from ``apiKeyEnv`` / ``apiKeyFile``; every route but ``/api/health`` and
  ``/api/config`` needs it (the WebSocket too, where ``?api_key=`` also works), and
  ``/api/config`` says whether it is required. Document mode answers a missing or wrong key 401,
  product mode 401 for a missing and 403 for a wrong one, as the product does. The listener's own
  auth may guard the profile instead (it leaves the same two routes open); set ``authEnabled``
  then, since a profile cannot see the listener's settings.
- **A1111 extras that SillyTavern lists**: ``/sdapi/v1/latent-upscale-modes`` and
  ``/sdapi/v1/sd-vae`` answer empty lists (no hires fix, no VAE choice) rather than 404, which
  would fail its upscaler menu. ``enable_hr`` and the other hires-fix fields of txt2img are
  accepted and ignored (echoed in ``parameters``). An interrupted txt2img answers the product's
  500 ``{"error": "Generation cancelled"}``, not A1111's partial images.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from kubepilot_gateway.app.errors import Problem, install_error_envelope
from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles import Profile
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio import (
    routes_api,
    routes_inputs,
    routes_models,
    routes_sdapi,
    routes_ws,
)
from kubepilot_gateway.profiles.sdcpp_studio.auth import OPEN_PATHS, ApiKeyMiddleware
from kubepilot_gateway.profiles.sdcpp_studio.config import PROFILE_NAME, sdcpp_settings
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

__all__ = ["CORS", "NATIVE_PORT", "PROFILE", "build_app", "create_app", "envelope"]

NATIVE_PORT = 3000
TITLE = "sd.cpp Studio"
DESCRIPTION = "sd.cpp Studio (REST API and the Automatic1111-compatible API)"
CORS = CorsSettings(allowOrigins=["*"], allowCredentials=False, allowMethods=["*"], allowHeaders=["*"])
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET,HEAD,PUT,PATCH,POST,DELETE",
    "Access-Control-Allow-Headers": "*",
}


def envelope(request: Request, problem: Problem) -> Response:
    """The product's error shape: ``{"error": text}``; validation errors add ``detail``."""
    if problem.source == "auth":
        body: dict[str, object] = {"error": "Unauthorized"}
    elif problem.source == "validation":
        body = {"error": "Invalid parameters", "detail": problem.message}
    else:
        body = {"error": problem.message}
    headers = dict(problem.headers) if problem.headers else None
    return JSONResponse(body, status_code=problem.status, headers=headers)


async def options_204(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Every OPTIONS request (a preflight or a plain ping) is a 204 with CORS headers."""
    if request.method == "OPTIONS":
        headers = dict(PREFLIGHT_HEADERS)
        asked = request.headers.get("access-control-request-headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        return Response(status_code=204, headers=headers)
    return await call_next(request)


def build_app(ctx: GatewayContext, *, cors: bool = True) -> FastAPI:
    """The sd.cpp Studio app over ``ctx``; ``cors`` False leaves CORS to whoever serves it."""
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None)
    # Its own JSON reader (``parse_json``) refuses lone surrogates and deep nesting in the
    # product's words, route by route: the core's guard would answer them first, generically.
    install_error_envelope(app, envelope, validation_status=400, json_text_guard=False)

    runtime = Runtime(ctx, sdcpp_settings(ctx))

    async def on_bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, tr.BadRequest)
        runtime.logs.add("warn", "routes", f"{request.method} {request.url.path} refused: {exc.message}")
        return routes_api.bad_request_response(exc)

    app.add_exception_handler(tr.BadRequest, on_bad_request)
    # Innermost of the middleware: refusals still get CORS headers and OPTIONS its 204.
    app.add_middleware(
        ApiKeyMiddleware, keys=runtime.api_keys, compat=runtime.settings.compat, open_paths=OPEN_PATHS
    )
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=CORS.allowOrigins,
            allow_credentials=CORS.allowCredentials,
            allow_methods=CORS.allowMethods,
            allow_headers=CORS.allowHeaders,
        )
    # Added last, so outermost: every OPTIONS is the product's 204, preflights included.
    app.middleware("http")(options_204)
    app.include_router(routes_api.create_router(runtime))
    app.include_router(routes_inputs.create_router(runtime))
    app.include_router(routes_models.create_router(runtime))
    app.include_router(routes_sdapi.create_router(runtime))
    app.include_router(routes_ws.create_router(runtime))
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The sd.cpp Studio app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(
    PROFILE_NAME,
    NATIVE_PORT,
    partial(build_app, cors=False),
    DESCRIPTION,
    cors=CORS,
    open_paths=OPEN_PATHS,  # the listener's auth, when on, leaves them open too
)
