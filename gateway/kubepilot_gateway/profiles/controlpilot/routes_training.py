"""ControlPilot CP-28 … CP-36: TrainPilot (``/api/trainpilot``) and diffusion-pipe (``/dpipe/train``).

A start creates a TrainingRun (TrainPilot: ``trainer: kohya`` with the chosen TrainPilot profile;
``/dpipe``: ``trainer: diffusion-pipe``); a stop sets its ``spec.stop``; logs are the run's pod
log plus ``_logs/train.log`` in its output folder; ``running`` is its phase. One active run per
trainer, with the next numbered CR name as the lock (see ``training``'s docstring for the why, and
for how ControlPilot's ``/workspace/...`` paths map onto the volumes). Reads come from the informer
cache; files are read from the gateway's own view of the volumes, resolved and kept inside them.

Errors are ControlPilot's ``{"detail"}``: 400 with its texts for bad input and "already running",
404 for a missing TOML where it answers 404, 422 for a missing required field, 500 with the API
server's message when a call to it fails.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel, Field

from kubepilot_api.constants import LABEL_KIND, LABEL_NAME
from kubepilot_api.trainingrun import TrainerKind
from kubepilot_gateway import runslot
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import (
    CONFIGMAPS,
    PODS,
    BadRequest,
    Invalid,
    KubeError,
    NotFound,
    resource_for,
)
from kubepilot_gateway.profiles.controlpilot import dpipe
from kubepilot_gateway.profiles.controlpilot import training as tr
from kubepilot_gateway.profiles.controlpilot.podlogs import read_pod_log
from kubepilot_gateway.profiles.controlpilot.routes_services import kube_failure
from kubepilot_gateway.settings import Strict

JsonObject = dict[str, Any]
TRAINING_RUNS = resource_for("TrainingRun")
DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LOG_TAIL_BYTES = 1 << 20
MAX_LOG_LINES = 10_000
NOOP_DETAIL = "No training process is running."
ALREADY_EXITED = "Process already exited."


class TrainingSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.training``)."""

    trainpilotRunPrefix: str = Field(
        default="controlpilot-trainpilot",
        description="Name prefix of TrainPilot's TrainingRuns (<prefix>-1, -2, …; one active at a time).",
        max_length=50,
        pattern=DNS_NAME,
    )
    dpipeRunPrefix: str = Field(
        default="controlpilot-dpipe",
        description="Name prefix of the TrainingRuns /dpipe/train/start creates (one active at a time).",
        max_length=50,
        pattern=DNS_NAME,
    )
    defaultTomlConfigMap: str = Field(
        default="",
        description="ConfigMap holding TrainPilot's default TOML; empty or absent: the built-in template.",
        max_length=253,
    )
    defaultTomlKey: str = Field(default="newlora.toml", description="Key of the TOML in that ConfigMap.")
    gpuProfile: str = Field(default="default", description="GPU profile (operator config) of the runs.")
    gpuCount: int = Field(default=1, ge=0, le=16, description="GPUs per run; 0 trains on the CPU.")
    runEnv: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment of every run's trainer (e.g. KOHYA_DIR, KUBEPILOT_TRAINER_COMMAND).",
    )
    workerModelsPath: str = Field(
        default="",
        description="The models volume's mount path in trainer pods (diffusion-pipe model paths); "
        "empty: the same as the gateway's volumes.models.",
    )
    keepFinishedRuns: int = Field(
        default=5, ge=0, description="Finished runs of each trainer kept as CRs; older ones are deleted."
    )


class TrainPilotStartRequest(BaseModel):
    """CP-28 body; every field optional (``dataset_name`` is checked to give ControlPilot's 400)."""

    dataset_name: str | None = None
    output_name: str | None = None
    profile: str | None = None
    toml_path: str | None = None


class ModelCheckRequest(BaseModel):
    """CP-30 body; an empty ``toml_path`` means the default TOML."""

    toml_path: str | None = None


def bad_request(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def read_tail(path: Path, limit: int) -> list[str]:
    """The last ``limit`` lines of a text file (only its last MiB is read); [] when absent."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) == LOG_TAIL_BYTES and lines:
        lines = lines[1:]  # the first line may be cut
    return tr.tail(lines, limit)


def create_router(ctx: GatewayContext, settings: TrainingSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    router = APIRouter()
    namespace = ctx.store.namespace
    volumes = ctx.settings.volumes

    def volume_root(volume: tr.Volume) -> Path:
        root = {tr.Volume.MODELS: volumes.models, tr.Volume.DATASETS: volumes.datasets}.get(
            volume, volumes.outputs
        )
        if not root:
            raise HTTPException(status_code=500, detail=f"The {volume.value} volume is not mounted")
        return Path(root)

    def local(path: tr.VolumePath) -> Path:
        """The gateway's file for ``path``, symlinks resolved; 400 when it leaves its volume."""
        root = volume_root(path.volume).resolve()
        resolved = (root / path.relative).resolve()
        if not resolved.is_relative_to(root):
            raise bad_request(f"Path escapes the {path.volume.value} volume: {path.workspace}")
        return resolved

    def mapped(raw: str, *allowed: tr.Volume) -> tr.VolumePath:
        try:
            return tr.map_path(raw, allowed=allowed or tuple(tr.Volume))
        except tr.PathRefused as error:
            raise bad_request(str(error)) from error

    def slot(prefix: str) -> list[JsonObject]:
        return ctx.cache.list(TRAINING_RUNS, namespace, labels={tr.LABEL_SLOT: prefix})

    def current(prefix: str) -> JsonObject | None:
        return runslot.current_run(prefix, slot(prefix))

    async def start_run(
        prefix: str, body_for: Callable[[str], JsonObject], already_running: str
    ) -> JsonObject:
        """Create the slot's next run; 400 ``already_running`` while one of its runs is active."""
        try:
            return await runslot.start_next(
                ctx.store,
                TRAINING_RUNS,
                prefix,
                lambda: slot(prefix),
                body_for,
                keep_finished=settings.keepFinishedRuns,
            )
        except runslot.SlotBusy as error:
            raise bad_request(already_running) from error
        except Invalid as error:
            raise bad_request(error.message) from error
        except KubeError as error:
            raise kube_failure(error) from error

    def refuse_if_active(prefix: str, already_running: str) -> None:
        """The cheap early answer (the create in ``start_run`` is the one that holds under races)."""
        if any(runslot.is_active(run) for _, run in runslot.slot_runs(prefix, slot(prefix))):
            raise bad_request(already_running)

    def pod_models() -> str:
        """The models volume's mount path in trainer pods (for paths written into tool configs)."""
        return (settings.workerModelsPath or volumes.models).rstrip("/")

    def gpu() -> JsonObject | None:
        return {"profile": settings.gpuProfile, "count": settings.gpuCount} if settings.gpuCount else None

    async def default_toml() -> str:
        """The default TOML: the ConfigMap's when one is named and exists, else the built-in one."""
        if not settings.defaultTomlConfigMap:
            return tr.DEFAULT_TOML
        try:
            config_map = await ctx.client.request(
                "GET", CONFIGMAPS.path(namespace, settings.defaultTomlConfigMap)
            )
        except NotFound:
            return tr.DEFAULT_TOML
        except KubeError as error:
            raise kube_failure(error) from error
        content = (config_map.get("data") or {}).get(settings.defaultTomlKey)
        if not isinstance(content, str):
            raise HTTPException(
                status_code=404,
                detail=f"TOML not found: ConfigMap {settings.defaultTomlConfigMap} has no "
                f"{settings.defaultTomlKey}",
            )
        return content

    async def load_toml(raw: str, missing_status: int) -> tuple[str, JsonObject]:
        """(path as shown, parsed TOML) for a client's toml_path; '' or TrainPilot's own is the default."""
        path = raw.strip()
        if not path or path == tr.DEFAULT_TOML_PATH:
            shown, text = tr.DEFAULT_TOML_PATH, await default_toml()
        else:
            shown = path
            file = local(mapped(path))
            if not file.is_file():
                raise HTTPException(status_code=missing_status, detail=f"TOML not found: {path}")
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise bad_request(f"Cannot read TOML {path}: {error}") from error
        try:
            return shown, tr.parse_toml(text)
        except ValueError as error:
            raise bad_request(f"Invalid TOML {shown}: {error}") from error

    def dataset_folder(name: str) -> str:
        """The dataset folder (relative to the datasets volume) for TrainPilot's ``dataset_name``:
        the folder of that name, else ControlPilot's ``1_<name>``."""
        if name.startswith("/"):
            relative = mapped(name, tr.Volume.DATASETS).relative
            candidates = [relative]
        else:
            relative = mapped(f"{tr.WORKSPACE}/datasets/{name}", tr.Volume.DATASETS).relative
            candidates = [relative, f"1_{relative}"] if "/" not in relative else [relative]
        for candidate in candidates:
            if candidate and local(tr.VolumePath(tr.Volume.DATASETS, candidate)).is_dir():
                return candidate
        raise bad_request(f"Dataset not found: {name}")

    async def run_lines(run: JsonObject | None, limit: int) -> list[str]:
        """The run's pod log tail followed by its ``_logs/train.log`` tail."""
        if run is None:
            return []
        lines = await pod_lines(run, limit)
        output = str((run.get("spec") or {}).get("output", {}).get("name") or "")
        if output:
            file = tr.VolumePath(tr.Volume.OUTPUTS, f"{output}/_logs/train.log")
            # A train.log that links out of the volume is not shown.
            with contextlib.suppress(HTTPException):
                lines += read_tail(local(file), limit)
        return tr.tail(lines, limit)

    async def pod_lines(run: JsonObject, limit: int) -> list[str]:
        name = run["metadata"]["name"]
        pods = ctx.cache.list(PODS, namespace, labels={LABEL_KIND: TRAINING_RUNS.kind, LABEL_NAME: name})
        if not pods:
            return []
        pod = max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        containers = (pod.get("spec") or {}).get("containers") or []
        container = str(containers[0].get("name") or "") if containers else ""
        try:
            text = await read_pod_log(
                ctx.client, namespace, pod["metadata"]["name"], tail_lines=limit, container=container
            )
        except (NotFound, BadRequest):
            return []  # gone, or not started yet
        except KubeError as error:
            raise kube_failure(error) from error
        return text.splitlines()

    async def stop(run: JsonObject | None) -> bool:
        """Set ``spec.stop`` on the trainer's current run; False when it is not active."""
        if run is None or not runslot.is_active(run):
            return False
        try:
            await ctx.store.patch(TRAINING_RUNS, run["metadata"]["name"], tr.stop_patch())
        except NotFound:
            return False
        except KubeError as error:
            raise kube_failure(error) from error
        return True

    def log_limit(limit: int) -> int:
        return max(0, min(limit, MAX_LOG_LINES))

    # -- TrainPilot ----------------------------------------------------------------------------

    @router.post("/api/trainpilot/start")
    async def trainpilot_start(payload: TrainPilotStartRequest) -> JsonObject:
        """CP-28: a kohya TrainingRun with the TrainPilot profile over the TOML's base settings."""
        refuse_if_active(settings.trainpilotRunPrefix, tr.TRAINPILOT_ALREADY_RUNNING)
        dataset_name = (payload.dataset_name or "").strip()
        if not dataset_name:
            raise bad_request(tr.DATASET_NAME_REQUIRED)
        profile = (payload.profile or "").strip() or tr.DEFAULT_PROFILE
        if not tr.valid_profile(profile):
            raise bad_request(tr.INVALID_PROFILE)
        toml_path = payload.toml_path if payload.toml_path is not None else tr.DEFAULT_TOML_PATH
        _, document = await load_toml(toml_path, missing_status=400)
        dataset = dataset_folder(dataset_name)
        try:
            output = tr.output_name_for(payload.output_name or "", dataset_name)
            base_model = tr.base_model_of(document)
            vae = tr.vae_of(document, pod_models())
        except tr.PathRefused as error:
            raise bad_request(str(error)) from error
        request_text = json.dumps(
            {"dataset_name": dataset_name, "output_name": output, "profile": profile, "toml_path": toml_path},
            sort_keys=True,
        )
        tool = tr.trainpilot_tool(profile, document, vae)

        def body(name: str) -> JsonObject:
            return tr.training_run(
                name,
                TrainerKind.KOHYA,
                slot=settings.trainpilotRunPrefix,
                base_model=base_model.relative,
                dataset=dataset,
                output=output,
                tool=tool,
                gpu=gpu(),
                env=settings.runEnv,
                request=request_text,
            )

        created = await start_run(settings.trainpilotRunPrefix, body, tr.TRAINPILOT_ALREADY_RUNNING)
        return {"status": "started", "pid": tr.run_pid(created)}

    @router.post("/api/trainpilot/stop")
    async def trainpilot_stop() -> JsonObject:
        """CP-29: stop the active run (``noop`` when there is none)."""
        return {"status": "stopped" if await stop(current(settings.trainpilotRunPrefix)) else "noop"}

    @router.post("/api/trainpilot/model-check")
    async def trainpilot_model_check(
        payload: Annotated[ModelCheckRequest | None, Body()] = None,
    ) -> JsonObject:
        """CP-30: the TOML's checkpoint and VAE paths, checked on the models volume."""
        raw = (payload.toml_path if payload else None) or ""
        shown, document = await load_toml(raw, missing_status=404)
        items = []
        for kind, key, value in tr.model_check_targets(document):
            is_local = tr.is_local_path(value)
            exists, reason = False, "not a local path: the trainer resolves it as a Hub repository id"
            if is_local:
                try:
                    file = local(tr.map_path(value, allowed=(tr.Volume.MODELS,)))
                except tr.PathRefused as error:
                    reason = str(error)
                except HTTPException as error:
                    reason = str(error.detail)
                else:
                    exists = file.exists()
                    reason = "" if exists else "not found on the models volume"
            items.append(tr.ModelCheckItem(kind, key, value, is_local, exists, None, reason))
        return tr.model_check_response(shown, items)

    @router.get("/api/trainpilot/logs")
    async def trainpilot_logs(limit: int = 500) -> JsonObject:
        """CP-31: the run's pod log and train.log, and whether it is still running."""
        run = current(settings.trainpilotRunPrefix)
        return tr.trainpilot_logs(await run_lines(run, log_limit(limit)), run)

    @router.get("/api/trainpilot/toml")
    async def trainpilot_toml() -> JsonObject:
        """CP-32: the default TOML template."""
        return {"content": await default_toml()}

    # -- diffusion-pipe ------------------------------------------------------------------------

    @router.post("/dpipe/train/validate")
    async def dpipe_validate(payload: dpipe.DpipeValidateRequest) -> JsonObject:
        """CP-33: which of the four model paths are missing (paths off the volumes count as missing)."""
        missing = []
        for field in dpipe.MODEL_FIELDS:
            raw = getattr(payload, field)
            try:
                path = tr.map_path(raw)
            except tr.PathRefused as error:
                if ".." in raw.split("/"):
                    raise bad_request(str(error)) from error
                missing.append((field, raw))
                continue
            if not local(path).exists():
                missing.append((field, raw))
        return dpipe.validate_response(missing)

    @router.post("/dpipe/train/start")
    async def dpipe_start(payload: dpipe.DpipeStartRequest) -> JsonObject:
        """CP-34: a diffusion-pipe TrainingRun from the request's settings."""
        refuse_if_active(settings.dpipeRunPrefix, tr.DPIPE_ALREADY_RUNNING)
        dataset = mapped(payload.dataset_path, tr.Volume.DATASETS)
        mapped(payload.config_dir)
        output = mapped(payload.output_dir, tr.Volume.OUTPUTS)
        if "/" in output.relative or not tr.OUTPUT_NAME.match(output.relative):
            raise bad_request(
                f"output_dir must be one folder directly under {tr.WORKSPACE}/outputs: {payload.output_dir}"
            )
        models = {field: mapped(getattr(payload, field), tr.Volume.MODELS) for field in dpipe.MODEL_FIELDS}
        if not dataset.relative or not local(dataset).is_dir():
            raise bad_request(tr.DATASET_PATH_MISSING)
        model_paths = {
            field: f"{pod_models()}/{path.relative}" if path.relative else pod_models()
            for field, path in models.items()
        }
        try:
            tool = dpipe.tool_settings(payload, model_paths)
        except dpipe.RequestError as error:
            raise bad_request(str(error)) from error
        summary = dpipe.request_summary(payload)

        def body(name: str) -> JsonObject:
            return tr.training_run(
                name,
                TrainerKind.DIFFUSION_PIPE,
                slot=settings.dpipeRunPrefix,
                base_model=models["transformer_path"].relative,
                dataset=dataset.relative,
                output=output.relative,
                tool=tool,
                gpu=gpu(),
                env=settings.runEnv,
                request=summary,
                resume_from=f"{output.relative}/runs" if payload.resume_from_checkpoint else "",
            )

        created = await start_run(settings.dpipeRunPrefix, body, tr.DPIPE_ALREADY_RUNNING)
        config = f"{output.workspace}/_config/training.toml"
        return {"status": "started", "pid": tr.run_pid(created), "config": config}

    @router.post("/dpipe/train/stop")
    async def dpipe_stop(pid: Annotated[int | None, Query()] = None) -> JsonObject:
        """CP-35: stop the run (matched by ``pid`` when given)."""
        run = current(settings.dpipeRunPrefix)
        if run is None or (pid is not None and pid != tr.run_pid(run)):
            detail = NOOP_DETAIL if pid is None else f"No tracked training process with pid {pid}."
            return {"status": "noop", "detail": detail}
        if not await stop(run):
            return {"status": "stopped", "detail": ALREADY_EXITED}
        return {"status": "stopped", "pid": tr.run_pid(run)}

    @router.get("/dpipe/train/logs")
    async def dpipe_logs(pid: Annotated[int | None, Query()] = None, limit: int = 500) -> JsonObject:
        """CP-36: the run's log tail (empty for an unknown pid)."""
        run = current(settings.dpipeRunPrefix)
        if run is None or (pid is not None and pid != tr.run_pid(run)):
            return {"pid": pid, "lines": []}
        return {"pid": tr.run_pid(run), "lines": await run_lines(run, log_limit(limit))}

    return router
