"""OT-01 … OT-06 (training) and OT-13 / OT-14 (sample requests) over the current TrainingRun.

A start creates the slot's next numbered TrainingRun from ``config_dict`` or from the JSON file at
``config_path`` (read by the gateway from the datasets or outputs volume; the run carries the
config itself in ``spec.tool.config``). Which trainer runs it is the ``backend`` setting, resolved
at each start (``TrainingSettings.resolved_backend``): ``onetrainer`` makes a ``trainer:
onetrainer`` run for the OneTrainer adapter; ``builtin`` translates the config into a
``kubepilot-lora`` run (``builtin``; the concept folder is listed to count an epoch's images, and
what the built-in trainer cannot train is a 400 naming every reason). The config's
``base_model_name`` must be on the models volume (or name a ModelPull) and its concept folders on
the datasets volume: they become ``spec.baseModel`` and ``spec.dataset.path`` (the adapter rebuilds
OneTrainer's concepts from that folder's layout). Stop sets ``spec.stop``; save, backup and the two
sample requests set a fresh nonce on ``kubepilot.io/action-<name>`` (custom sample parameters in
``…-params``), which the operator records as Pending in ``status.actions`` and the trainer pod
(either trainer) acknowledges through the progress channel. Every command answers at once, as
OneTrainer does: "sent", not "done".
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, Field

from kubepilot_gateway import runslot
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import Invalid, KubeError, NotFound, resource_for
from kubepilot_gateway.profiles.onetrainer import builtin, configs, paths
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.settings import Strict

JsonObject = dict[str, Any]
TRAINING_RUNS = resource_for("TrainingRun")
MODEL_PULLS = resource_for("ModelPull")
RESOURCE_NAME = r"^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$"
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_CONFIG_BYTES = 1 << 20


class TrainingSettings(Strict):
    """Settings of the training endpoints (``profileSettings.onetrainer.training``)."""

    runPrefix: str = Field(
        default="onetrainer",
        description="Name prefix of the sessions' TrainingRuns (<prefix>-1, -2, …; one active at a time).",
        max_length=50,
        pattern=DNS_NAME,
    )
    gpuProfile: str = Field(default="default", description="GPU profile (operator config) of the runs.")
    gpuCount: int = Field(default=1, ge=0, le=16, description="GPUs per run; 0 trains on the CPU.")
    runEnv: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment of every run's trainer (e.g. ONETRAINER_DIR, ONETRAINER_PYTHON).",
    )
    image: str = Field(
        default="", description="Trainer image override; empty: the operator's OneTrainer image."
    )
    keepFinishedRuns: int = Field(default=5, ge=0, description="Finished sessions kept as CRs.")
    backend: Literal["auto", "onetrainer", "builtin"] = Field(
        default="auto",
        description="Which trainer runs a session: onetrainer (the OneTrainer image, through the adapter), "
        "builtin (the config's LoRA settings on kubepilot's built-in trainer), or auto: onetrainer when "
        "onetrainerImageAvailable, else builtin.",
    )
    onetrainerImageAvailable: bool = Field(
        default=False,
        description="The cluster can run the OneTrainer image (the operator's images.onetrainer, or "
        "`image`): set it where that image is built and pullable; the dev stack and CI have none.",
    )

    def resolved_backend(self) -> Literal["onetrainer", "builtin"]:
        """The backend a new session runs on."""
        if self.backend == "auto":
            return "onetrainer" if self.onetrainerImageAvailable else "builtin"
        return self.backend


class StartRequest(BaseModel):
    """OT-02's body: one of the two (``config_dict`` wins when both are given)."""

    config_path: str | None = None
    config_dict: dict[str, Any] | None = None


class CustomSampleRequest(BaseModel):
    """OT-14's body, with the seed's example values as defaults except the prompt."""

    prompt: str = Field(min_length=1, max_length=4096)
    negative_prompt: str = Field(default="", max_length=4096)
    seed: int = Field(default=42, ge=-(2**63), le=2**64 - 1)
    steps: int = Field(default=30, ge=1, le=1000)
    cfg_scale: float = Field(default=7.5, ge=0, le=100)
    width: int = Field(default=512, ge=64, le=4096)
    height: int = Field(default=512, ge=64, le=4096)


def bad_request(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def kube_failure(error: KubeError) -> HTTPException:
    return HTTPException(status_code=500, detail=f"Kubernetes API error: {error}")


def sent(message: str) -> JsonObject:
    return {"success": True, "message": message}


def create_router(ctx: GatewayContext, settings: TrainingSettings) -> APIRouter:
    router = APIRouter()
    namespace = ctx.store.namespace
    volumes = ctx.settings.volumes
    prefix = settings.runPrefix

    def slot() -> list[JsonObject]:
        return ctx.cache.list(TRAINING_RUNS, namespace, labels={ot.LABEL_SLOT: prefix})

    def current() -> JsonObject | None:
        return runslot.current_run(prefix, slot())

    def active() -> JsonObject:
        """The active session; 400 ``No training in progress`` without one."""
        run = current()
        if not runslot.is_active(run):
            raise bad_request(ot.NO_TRAINING)
        assert run is not None
        return run

    def read_config(raw: str) -> JsonObject:
        roots = {"datasets": volumes.datasets, "outputs": volumes.outputs}
        try:
            volume, relative = paths.contained(raw, roots, "config_path")
        except ot.StartRefused as error:
            raise bad_request(str(error)) from error
        file = Path(roots[volume]).resolve() / relative
        if not paths.is_file(file):
            raise bad_request(f"Config file not found: {raw}")
        try:
            if file.stat().st_size > MAX_CONFIG_BYTES:
                raise bad_request(f"Config file is larger than {MAX_CONFIG_BYTES} bytes: {raw}")
            document = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise bad_request(f"Invalid config file {raw}: {error}") from error
        if not isinstance(document, dict):
            raise bad_request(f"Invalid config file {raw}: not a JSON object")
        return document

    def base_model_of(config: JsonObject) -> JsonObject:
        """``spec.baseModel``: a path on the models volume, else a ModelPull of that name (this namespace)."""
        raw = config.get("base_model_name")
        if not isinstance(raw, str) or not raw.strip():
            raise ot.StartRefused("The config sets no base_model_name")
        name = raw.strip()
        try:
            _, relative = paths.contained(raw, {"models": volumes.models}, "base_model_name")
        except ot.StartRefused:
            relative = ""
        if relative and paths.exists(Path(volumes.models).resolve() / relative):
            return {"path": relative}
        if re.match(RESOURCE_NAME, name) and ctx.cache.get(MODEL_PULLS, name, namespace) is not None:
            return {"modelPullRef": {"name": name}}
        if not relative:
            paths.contained(raw, {"models": volumes.models}, "base_model_name")  # raises with its reason
        raise ot.StartRefused(f"base_model_name not found on the models volume: {raw}")

    def concept_folders(config: JsonObject) -> tuple[str, list[builtin.Concept]]:
        """The dataset folder (deepest common folder of the enabled concepts) and the concepts."""
        roots = {"datasets": volumes.datasets}
        concepts = [
            builtin.Concept(index, entry, paths.contained(path, roots, "concept path")[1])
            for index, entry, path in paths.enabled_concepts(config)
        ]
        if not concepts:
            raise ot.StartRefused("The config has no enabled concept with a path")
        folder = paths.common_folder([concept.relative for concept in concepts])
        if not folder or not paths.is_dir(Path(volumes.datasets).resolve() / folder):
            raise ot.StartRefused("The concepts must be folders inside one folder of the datasets volume")
        return folder, concepts

    def dataset_of(config: JsonObject) -> str:
        return concept_folders(config)[0]

    def builtin_plan(config: JsonObject) -> tuple[str, builtin.Translation]:
        """The dataset folder and the translation for the built-in trainer; StartRefused on an error."""
        folder, concepts = concept_folders(config)
        scan = builtin.scan_folder(Path(volumes.datasets).resolve() / folder)
        images = builtin.images_per_epoch(scan)
        if not images:
            raise ot.StartRefused(f"The dataset folder {folder} holds no png, jpg or webp images")
        dataset_errors, dataset_warnings = builtin.dataset_notes(folder, concepts, scan)
        translation = builtin.translate(config, images=images, gpus=settings.gpuCount)
        translation.errors[:0] = dataset_errors
        translation.warnings.extend(dataset_warnings)
        if translation.errors:
            raise ot.StartRefused("Not trainable on the built-in trainer: " + "; ".join(translation.errors))
        return folder, translation

    async def start_run(body_for: Callable[[str], JsonObject]) -> JsonObject:
        """Create the slot's next run; 400 while one is active (the create is the lock)."""
        try:
            return await runslot.start_next(
                ctx.store, TRAINING_RUNS, prefix, slot, body_for, keep_finished=settings.keepFinishedRuns
            )
        except runslot.SlotBusy as error:
            raise bad_request(ot.ALREADY_TRAINING) from error
        except Invalid as error:
            raise bad_request(error.message) from error
        except KubeError as error:
            raise kube_failure(error) from error

    async def request_action(name: str, params: JsonObject | None = None) -> None:
        run = active()
        patch = ot.action_patch(name, uuid.uuid4().hex, params)
        try:
            await ctx.store.patch(TRAINING_RUNS, run["metadata"]["name"], patch)
        except NotFound as error:
            raise bad_request(ot.NO_TRAINING) from error
        except KubeError as error:
            raise kube_failure(error) from error

    @router.get("/api/training/status")
    async def training_status() -> JsonObject:
        """OT-01."""
        return ot.training_state(current())

    @router.post("/api/training/start")
    async def training_start(payload: Annotated[StartRequest | None, Body()] = None) -> JsonObject:
        """OT-02: a new session from ``config_dict`` or the file at ``config_path``."""
        if any(runslot.is_active(run) for _, run in runslot.slot_runs(prefix, slot())):
            raise bad_request(ot.ALREADY_TRAINING)
        request = payload or StartRequest()
        if request.config_dict is not None:
            config, source = dict(request.config_dict), "config_dict"
        elif request.config_path and request.config_path.strip():
            config, source = read_config(request.config_path), f"config_path: {request.config_path}"
        else:
            raise bad_request(ot.CONFIG_REQUIRED)
        if bad_numbers := configs.non_finite(config):
            raise bad_request(
                f"The config holds numbers JSON cannot carry (NaN, Infinity): {', '.join(bad_numbers)}"
            )
        backend = settings.resolved_backend()
        hyperparameters: JsonObject | None = None
        warnings: list[str] = []
        try:
            base_model = base_model_of(config)
            if backend == "builtin":
                dataset, translation = builtin_plan(config)
                hyperparameters, warnings = translation.hyperparameters, translation.warnings
            else:
                dataset = dataset_of(config)
        except ot.StartRefused as error:
            raise bad_request(str(error)) from error
        gpu = {"profile": settings.gpuProfile, "count": settings.gpuCount} if settings.gpuCount else None

        def body(name: str) -> JsonObject:
            return ot.training_run(
                name,
                slot=prefix,
                config=config,
                base_model=base_model,
                dataset=dataset,
                output=ot.output_name(config, name),
                source=source,
                gpu=gpu,
                env=settings.runEnv,
                image=settings.image,
                hyperparameters=hyperparameters,
                warnings=warnings,
            )

        await start_run(body)
        return sent("Training started")

    @router.post("/api/training/stop")
    async def training_stop() -> JsonObject:
        """OT-03: ``spec.stop`` (the trainer saves, then exits)."""
        run = active()
        try:
            await ctx.store.patch(TRAINING_RUNS, run["metadata"]["name"], ot.stop_patch())
        except NotFound as error:
            raise bad_request(ot.NO_TRAINING) from error
        except KubeError as error:
            raise kube_failure(error) from error
        return sent("Stop command sent")

    @router.post("/api/training/backup")
    async def training_backup() -> JsonObject:
        """OT-04."""
        await request_action("backup")
        return sent("Backup command sent")

    @router.post("/api/training/save")
    async def training_save() -> JsonObject:
        """OT-05."""
        await request_action("save")
        return sent("Save command sent")

    @router.get("/api/training/progress")
    async def training_progress() -> JsonObject:
        """OT-06."""
        return ot.progress_response(current())

    @router.post("/api/samples/default")
    async def samples_default() -> JsonObject:
        """OT-13: the run's own sample prompts (the ``sample`` action without parameters)."""
        await request_action("sample")
        return sent("Default sample generation requested")

    @router.post("/api/samples/custom")
    async def samples_custom(payload: CustomSampleRequest) -> JsonObject:
        """OT-14: one sample with these parameters (the ``sample`` action with them)."""
        await request_action("sample", payload.model_dump())
        return sent("Custom sample generation requested")

    return router
