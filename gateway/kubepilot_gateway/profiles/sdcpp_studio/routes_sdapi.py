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
from kubepilot_gateway.profiles.sdcpp_studio import uploads as up
from kubepilot_gateway.profiles.sdcpp_studio.config import CatalogModel
from kubepilot_gateway.profiles.sdcpp_studio.routes_api import finish_sync, json_body
from kubepilot_gateway.profiles.sdcpp_studio.routes_inputs import checked
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

JsonObject = dict[str, Any]
PREFIX = "/sdapi/v1"
MAX_BATCH = 64
"""Images one extra-batch-images call may send (one GenerationJob holds at most 64 outputs)."""


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

    async def images_of(done: JsonObject) -> list[str]:
        """The job's images as base64, in output order."""
        images = []
        for output in tr.outputs(done):
            data = await runtime.image_bytes(output)
            if data is None:
                raise HTTPException(status_code=500, detail="Failed to read generated images")
            images.append(base64.b64encode(data).decode("ascii"))
        return images

    async def model_for(body: JsonObject) -> CatalogModel:
        asked = a1111.requested_model(body)
        model = model_or_400(asked) if asked else await current_model()
        if model is None:
            raise tr.BadRequest("No model configured", "the model catalog is empty")
        return model

    @router.post(f"{PREFIX}/txt2img")
    async def txt2img(request: Request) -> JsonObject:
        """SD-45: one GenerationJob; waits for it and answers A1111's ``{images, parameters, info}``."""
        body = await json_body(request)
        if not isinstance(body, dict):
            raise tr.BadRequest("Invalid JSON body")
        model = await model_for(body)
        generation, parameters = a1111.txt2img_request(body, model, settings)
        done = await finish_sync(runtime, await runtime.submit(generation))
        images = await images_of(done)
        return {"images": images, "parameters": parameters, "info": a1111.info(done, parameters, model.id)}

    @router.post(f"{PREFIX}/img2img")
    async def img2img(request: Request) -> JsonObject:
        """A1111's img2img: ``init_images[0]`` (base64) as the init image, ``mask`` (base64) makes it
        an inpaint, ``denoising_strength``; the rest as txt2img. One GenerationJob, waited for."""
        body = (await up.read_body(request, runtime.limits)).fields
        init = body.get("init_images")
        if not isinstance(init, list) or not init:
            raise tr.BadRequest(
                "Missing required field: init_images", "init_images is a list of base64 images"
            )
        model = await model_for(body)
        generation, parameters = a1111.img2img_request(body, model, settings)
        image = await checked(
            runtime, up.decode_base64(init[0], runtime.limits, "init_images[0]"), "init image"
        )
        raw_mask = body.get("mask")
        mask = None
        if raw_mask:
            mask = await checked(runtime, up.decode_base64(raw_mask, runtime.limits, "mask"), "mask")
        done = await finish_sync(runtime, await runtime.submit(generation, [image], mask))
        images = await images_of(done)
        return {"images": images, "parameters": parameters, "info": a1111.info(done, parameters, model.id)}

    @router.get(f"{PREFIX}/latent-upscale-modes")
    async def latent_upscale_modes() -> list[JsonObject]:
        """A1111's hires-fix latent modes: none (hires fix is not offered). SillyTavern asks for them
        together with the upscalers, and a 404 there would fail its whole upscaler list."""
        return []

    @router.get(f"{PREFIX}/sd-vae")
    async def sd_vae() -> list[JsonObject]:
        """A1111's VAE list: none to choose (each model brings its own); SillyTavern lists it."""
        return []

    @router.get(f"{PREFIX}/upscalers")
    async def upscalers() -> list[JsonObject]:
        """SD-42: the configured upscalers, in A1111's shape."""
        return a1111.upscalers(settings, runtime.ctx.settings.volumes.models)

    @router.post(f"{PREFIX}/extra-single-image")
    async def extra_single_image(request: Request) -> JsonObject:
        """SD-43: multipart (the product's field names: ``image``, ``upscaler``, ``upscale_factor``,
        ``target_width``, ``target_height``) or JSON (A1111's: ``image`` base64, ``upscaler_1``,
        ``upscaling_resize``, ``upscaling_resize_w``, ``upscaling_resize_h``); one upscale job."""
        body = await up.read_body(request, runtime.limits)
        if not body.files.get("image") and not body.fields.get("image"):
            raise tr.BadRequest("Missing required field: image")
        raw = up.image_bytes(body, "image", runtime.limits, required=True)
        assert raw is not None
        image = await checked(runtime, raw, "image")
        names = tr.A1111_UPSCALE if body.json else tr.PRODUCT_UPSCALE
        generation = tr.upscale_request(body.fields, (image.width, image.height), settings, names)
        done = await finish_sync(runtime, await runtime.submit(generation, [image]))
        (encoded, *_) = await images_of(done)
        return {"html_info": f"<div>Upscaled with {generation.upscaler_name}</div>", "image": encoded}

    @router.post(f"{PREFIX}/extra-batch-images")
    async def extra_batch_images(request: Request) -> JsonObject:
        """SD-44: ``imageList: [{data, name}]`` (base64) upscaled by one job, in order; the factor of
        ``resize_mode`` 1 is derived from the first image."""
        body = (await up.read_body(request, runtime.limits)).fields
        listed = body.get("imageList")
        if not isinstance(listed, list) or not listed:
            raise tr.BadRequest("Missing required field: imageList (array)")
        if len(listed) > MAX_BATCH:
            raise tr.BadRequest("Too many images", f"at most {MAX_BATCH} images per call")
        images = []
        for index, item in enumerate(listed):
            data = item.get("data") if isinstance(item, dict) else None
            what = f"imageList[{index}]"
            images.append(await checked(runtime, up.decode_base64(data, runtime.limits, what), what))
        first = (images[0].width, images[0].height)
        generation = tr.upscale_request(body, first, settings, tr.A1111_UPSCALE)
        done = await finish_sync(runtime, await runtime.submit(generation, images))
        results = await images_of(done)
        return {
            "html_info": f"<div>Upscaled {len(results)} images with {generation.upscaler_name}</div>",
            "images": results,
        }

    return router
