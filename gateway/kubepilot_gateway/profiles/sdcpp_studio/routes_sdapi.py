"""The Automatic1111-compatible API at the root (``/sdapi/v1``), as SillyTavern-style clients call it.

txt2img is a GenerationJob like every other generation; it waits for the job as the product does
and answers the images as base64 PNG. The model chosen through ``POST /sdapi/v1/options`` is kept
in a ConfigMap, so every gateway replica and a restart agree on it.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from kubepilot_gateway.profiles.sdcpp_studio import a1111
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio.config import CatalogModel
from kubepilot_gateway.profiles.sdcpp_studio.routes_api import finish_sync, json_body
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

JsonObject = dict[str, Any]
PREFIX = "/sdapi/v1"


def create_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings

    def model_or_400(name: str) -> CatalogModel:
        entry = settings.model(name)
        if entry is None:
            available = ", ".join(m.id for m in settings.models)
            raise tr.BadRequest(f"Model not found: {name}", f"Available models: {available}")
        return entry

    async def current_model() -> CatalogModel | None:
        """The model set through the options, if it still exists, else the default."""
        chosen = await runtime.chosen_model()
        entry = settings.model(chosen) if chosen else None
        return entry or settings.default()

    @router.get(f"{PREFIX}/samplers")
    async def samplers() -> list[JsonObject]:
        """SD-35 in A1111's shape."""
        return a1111.samplers()

    @router.get(f"{PREFIX}/schedulers")
    async def schedulers() -> list[JsonObject]:
        """SD-36 in A1111's shape."""
        return a1111.schedulers()

    @router.get(f"{PREFIX}/sd-models")
    async def sd_models() -> list[JsonObject]:
        """SD-37 in A1111's shape."""
        return a1111.sd_models(settings.models)

    @router.get(f"{PREFIX}/options")
    async def options() -> JsonObject:
        """SD-38."""
        current = await current_model()
        return {
            "sd_model_checkpoint": current.id if current else None,
            "sd_vae": "Automatic",
            "sd_checkpoint_hash": None,
            "samples_format": "png",
        }

    @router.post(f"{PREFIX}/options")
    async def set_options(request: Request) -> JsonObject:
        """SD-39: choose the model later txt2img calls use (SillyTavern sends none with them)."""
        body = await json_body(request)
        if not isinstance(body, dict):
            raise tr.BadRequest("Invalid JSON body")
        name = body.get("sd_model_checkpoint")
        if not name:
            return {"updated": []}
        entry = model_or_400(str(name))
        await runtime.choose_model(entry.id)
        return {"updated": [{"sd_model_checkpoint": True}]}

    @router.get(f"{PREFIX}/progress")
    async def progress() -> JsonObject:
        """SD-40: the running job's progress, in A1111's shape."""
        return a1111.progress(runtime.all())

    @router.post(f"{PREFIX}/interrupt")
    async def interrupt() -> JsonObject:
        """SD-41: interrupt the running jobs of this profile (queued ones keep waiting)."""
        for cr in runtime.all():
            if tr.phase(cr) == "Processing" and not (cr.get("spec") or {}).get("cancel"):
                await runtime.cancel(cr, "Interrupted")
        return {"success": True}

    @router.post(f"{PREFIX}/txt2img")
    async def txt2img(request: Request) -> JsonObject:
        """SD-45: one GenerationJob; waits for it and answers A1111's ``{images, parameters, info}``."""
        body = await json_body(request)
        if not isinstance(body, dict):
            raise tr.BadRequest("Invalid JSON body")
        asked = a1111.requested_model(body)
        model = model_or_400(asked) if asked else await current_model()
        if model is None:
            raise tr.BadRequest("No model configured", "the model catalog is empty")
        generation, parameters = a1111.txt2img_request(body, model, settings)
        done = await finish_sync(runtime, await runtime.submit(generation))
        images = []
        for output in tr.outputs(done):
            data = await runtime.image_bytes(output)
            if data is None:
                raise HTTPException(status_code=500, detail="Failed to read generated images")
            images.append(base64.b64encode(data).decode("ascii"))
        return {"images": images, "parameters": parameters, "info": a1111.info(done, parameters, model.id)}

    return router
