"""The OneTrainer Web UI profile (native port 8000): training sessions on kubepilot's TrainingRuns.

Issue 11. Served: training status / start / stop / backup / save / progress
(OT-01 … OT-06), configs current / list / load / validate / schema / defaults (OT-07 … OT-12),
default and custom sample requests and the sample listing (OT-13 … OT-17) and the WebSocket ``/ws``
(``connected``, ``pong``, ``training_state``, ``sample_*``), and system info / resources /
processes (OT-18 … OT-20) from the node agents and the session's trainer pod (``system``: PyTorch
allocator and per-process figures come from the trainer's progress reports, ``status.metrics`` keys
``gpu.<i>.memory_*_bytes`` and ``process.*``; kubepilot's trainers do not send them yet, so they
stay null until they do). A session
runs on OneTrainer itself (its image, through the adapter) or, where that image is not available,
on kubepilot's built-in LoRA trainer (``builtin``; the table below).

**Which trainer runs a session** (``profileSettings.onetrainer.training``): ``backend`` is
``onetrainer``, ``builtin`` or ``auto`` (the default); ``auto`` means ``onetrainer`` when
``onetrainerImageAvailable`` is true and ``builtin`` otherwise. The gateway cannot see which
images a cluster can pull (the image is the operator's ``images.onetrainer`` setting, and the
devcluster "runs" every ``kubepilot/*`` image as a local process, OneTrainer or not), so an admin
whose cluster has the OneTrainer image says so with that setting; the dev stack and CI leave it
false and train on the built-in trainer. The choice is made at each start and recorded on the run:
``spec.trainer`` (``onetrainer`` or ``kubepilot-lora``), the label ``kubepilot.io/trainer`` and the
annotation ``kubepilot.io/onetrainer-backend`` (``onetrainer`` / ``builtin``). Status, progress,
the WebSocket, actions and samples read either kind of run the same way.

**A OneTrainer config on the built-in trainer** (``builtin``): the run is ``trainer:
kubepilot-lora`` with these ``spec`` fields; the config itself is kept in ``spec.tool.config``
(``/api/config/current`` shows it; the built-in trainer does not read it). Every key is mapped,
checked, replaced, or named in a warning: the warnings are the run's annotation
``kubepilot.io/onetrainer-warnings`` (a JSON list) and are added to ``/api/config/validate``'s
``warnings``; what cannot be trained is a 400 at start (and ``valid: false`` on validate). An
absent key takes ``/api/config/defaults``' value where the table names a default.

| OneTrainer key (default) | TrainingRun field | Rule |
|---|---|---|
| `base_model_name` | `spec.baseModel.path` / `.modelPullRef.name` | (1) |
| `model_type` (`STABLE_DIFFUSION_15`) | checked | `STABLE_DIFFUSION_15`, `_20`, `_21`; others 400 |
| `training_method` | checked | `LORA`; absent: LORA + warning; others 400 |
| `concepts[].path` (enabled ones) | `spec.dataset.path` | (2) |
| `concepts[].balancing` | the folder's `N_` prefix | (3) |
| `concepts[].text.prompt_source` | `spec.dataset.captionExtension` `.txt` | `sample`; others: warning |
| other concept keys | - | warning (augmentations are not applied) |
| `epochs` (10) | `spec.hyperparameters.maxSteps` | (4) |
| `batch_size` (1) | `hyperparameters.batchSize` | |
| `gradient_accumulation_steps` (1) | `hyperparameters.gradientAccumulationSteps` | |
| `learning_rate` (0.0001) | `hyperparameters.learningRate` | |
| `learning_rate_scheduler` | `hyperparameters.lrScheduler` | (5) |
| `learning_rate_warmup_steps` | `hyperparameters.warmupSteps` | rounded; `CONSTANT` + warm-up: (5) |
| `resolution` ("512") | `hyperparameters.resolution` | `"WxH"`: sqrt(W*H); `"a,b"`: a (warnings) |
| `aspect_ratio_bucketing` | `hyperparameters.bucketing` | |
| `lora_rank` (16) | `hyperparameters.rank` | |
| `lora_alpha` (1.0) | `hyperparameters.alpha` | |
| `train_dtype` | `hyperparameters.mixedPrecision` | (6) |
| `seed` (42) | `hyperparameters.seed` | |
| `gradient_checkpointing` | `hyperparameters.gradientCheckpointing` | true, `ON`; `CPU_OFFLOADED`: warning |
| `samples[].prompt` (enabled) | `hyperparameters.samplePrompts` | at most 32; other sample keys: warning |
| `sample_after`, `sample_after_unit` | `hyperparameters.sampleEverySteps` | (7) |
| `save_every`, `save_every_unit` | `hyperparameters.saveEverySteps` | (7) |
| `backup_after`, `backup_after_unit` | - | warning unless `NEVER` or 0 (no scheduled backups) |
| `output_model_destination` | `spec.output.name` | (8) |
| `output_model_format` | - | `SAFETENSORS`; others: warning |
| `workspace_dir`, `cache_dir`, `__version` | - | replaced by the run's own folders; no warning |
| any other key (`optimizer`, `ema`, ...) | - | warning `<key>: not used by the built-in trainer` |

(1) A file or folder on the models volume; else the name of a ModelPull in the namespace (the run
waits for it to complete); else 400. (2) The deepest common folder of the enabled concepts, on the
datasets volume; each concept must be that folder or a direct sub-folder of it (else 400); folders
and images in it that are no enabled concept are trained too (warning). (3) The built-in trainer
repeats an `N_name` folder N times per epoch; a `balancing` that differs is a warning, and so are
`balancing_strategy` `SAMPLES` and `include_subdirectories`. (4) epochs * ceil(ceil(images per epoch
/ batch_size) / gradient_accumulation_steps), the images counted in the dataset folder as the
trainer reads it (``builtin``'s docstring: exact for batch 1 or without buckets). (5) `CONSTANT`,
`LINEAR`, `COSINE`, `COSINE_WITH_RESTARTS` as named (`CONSTANT` with a warm-up:
`constant_with_warmup`); `COSINE_WITH_HARD_RESTARTS`: `cosine_with_restarts` (warning); `REX`,
`ADAFACTOR` and others: `constant` (warning). (6) `FLOAT_32`: `no`; `BFLOAT_16`: `bf16`;
`FLOAT_16`: `fp16` with GPUs, `no` on the CPU (warning); others: `no` (warning). (7) `STEP`: every
n steps; `EPOCH`: n * steps per epoch; `ALWAYS`: 1; `NEVER` or 0: off; `SECOND` / `MINUTE` /
`HOUR`: off (warning: the built-in trainer schedules by steps; the API's requests still work).
(8) The file stem, else the run's name; the LoRA is `<outputs>/<name>/<name>.safetensors` and is
published as `loras/<name>.safetensors`.

The profile's own run settings apply to both backends: ``gpuCount`` / ``gpuProfile`` become
``spec.resources.gpu`` and ``runEnv`` ``spec.env``; ``image`` (an override of the OneTrainer image)
is not used for a built-in run.

**Progress and actions on the built-in trainer** keep the product's shapes: ``epoch`` /
``epoch_step`` / ``global_step`` / ``max_step`` / ``max_epoch`` are the trainer's own
``status.progress`` (epoch, 0-based, = step // steps per epoch), ``epoch_sample`` is ``epoch_step``
times ``batch_size``. Save, backup, default and custom sample, and stop reach it as the same
nonce actions (its control interface takes all four): save writes a checkpoint
(``checkpoints/step-N``), backup a full backup (``backups/step-N``), a sample renders into the
run's ``samples`` folder (a custom one with its parameters, within the trainer's limits: at most 200
steps, CFG at most 50; beyond them the action is acknowledged as Failed with the reason), stop
saves and ends the run Stopped. Samples are listed from that folder (``samples``).

Decisions (document vs product shape):

- **A session is a TrainingRun** (``trainer: onetrainer``, or ``kubepilot-lora`` on the built-in
  backend) named ``<runPrefix>-<n>``; the current
  session is the highest number in the informer cache (``session``'s docstring): state is in the
  cluster, so a gateway restart or a second replica agrees, and the create of the next name is the
  lock that makes two concurrent starts one run.
- **Bad input is never a 500**: paths longer than the file system takes are refused before any
  file call, and a config holding NaN or Infinity (Python's JSON reads them, the API server's does
  not) is a 400 at start and ``valid: false`` on validate. 501 is never answered: both trainers take
  every command the seed has.
- **Errors** are FastAPI's ``{"detail": "..."}``. Commands without an active session answer 400
  ``No training in progress``; a start during one answers 400 ``Training already in progress``;
  neither ``config_path`` nor ``config_dict`` is 400. A body that does not validate is a 400 (the
  seed lists 400 for invalid parameters, not FastAPI's 422) whose ``detail`` is one line of text,
  since the seed's envelope is a string.
- **config_dict wins** when a start sends both. ``config_path`` is read by the gateway from the
  datasets or outputs volume (``paths``); the pod gets the config object itself.
- **Paths in the config.** ``base_model_name`` must be on the models volume or name a ModelPull of
  the namespace (a Hugging Face id needs a ModelPull first: refused with a 400); the enabled
  concepts' folders must be on the datasets volume and their deepest common folder becomes the
  run's dataset, whose layout the adapter turns back into OneTrainer concepts (``N_name``
  sub-folders repeat N times) and the built-in trainer reads the same way. The output folder is
  the stem of ``output_model_destination`` when it is a valid name, else the run's name.
- **Answers do not name the backend.** A start answers the seed's ``Training started`` on either
  backend and ``training_state`` has the seed's keys only: which trainer runs is on the run
  (``spec.trainer``, the backend annotation) and the translation's warnings are on the run and in
  ``/api/config/validate``, so the seed's clients see nothing new.
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
    gpus = config.training.gpuCount if config.training.resolved_backend() == "builtin" else None
    app.include_router(
        routes_configs.create_router(ctx, config.configs, config.training.runPrefix, builtin_gpus=gpus)
    )
    app.include_router(routes_samples.create_router(ctx, config.training.runPrefix))
    app.include_router(routes_system.create_router(ctx, config.system, config.training.runPrefix))
    app.include_router(routes_ws.create_router(ctx, config.training.runPrefix))
    return app


def create_app(ctx: GatewayContext) -> FastAPI:
    """The OneTrainer app, CORS included, as it runs on its own."""
    return build_app(ctx, cors=True)


PROFILE = Profile(NAME, NATIVE_PORT, partial(build_app, cors=False), DESCRIPTION, cors=CORS)
