"""The ComfyUI-Docker dashboard profile (API v1.0.0, native port 8080) on kubepilot's CRs.

Issue 12: health, system status and storage; the preset catalog with its installs as ModelPulls
and the downloads they are; the model list from the models volume and model deletion; the
optional login (``auth``, ``ENABLE_AUTH``) and the rate limits (``ratelimit``); workflows
(templates from a ConfigMap, user workflows on the outputs volume: ``workflows``); ComfyUI
(health, execute, queue, history, clear queue, interrupt: ``routes_comfyui``) as GenerationJobs of
type ``workflow`` (``executions``, shapes in ``comfyui``); the WebSocket's ``downloads``,
``system``, ``queue`` and ``workflows`` channels (``ws``).

Decisions (document vs product shapes, deviations):

- Errors are ``{"error": {"code", "message", "details", "timestamp"}}`` with the seed's codes and
  the statuses issue 12 takes from the product's companion guide (``errors``); bad input is a 400
  ``INVALID_REQUEST`` (a code of ours: the seed has none for it), never a 422 or a 500.
- JSON the profile reads itself (execute and workflow save bodies, a graph sent as JSON text,
  WebSocket messages, stored workflows) is JSON as the API server and browsers read it: NaN,
  Infinity, a number beyond a float, a lone surrogate escape (``"\\ud800"``) or nesting deeper than
  Python's reader goes is 400 ``INVALID_REQUEST`` (a stored file holding one is no workflow); a
  workflow graph nests at most 64 levels (400 ``INVALID_WORKFLOW``: no answer could carry a deeper
  one back). Validation errors show an ``input`` nested deeper than 32 levels as a note, and texts
  and numbers no JSON answer can carry by their escape / name (``errors``).
- Every answer carries ``X-API-Version: 1.0.0`` and the rate limit's ``X-RateLimit-Limit /
  Remaining / Reset`` (and the guide's ``X-RateLimit-Reset-Time``), errors included: an unexpected
  error's 500 is rendered inside the profile so it has them too. CORS (``CORS_ORIGINS``, every
  origin by default) exposes them and ``Retry-After`` to browser clients; preflights are answered
  by the CORS layer and not counted.
- ``/health`` carries the guide's ``service: comfyui-dashboard`` besides the seed's fields.
- The guide's optional paging (``page``, ``per_page``) on the preset, model and workflow lists:
  given either, the answer is that page with ``page``, ``per_page``, ``has_next``, ``has_prev``
  (the counts still cover every match); without them, every row, as the seed.
- Roles: ``administrator`` (the seed's) and any other role may do everything; ``viewer`` (ours)
  may only read: a write is 403 ``FORBIDDEN`` (the guide's "Insufficient permissions").
- The companion guide's Python / JavaScript SDK and WebSocket client examples run against this
  profile as written (``tests/gateway/test_comfyui_docker_guide_clients.py``); their "API key" is
  a login token (the product's ``generate-key`` API keys do not exist here).
- ``/health`` is at the root as the seed writes it, and also at ``/api/health`` for clients that
  join the base URL ``/api`` with ``/health``.
- A preset is one ModelPull (URL source, every file of the preset) whose destination is the type
  folder its files share, or ``mixed`` when they span folders (checkpoint + VAE + text encoder:
  each file's path keeps its type folder). A preset with files outside the model type folders
  (the product's ``audio``, ``audio_encoders``, ``TTS``) is refused with 400 ``INVALID_REQUEST``
  naming them (``details.unsupported_folders``). The catalog ConfigMap may hold our list shape or
  the product's own ``presets.yaml`` (a mapping by id, ``size`` strings); without it the built-in
  catalog serves, which holds real multi-folder presets of the product's catalog.
- ``installed`` means every file of the preset is on the models volume (the index), whoever put it
  there; the ModelPull gives the install state, its progress and the install date.
- ``DOWNLOAD_FAILED``: 500 on install when the cluster refuses the preset's ModelPull (a catalog
  entry beyond the CRD's limits); a download that fails later is the WebSocket's ``error``
  ``DOWNLOAD_FAILED`` (the guide's shape) and a ``failed`` preset status / download row.
- ``download_id`` is ``dl_`` and six digits, chosen when the ModelPull is created and kept as its
  label; it resolves for as long as that ModelPull lives (a new install after a failed or
  cancelled one is a new download with a new id).
- Statuses: a download is ``queued``, ``downloading``, ``paused``, ``completed``, ``failed`` or
  ``cancelled``; a preset ``not_installed``, ``installing``, ``paused``, ``installed``, ``failed``,
  ``cancelled`` or ``uninstalling``. Pause, resume or cancel of a finished download is a 409
  ``DOWNLOAD_NOT_ACTIVE``; an unknown id a 404 ``DOWNLOAD_NOT_FOUND`` (codes of ours).
- Cancel answers ``files_removed: true``: a cancelled pull publishes nothing under the type
  folders; its partial bytes stay in the downloader's content store (keyed by hash) for a later
  pull of the same file to resume.
- ``GET /api/models`` rows carry ``size_bytes`` besides the seed's fields (exact sizes for
  clients that need them); ``preset`` is the preset whose download (else catalog entry) lists the
  file.
- ``DELETE /api/models`` refuses (``MODEL_IN_USE`` in ``errors``) a file the downloads of two or
  more presets hold; a file one preset holds is deleted, and that preset then reads not installed.
  When none of the paths names a model file, the answer is the guide's 404 ``MODEL_NOT_FOUND``
  (``details.errors`` per path); a partial failure is the seed's 200 with ``errors``.
  Uninstalling a preset never removes a file another live ModelPull lists (another preset's
  download sharing its VAE or text encoder, or any other pull of the namespace).
- The WebSocket answers ``subscribe`` / ``unsubscribe`` with ``subscribed`` / ``unsubscribed``
  (the connection's channels), an action with ``action_result``, and a successful ``auth`` with
  ``authenticated``: message types of ours, which the seed leaves open (``ws``).
- Logout revocations and rate-limit counters live in this replica's memory (``auth``,
  ``ratelimit``): with several replicas, the limit is per replica and a revoked token stays
  valid on the others until it expires.
- ``resources`` (and the WebSocket's ``system_status``) are the node agents' figures: node CPU and
  memory, the mean utilisation of the GPUs they report; without an answering agent, the gateway
  host's CPU and memory and a GPU figure of 0 (``resources``).
- An execution's ``prompt_id`` is a UUID4 chosen by the gateway; the GenerationJob is
  ``comfyui-<prompt_id>`` with the label ``kubepilot.io/prompt-id``. ``number`` is the job's
  1-based place in this profile's queue now (running first, then by the service's queue position,
  priority and submission time), not ComfyUI's ever-growing counter: the guide's example numbers
  the running job 1 and the next 2, and our one-shot generator Jobs have no global counter.
- Backend: a ComfyUI ServiceInstance in the namespace takes every execution (``spec.serviceRef``;
  stopped, it is started when ``autoStartComfyUI``); without one, the operator runs the graph on
  our diffusers generator, and a graph it cannot translate is refused up front with 400
  ``INVALID_WORKFLOW`` naming the unsupported node types (``details.unsupported_node_types``). A
  history entry's ``backend`` says which engine ran it (``comfyui`` / ``diffusers``).
- 503 ``COMFYUI_UNAVAILABLE``: health while the ComfyUI service exists but is not Running and ready;
  execute only while it is in phase ``Error``. 507 ``QUEUE_FULL`` (the guide's status) once
  ``maxQueueSize`` executions are unfinished (counted per replica, so replicas may overshoot by one).
- Clear queue (``type`` ``pending`` by default, ``running``, ``all``; other values 400) sets
  ``spec.cancel`` with ``cancelReason: QueueCleared``; interrupt cancels the running executions
  with ``Interrupted`` and answers their ``prompt_ids`` besides the seed's ``status``. A cleared
  pending job leaves the queue at once; an interrupted one shows as running until it stops.
- History: ``GET /api/comfyui/history/{prompt_id}`` (the seed's) answers for any execution of this
  profile, with its current status (``pending``, ``running``, ``completed``, ``failed``,
  ``cancelled``), ``backend`` and, when it did not complete, ``error``; ``GET /api/comfyui/history``
  (ours) lists finished ones, newest first. A finished execution's GenerationJob (its history) is
  kept ``executionTtlSeconds`` (7 days by default); its images stay on the outputs volume. An
  unknown prompt id is 404 ``PROMPT_NOT_FOUND`` (a code of ours).
- ``workflow_progress``'s ``value`` / ``max`` is the overall fraction (``max`` 1.0, as the seed's
  example), ``node`` the executing node (null while unknown); ``step``, ``total_steps`` and
  ``percent`` are ours. A failed execution is an ``error`` message with code ``EXECUTION_FAILED``
  (ours) on the ``workflows`` channel.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from kubepilot_gateway.app.errors import install_error_envelope
from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles import Profile
from kubepilot_gateway.profiles.comfyui_docker import routes, routes_comfyui, routes_workflows, ws
from kubepilot_gateway.profiles.comfyui_docker.auth import Authenticator, auth_middleware
from kubepilot_gateway.profiles.comfyui_docker.auth import create_router as create_auth_router
from kubepilot_gateway.profiles.comfyui_docker.config import PROFILE_NAME, comfyui_docker_settings
from kubepilot_gateway.profiles.comfyui_docker.dashboard import Dashboard
from kubepilot_gateway.profiles.comfyui_docker.errors import envelope, on_validation
from kubepilot_gateway.profiles.comfyui_docker.executions import Executions
from kubepilot_gateway.profiles.comfyui_docker.ratelimit import rate_limit_middleware
from kubepilot_gateway.profiles.comfyui_docker.workflows import Workflows

__all__ = ["CORS", "NATIVE_PORT", "PROFILE", "build_app", "create_app"]

NATIVE_PORT = 8080
TITLE = "ComfyUI-Docker Dashboard API"
DESCRIPTION = "ComfyUI-Docker unified dashboard"


EXPOSED_HEADERS = (
    "X-API-Version",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-Time",
    "Retry-After",
)
"""Headers a browser client of another origin may read (the rate limit's and the version)."""


def cors_from_env(value: str | None) -> CorsSettings:
    """The seed's policy: every origin by default, ``CORS_ORIGINS`` (comma-separated) narrows it."""
    origins = [item.strip() for item in (value or "").split(",") if item.strip()] or ["*"]
    return CorsSettings(
        allowOrigins=origins, allowMethods=["*"], allowHeaders=["*"], exposeHeaders=list(EXPOSED_HEADERS)
    )


CORS = cors_from_env(os.environ.get("CORS_ORIGINS"))


async def api_version_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """``X-API-Version`` on every answer, errors included."""
    response = await call_next(request)
    response.headers["X-API-Version"] = routes.API_VERSION
    return response


def build_app(ctx: GatewayContext, *, cors: bool = True) -> FastAPI:
    """The dashboard app over ``ctx`` (whose cache the caller starts and stops); ``cors`` False
    leaves CORS to whoever serves it. The product is not FastAPI: no ``/docs`` or ``/redoc``."""
    app = FastAPI(title=TITLE, version=routes.API_VERSION, docs_url=None, redoc_url=None)
    settings = comfyui_docker_settings(ctx)
    auth = Authenticator(ctx, settings, settings.auth_enabled(os.environ))
    app.middleware("http")(auth_middleware(auth))
    # Added after the auth check, so outside it: refusals carry the rate and version headers too.
    app.middleware("http")(rate_limit_middleware(settings, auth))
    app.middleware("http")(api_version_middleware)
    # Its own JSON reader (``parse_json``) refuses lone surrogates and deep nesting in the
    # product's words, route by route: the core's guard would answer them first, generically.
    install_error_envelope(app, envelope, validation_status=400, json_text_guard=False)
    # In place of the core's validation handler: one safe for inputs nested as deep as JSON goes.
    app.add_exception_handler(RequestValidationError, on_validation)
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=CORS.allowOrigins,
            allow_methods=CORS.allowMethods,
            allow_headers=CORS.allowHeaders,
            expose_headers=CORS.exposeHeaders,
        )
    board = Dashboard(ctx, settings)
    app.state.dashboard = board
    app.state.auth = auth
    app.include_router(routes.create_router(board))
    executions = Executions(ctx, settings)
    app.state.executions = executions
    app.include_router(routes_workflows.create_router(board, Workflows(ctx, settings)))
    app.include_router(routes_comfyui.create_router(executions))
    app.include_router(create_auth_router(auth))
    app.include_router(ws.create_router(board, executions, auth))
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The dashboard app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(
    PROFILE_NAME,
    NATIVE_PORT,
    partial(build_app, cors=False),
    DESCRIPTION,
    cors=CORS,
    open_paths=frozenset({"/health", "/api/health", "/api/auth/login"}),
)
