"""The REST endpoints that take an input image: edit and variation (synchronous, SD-04/05, and
queued, SD-07/08) and the queued upscale (SD-09), each one GenerationJob.

The image (and an edit's optional ``mask``) comes as a multipart file, as the product's web UI
sends it, or as base64 text in a JSON body (a script's convenience); either way it is checked and
staged by :mod:`.uploads` before the job is created, and the job names the staged file
(``inputs.image`` / ``inputs.mask``). Checks run in the product's order: the image's presence,
then the fields, then the image's content.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio import uploads as up
from kubepilot_gateway.profiles.sdcpp_studio.routes_api import finish_sync
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

JsonObject = dict[str, Any]


async def checked(runtime: Runtime, data: bytes, what: str) -> up.CheckedImage:
    """Pillow's checks off the event loop."""
    return await asyncio.to_thread(up.check_image, data, runtime.limits, what)


def create_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings
    limits = runtime.limits

    async def submit_image_job(request: Request, kind: str) -> JsonObject:
        body = await up.read_body(request, limits)
        raw = up.image_bytes(body, "image", limits, required=True)
        assert raw is not None
        raw_mask = up.image_bytes(body, "mask", limits, required=False) if kind == "edit" else None
        image = await checked(runtime, raw, "image")
        generation = tr.image_request(
            kind,
            body.fields,
            (image.width, image.height),
            settings.models,
            settings.model,
            settings.default(),
            default_steps=settings.defaultSteps,
        )
        mask = await checked(runtime, raw_mask, "mask") if raw_mask is not None else None
        return await runtime.submit(generation, [image], mask)

    @router.post("/api/edit")
    async def edit(request: Request) -> JsonObject:
        """SD-04: an edit (img2img, or an inpaint with ``mask``), waited for like ``/api/generate``."""
        cr = await submit_image_job(request, "edit")
        return tr.sync_answer(await finish_sync(runtime, cr))

    @router.post("/api/variation")
    async def variation(request: Request) -> JsonObject:
        """SD-05: a variation of the image (``strength``, default 0.75), waited for."""
        cr = await submit_image_job(request, "variation")
        return tr.sync_answer(await finish_sync(runtime, cr))

    @router.post("/api/queue/edit")
    async def queue_edit(request: Request) -> JsonObject:
        """SD-07."""
        cr = await submit_image_job(request, "edit")
        return {"job_id": cr["metadata"]["name"], "status": "pending"}

    @router.post("/api/queue/variation")
    async def queue_variation(request: Request) -> JsonObject:
        """SD-08."""
        cr = await submit_image_job(request, "variation")
        return {"job_id": cr["metadata"]["name"], "status": "pending"}

    @router.post("/api/queue/upscale")
    async def queue_upscale(request: Request) -> JsonObject:
        """SD-09: ``upscaler`` (the product's name, mapped through the ``upscalers`` setting),
        ``resize_mode`` 0 with ``upscale_factor`` or 1 with ``target_width``/``target_height``."""
        body = await up.read_body(request, limits)
        raw = up.image_bytes(body, "image", limits, required=True)
        assert raw is not None
        image = await checked(runtime, raw, "image")
        generation = tr.upscale_request(body.fields, (image.width, image.height), settings)
        cr = await runtime.submit(generation, [image])
        return {"job_id": cr["metadata"]["name"], "status": "pending"}

    return router
