"""The OneTrainer Web UI profile (native port 8000): training sessions on kubepilot's TrainingRuns.

First increment (issue 11). Served: training status / start / stop / backup / save / progress
(OT-01 … OT-06), configs current / list / load / validate / schema / defaults (OT-07 … OT-12),
default and custom sample requests and the sample listing (OT-13 … OT-17) and the WebSocket ``/ws``
(``connected``, ``pong``, ``training_state``, ``sample_*``), and system info / resources /
processes (OT-18 … OT-20) from the node agents and the session's trainer pod (``system``; PyTorch
allocator and per-process figures are null: nothing measures them inside the pod yet). Not yet:
running a config's LoRA settings on the
built-in trainer where no OneTrainer image exists (today a session always runs the OneTrainer
adapter, so the dev stack needs a OneTrainer checkout or the tests' stand-in).

Decisions (document vs product shape):

- **A session is a TrainingRun** ``trainer: onetrainer`` named ``<runPrefix>-<n>``; the current
  session is the highest number in the informer cache (``session``'s docstring): state is in the
  cluster, so a gateway restart or a second replica agrees, and the create of the next name is the
  lock that makes two concurrent starts one run.
- **Errors** are FastAPI's ``{"detail": "..."}``. Commands without an active session answer 400
  ``No training in progress``; a start during one answers 400 ``Training already in progress``;
  neither ``config_path`` nor ``config_dict`` is 400. A body that does not validate is a 400 (the
  seed lists 400 for invalid parameters, not FastAPI's 422) whose ``detail`` is one line of text,
  since the seed's envelope is a string.
- **config_dict wins** when a start sends both. ``config_path`` is read by the gateway from the
  datasets or outputs volume (``paths``); the pod gets the config object itself.
- **Paths in the config.** ``base_model_name`` must be on the models volume (a Hugging Face id would
  need a ModelPull first: refused with a 400); the enabled concepts' folders must be on the datasets
  volume and their deepest common folder becomes the run's dataset, whose layout the adapter turns
  back into OneTrainer concepts (``N_name`` sub-folders repeat N times). The output folder is the
  stem of ``output_model_destination`` when it is a valid name, else the run's name.
- **Default and custom samples are one action**, ``sample`` (parameters in
  ``kubepilot.io/action-sample-params``; none for the default prompts), because the trainer's
  control interface has one; a second request before the first is handed over replaces it.
- **status** is ``running`` for every active phase (Stopping too) and ``idle`` otherwise, as
  seed-api-inventory §4.2 renders it; ``epoch_sample`` is ``epoch_step * batch_size``.
- **Named configs** are ``<name>.json`` keys of a ConfigMap (``configs.configMap``), so names are
  what a ConfigMap key can hold (OneTrainer's own preset names with spaces and ``#`` cannot be);
  the schema and defaults cover the keys a session is driven by and allow every other key.
- **CORS open to every origin** (no credentials): the seed documents no policy, but its own
  JavaScript example calls ``http://localhost:8000`` with ``fetch`` from a page that is served
  elsewhere, which only works with it. FastAPI's default ``/docs`` stays.
"""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.responses import Response

from kubepilot_gateway.app.errors import Problem, install_error_envelope
from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles import Profile
from kubepilot_gateway.profiles.onetrainer import (
    routes_configs,
    routes_samples,
    routes_system,
    routes_training,
    routes_ws,
)
from kubepilot_gateway.profiles.onetrainer.config import SystemSettings
from kubepilot_gateway.profiles.onetrainer.routes_configs import ConfigsSettings
from kubepilot_gateway.profiles.onetrainer.routes_training import TrainingSettings
from kubepilot_gateway.settings import Strict

__all__ = [
    "CORS",
    "NATIVE_PORT",
    "PROFILE",
    "OneTrainerSettings",
    "build_app",
    "create_app",
    "onetrainer_settings",
]

NAME = "onetrainer"
NATIVE_PORT = 8000
TITLE = "OneTrainer Web UI"
DESCRIPTION = "OneTrainer Web UI (training sessions, samples, configs)"
CORS = CorsSettings(allowOrigins=["*"])
"""Every origin, every method and header, no credentials (see the module docstring)."""


class OneTrainerSettings(Strict):
    """Everything these endpoints read besides the gateway-wide settings (``profileSettings.onetrainer``)."""

    training: TrainingSettings = Field(default_factory=TrainingSettings)
    configs: ConfigsSettings = Field(default_factory=ConfigsSettings)
    system: SystemSettings = Field(default_factory=SystemSettings)


def onetrainer_settings(ctx: GatewayContext) -> OneTrainerSettings:
    return OneTrainerSettings.model_validate(ctx.settings.profileSettings.get(NAME, {}))


def envelope(request: Request, problem: Problem) -> Response:
    """``{"detail": "<one line>"}``: validation errors too are one string, as the seed shows."""
    detail = problem.detail if isinstance(problem.detail, str) else problem.message
    headers = dict(problem.headers) if problem.headers else None
    return JSONResponse({"detail": detail}, status_code=problem.status, headers=headers)


def build_app(ctx: GatewayContext, *, cors: bool = True) -> FastAPI:
    """The OneTrainer app over ``ctx`` (whose cache the caller starts and stops); ``cors`` False
    leaves CORS to whoever serves it (the gateway's listeners apply ``PROFILE.cors``)."""
    app = FastAPI(title=TITLE)
    install_error_envelope(app, envelope, validation_status=400)
    if cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=CORS.allowOrigins,
            allow_credentials=CORS.allowCredentials,
            allow_methods=CORS.allowMethods,
            allow_headers=CORS.allowHeaders,
        )
    config = onetrainer_settings(ctx)
    app.include_router(routes_training.create_router(ctx, config.training))
    app.include_router(routes_configs.create_router(ctx, config.configs, config.training.runPrefix))
    app.include_router(routes_samples.create_router(ctx, config.training.runPrefix))
    app.include_router(routes_system.create_router(ctx, config.system, config.training.runPrefix))
    app.include_router(routes_ws.create_router(ctx, config.training.runPrefix))
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The OneTrainer app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(NAME, NATIVE_PORT, partial(build_app, cors=False), DESCRIPTION, cors=CORS)
