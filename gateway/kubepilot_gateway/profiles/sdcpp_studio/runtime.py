"""The cluster side both APIs share: GenerationJobs of this profile, waiting on them, their files.

Reads come from the cache; writes go through the store; a synchronous caller waits on the event
bus (subscribed before the first look, so no change falls between look and wait). Image bytes
are read only from paths the CR's ``status.outputs`` names, resolved inside the outputs volume.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, AlreadyExists, Invalid, NotFound, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio.auth import key_source
from kubepilot_gateway.profiles.sdcpp_studio.config import SdcppSettings
from kubepilot_gateway.profiles.sdcpp_studio.logs import LogRing
from kubepilot_gateway.profiles.sdcpp_studio.uploads import CheckedImage, Limits, Stager

JsonObject = dict[str, Any]
GENERATION_JOBS = resource_for("GenerationJob")
OPTIONS_KEY = "sd_model_checkpoint"


class Runtime:
    """This profile's GenerationJobs in the gateway's namespace."""

    def __init__(self, ctx: GatewayContext, settings: SdcppSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.namespace = ctx.settings.namespace
        self.outputs_root = Path(ctx.settings.volumes.outputs)
        self.stager = Stager(self.outputs_root, settings.inputsDir)
        self.logs = LogRing(settings.logRingSize)
        self.limits = Limits(settings.maxUploadBytes, settings.maxUploadPixels, settings.maxRequestBytes)
        self.api_keys = key_source(settings)

    def auth_required(self) -> bool:
        """Whether a key is needed: one is set here, or ``authEnabled`` says the listener asks one."""
        return self.settings.authEnabled or bool(self.api_keys())

    # -- reads ---------------------------------------------------------------------------------

    def all(self) -> list[JsonObject]:
        jobs = self.ctx.cache.list(GENERATION_JOBS, self.namespace, labels=tr.PROFILE_LABELS)
        return tr.newest_first(jobs)

    def find(self, job_id: str) -> JsonObject | None:
        if not tr.looks_like_id(job_id):
            return None
        cr = self.ctx.cache.get(GENERATION_JOBS, job_id, self.namespace)
        return cr if cr is not None and tr.is_ours(cr) else None

    def require(self, job_id: str, what: str = "Job") -> JsonObject:
        cr = self.find(job_id)
        if cr is None:
            raise HTTPException(status_code=404, detail=f"{what} not found")
        return cr

    # -- writes --------------------------------------------------------------------------------

    async def submit(
        self, request: tr.Generation, images: Sequence[CheckedImage] = (), mask: CheckedImage | None = None
    ) -> JsonObject:
        """Create the job for ``request``; ``images`` (the first is ``inputs.image``, the rest
        ``inputs.images``) and ``mask`` are staged in the inputs area first, and removed again when
        the job cannot be created."""
        job_id = tr.new_job_id()
        staged: list[str] = []
        try:
            for image in images:
                staged.append(await self.stager.stage(image))
            mask_path = await self.stager.stage(mask, "-mask") if mask is not None else ""
            if mask_path:
                staged.append(mask_path)
            if images:
                request = replace(
                    request, image=staged[0], images=tuple(staged[1 : len(images)]), mask=mask_path
                )
            body = tr.generation_job(job_id, request, str(self.outputs_root))
            try:
                created = await self.ctx.store.create(GENERATION_JOBS, body)
            except Invalid as error:  # a value the checks let through but the schema refuses
                raise tr.BadRequest("Invalid parameters", error.message) from None
        except BaseException:
            await asyncio.to_thread(self.stager.remove, staged)
            raise
        what = request.model.id if request.model is not None else request.upscaler_name
        self.logs.add("info", "queueProcessor", f"Job {job_id} queued: {request.kind} ({what})")
        return created

    async def cancel(self, cr: JsonObject, reason: str = "UserCancelled") -> JsonObject:
        name = str(cr["metadata"]["name"])
        patch = {"spec": {"cancel": True, "cancelReason": reason}}
        patched = await self.ctx.store.patch(GENERATION_JOBS, name, patch)
        self.logs.add("info", "queueProcessor", f"Job {name} cancelled ({reason})")
        return patched

    async def wait_terminal(self, name: str, within: float) -> JsonObject | None:
        """The job once it is Completed, Failed or Cancelled (None when it was deleted);
        TimeoutError after ``within`` seconds. The job keeps running if the caller goes away."""
        async with self.ctx.bus.subscribe(kinds=[GENERATION_JOBS.kind], namespace=self.namespace) as events:
            current = self.ctx.cache.get(GENERATION_JOBS, name, self.namespace)
            if current is None or tr.phase(current) in tr.TERMINAL_PHASES:
                return current
            async with asyncio.timeout(within):
                async for item in events:
                    if isinstance(item, ResourceEvent) and item.name != name:
                        continue
                    current = self.ctx.cache.get(GENERATION_JOBS, name, self.namespace)
                    if current is None or tr.phase(current) in tr.TERMINAL_PHASES:
                        return current
        raise TimeoutError  # the bus closed (shutdown)

    # -- files ---------------------------------------------------------------------------------

    def image_file(self, output: JsonObject) -> Path | None:
        """The output's file, only when it resolves inside the outputs volume and exists."""
        relative = str(output.get("path") or "")
        if not relative:
            return None
        root = self.outputs_root.resolve()
        try:
            path = (root / relative).resolve()
        except (OSError, RuntimeError):
            return None
        if root not in path.parents or not path.is_file():
            return None
        return path

    def delete_files(self, cr: JsonObject) -> int:
        """Remove a job's images (and their metadata files) from the outputs volume; how many
        images were removed. Only files the CR names, resolved inside the volume, are touched."""
        removed = 0
        for output in tr.outputs(cr):
            for key in ("path", "metadataPath"):
                path = self.image_file({"path": output.get(key)})
                if path is None:
                    continue
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += key == "path"
                with contextlib.suppress(OSError):
                    path.parent.rmdir()  # only when it is empty now
        return removed

    async def delete(self, cr: JsonObject, *, files: bool) -> int:
        """Delete the job (its images too when ``files``; its staged inputs always: nothing else
        refers to them); the number of images removed."""
        removed = await asyncio.to_thread(self.delete_files, cr) if files else 0
        await self.ctx.store.delete(GENERATION_JOBS, str(cr["metadata"]["name"]), missing_ok=True)
        await asyncio.to_thread(self.stager.remove, tr.input_paths(cr))
        self.logs.add(
            "info", "generations", f"Generation {cr['metadata']['name']} deleted ({removed} image files)"
        )
        return removed

    async def image_bytes(self, output: JsonObject) -> bytes | None:
        path = self.image_file(output)
        if path is None:
            return None
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError:
            return None

    # -- the model chosen through /sdapi/v1/options (state in the cluster, not the gateway) -----

    async def chosen_model(self) -> str:
        try:
            cm = await self.ctx.client.request(
                "GET", CONFIGMAPS.path(self.namespace, self.settings.optionsConfigMap)
            )
        except NotFound:
            return ""
        return str((cm.get("data") or {}).get(OPTIONS_KEY) or "")

    async def choose_model(self, model_id: str) -> None:
        path = CONFIGMAPS.path(self.namespace, self.settings.optionsConfigMap)
        data = {OPTIONS_KEY: model_id}
        try:
            await self.ctx.client.request(
                "PATCH", path, body={"data": data}, content_type="application/merge-patch+json"
            )
            return
        except NotFound:
            pass
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.settings.optionsConfigMap, "labels": tr.PROFILE_LABELS},
            "data": data,
        }
        with contextlib.suppress(AlreadyExists):
            await self.ctx.client.request("POST", CONFIGMAPS.path(self.namespace), body=body)
            return
        await self.ctx.client.request(
            "PATCH", path, body={"data": data}, content_type="application/merge-patch+json"
        )
