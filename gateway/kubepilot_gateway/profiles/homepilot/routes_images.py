"""HomePilot's image endpoints on GenerationJobs: ``/chat`` (imagine), ``/v1/upscale``, ``/v1/enhance``,
``/v1/outpaint``, ``/v1/capabilities*`` and the images themselves (``/files/kubepilot/...``).

- ``POST /chat`` reads the body once: mode ``imagine`` becomes a txt2img GenerationJob and the
  answer is HomePilot's ``{conversation_id, text, media}`` once it finished (``media.images``:
  absolute URLs of the images; a failed job is HomePilot's own 200 ``text: "Image generation
  error: ..."``, ``media: null``; ``media`` also has the orchestrator's ``final_prompt``, ``seed``,
  ``seeds``, ``width``, ``height``, ``steps``, ``cfg``, ``model``). Mode ``edit`` is the edit
  sessions' (``routes_edit``); every other mode (text chat, animate, project), and any request
  with a ``project_id`` (HomePilot's ``route_request`` sends those to its project chat), goes to
  the application unchanged (same bytes).
- ``POST /v1/upscale`` and ``/v1/enhance`` (photo, restore) become upscale GenerationJobs on an
  input image (``media.Media.input_image``). The upscaler is the requested one (by name, or a file
  by its stem as HomePilot's model ids are), else the first of the names the operator configured
  (``images.upscalers``, the operator's ``upscalers`` setting) and the files installed in
  ``upscale_models/`` (the generator resolves a bare file name there); with no requested one, the
  mode's preference (``/v1/edit-models/preference``) when it is there. None at all: HomePilot's
  503 "No upscale model installed. Please install one of: ..."; an unknown requested one: 400.
  HomePilot's ``width``/``height`` overrides are accepted and not used: the factor decides the
  size (the generator upscales by a factor). ``faces`` is always 503 (the generator cannot
  restore faces).
- ``POST /v1/outpaint`` becomes an inpaint GenerationJob on the padded canvas and mask of
  ``outpaint`` (strength 1: the border is generated, the original kept by the mask).
- ``GET /v1/capabilities`` and ``/v1/capabilities/{feature}``: ``catalog.capabilities``.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from enum import StrEnum
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.homepilot import catalog, generation, outpaint
from kubepilot_gateway.profiles.homepilot.config import HomePilotSettings
from kubepilot_gateway.profiles.homepilot.media import Media
from kubepilot_gateway.profiles.homepilot.proxy import AppProxy
from kubepilot_gateway.profiles.homepilot.routes_edit import EditSessions
from kubepilot_gateway.profiles.homepilot.routes_models import Preferences

JsonObject = dict[str, Any]


class ChatIn(BaseModel):
    """HomePilot's ``ChatIn`` (the fields the imagine path reads; the rest pass through untouched)."""

    model_config = ConfigDict(extra="allow")

    message: str = Field(description="User message (raw input); the prompt in imagine mode.")
    conversation_id: str | None = Field(default=None, description="Conversation id (optional).")
    project_id: str | None = None
    mode: str | None = Field(default=None, description="chat|imagine|edit|animate|project")
    imgWidth: int | None = None
    imgHeight: int | None = None
    imgSteps: int | None = None
    imgCfg: float | None = Field(default=None, ge=0, le=50, description="CFG (the GenerationJob's range).")
    imgSeed: int | None = Field(default=None, le=generation.MAX_INT64, description="0 = random.")
    imgModel: str | None = None
    imgBatchSize: int | None = Field(default=1, ge=1, le=4)


class ChatOut(BaseModel):
    conversation_id: str
    text: str
    media: JsonObject | None = None


class UpscaleRequest(BaseModel):
    """HomePilot's ``UpscaleRequest``."""

    image_url: str = Field(description="Image URL (from /files)")
    scale: int = Field(default=2, ge=1, le=4, description="Scale factor (2 or 4 recommended)")
    model: str | None = Field(default=None, description="Upscaler name (the configured one if not given)")
    width: int | None = Field(default=None, description="Override output width")
    height: int | None = Field(default=None, description="Override output height")


class EnhanceMode(StrEnum):
    PHOTO = "photo"
    RESTORE = "restore"
    FACES = "faces"


class EnhanceRequest(BaseModel):
    """HomePilot's ``EnhanceRequest``."""

    image_url: str = Field(description="Image URL (from /files)")
    mode: EnhanceMode = Field(default=EnhanceMode.PHOTO)
    scale: Literal[1, 2, 4] = Field(default=4)
    face_enhance: bool = Field(default=False)


class OutpaintRequest(BaseModel):
    """HomePilot's ``OutpaintRequest``."""

    image_url: str = Field(description="Image URL (from /files)")
    direction: outpaint.Direction = Field(default=outpaint.Direction.ALL)
    extend_pixels: int = Field(default=256, ge=64, le=1024, description="Pixels to extend (64-1024)")
    prompt: str | None = Field(default="", description="Optional prompt to guide the extended content")
    negative_prompt: str | None = Field(default="blurry, low quality, distorted, watermark")


CHAT_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ChatIn.model_json_schema()}},
    }
}


def create_router(
    ctx: GatewayContext, settings: HomePilotSettings, proxy: AppProxy, media: Media, edits: EditSessions
) -> APIRouter:
    router = APIRouter()
    images = settings.images
    preferences = Preferences(ctx)

    @router.post("/chat", response_model=ChatOut, openapi_extra=CHAT_BODY_SCHEMA)
    async def chat(request: Request) -> Response:
        """Imagine mode as a GenerationJob; every other mode to the application."""
        raw = await request.body()
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict) and parsed.get("project_id"):
            # HomePilot routes every mode with a project to its project chat (``route_request``).
            return await proxy.forward(request, "chat", body=raw)
        if isinstance(parsed, dict) and parsed.get("mode") == "edit":
            return await edits.chat_edit(request, parsed)
        if not isinstance(parsed, dict) or parsed.get("mode") != "imagine":
            return await proxy.forward(request, "chat", body=raw)
        try:
            inp = ChatIn.model_validate(parsed)
        except ValidationError as error:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
            raise RequestValidationError(errors) from error
        conversation_id = inp.conversation_id or str(uuid.uuid4())
        model = await asyncio.to_thread(
            catalog.resolve_image_model, media.models_root, inp.imgModel, images.model
        )
        if model is None:
            text = "Image generation error: no image model is installed on the models volume"
            return JSONResponse({"conversation_id": conversation_id, "text": text, "media": None})
        spec = generation.imagine_spec(inp.model_dump(), images, model)
        job = await generation.run_job(ctx, generation.job_body(spec, "imagine", images), images.waitSeconds)
        phase = generation.phase_of(job)
        if phase != "Completed":
            reason = (
                generation.failure_of(job)
                if phase in generation.TERMINAL
                else f"still {phase or 'Pending'} after {images.waitSeconds:g}s "
                f"(GenerationJob {job['metadata']['name']})"
            )
            text = f"Image generation error: {reason}"
            return JSONResponse({"conversation_id": conversation_id, "text": text, "media": None})
        urls = media.urls(request, generation.output_paths(job))
        return JSONResponse(
            {
                "conversation_id": conversation_id,
                "text": "Here you go." if urls else "Generated.",
                "media": generation.imagine_media(job, urls) if urls else None,
            }
        )

    @router.get("/files/kubepilot/{path:path}", include_in_schema=False)
    async def generated_file(path: str) -> Response:
        """An image the profile's jobs wrote (or staged), from the outputs volume."""
        found = await asyncio.to_thread(generation.served_file, media.outputs_root, path)
        if found is None:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(found)

    async def upscale_job(
        request: Request, image_url: str, factor: int, upscaler: str, feature: str
    ) -> tuple[list[str], tuple[int, int], tuple[int, int]]:
        source = await media.input_image(image_url)
        width, height = source.size
        out = (width * factor, height * factor)
        if max(out) > images.maxOutputEdge:
            raise HTTPException(
                status_code=400,
                detail=f"Requested output too large ({out[0]}x{out[1]}). "
                f"Max edge is {images.maxOutputEdge}px. Try a smaller scale factor.",
            )
        spec = {
            "type": "upscale",
            "inputs": {"image": source.relative},
            "upscale": {"upscaler": upscaler, "factor": float(factor)},
            "params": {"homepilot": {"feature": feature}},
        }
        job = await media.run(spec, feature, feature.capitalize())
        return media.urls(request, generation.output_paths(job)), (width, height), out

    async def upscaler_for(requested: str | None, feature: str, mode: str) -> str:
        """The upscaler a job names: the requested one, else the mode's preferred one when it is
        there (``/v1/edit-models/preference``), else the first configured or installed one."""
        installed = await asyncio.to_thread(catalog.scan_installed, media.models_root)
        names = catalog.upscaler_names(installed, images.upscalers)
        if not names:
            raise HTTPException(
                status_code=503, detail=f"{feature} is not available: {catalog.no_upscaler_reason()}"
            )
        if not requested:
            preferred = (await preferences.read())[0][mode]
            return catalog.match_upscaler(preferred, names) or names[0]
        found = catalog.match_upscaler(requested, names)
        if found is None:
            raise HTTPException(
                status_code=400,
                detail=f"Upscale model {requested!r} is not installed (installed: {', '.join(names)})",
            )
        return found

    @router.post("/v1/upscale")
    async def upscale(req: UpscaleRequest, request: Request) -> JsonObject:
        """An upscale GenerationJob; HomePilot's ``{media: {images, videos}, model_used}``."""
        upscaler = await upscaler_for(req.model, "Upscale", "upscale")
        urls, _, _ = await upscale_job(request, req.image_url, req.scale, upscaler, "upscale")
        return {"media": {"images": urls, "videos": []}, "model_used": upscaler}

    @router.post("/v1/enhance")
    async def enhance(req: EnhanceRequest, request: Request) -> JsonObject:
        """Photo and restore as upscale GenerationJobs; faces is refused (no face restoration here)."""
        if req.mode is EnhanceMode.FACES:
            reason = catalog.capabilities({}, images.upscalers)["enhance_faces"]["reason"]
            raise HTTPException(status_code=503, detail=f"Enhance mode 'faces' is not available: {reason}")
        upscaler = await upscaler_for(None, f"Enhance mode '{req.mode.value}'", req.mode.value)
        urls, original, enhanced = await upscale_job(request, req.image_url, req.scale, upscaler, "enhance")
        return {
            "media": {"images": urls, "videos": []},
            "mode_used": req.mode.value,
            "model_used": upscaler,
            "original_size": list(original),
            "enhanced_size": list(enhanced),
        }

    @router.post("/v1/outpaint")
    async def outpaint_image(req: OutpaintRequest, request: Request) -> JsonObject:
        """An inpaint GenerationJob on the padded canvas and mask the profile builds."""
        source = await media.input_image(req.image_url)
        width, height = source.size
        ext = outpaint.extension(width, height, req.direction, req.extend_pixels)
        if max(ext.width, ext.height) > images.maxOutputEdge:
            raise HTTPException(
                status_code=400,
                detail=f"Output too large ({ext.width}x{ext.height}). Max edge is {images.maxOutputEdge}px. "
                "Try a smaller extend_pixels value.",
            )
        model = await asyncio.to_thread(catalog.resolve_image_model, media.models_root, None, images.model)
        if model is None:
            raise HTTPException(
                status_code=503, detail="Outpaint is not available: no image model is installed"
            )
        stem = f"{generation.STAGING}/{uuid.uuid4().hex}"
        with Image.open(io.BytesIO(source.data)) as picture:
            canvas, mask = outpaint.canvas_and_mask(picture, ext)
        canvas_path = await media.write_png(canvas, f"{stem}-canvas")
        mask_path = await media.write_png(mask, f"{stem}-mask")
        guidance = req.prompt or "the same scene continued beyond its borders, matching style and light"
        spec = {
            "type": "inpaint",
            "model": model,
            "prompt": f"{guidance}, high quality, detailed",
            "negativePrompt": req.negative_prompt or "",
            "width": ext.width,
            "height": ext.height,
            "steps": images.steps,
            "cfgScale": images.cfgScale,
            "strength": 1.0,
            "inputs": {"image": canvas_path, "mask": mask_path},
            "params": {"homepilot": {"feature": "outpaint", "direction": req.direction.value}},
        }
        job = await media.run(spec, "outpaint", "Outpaint")
        return {
            "media": {"images": media.urls(request, generation.output_paths(job)), "videos": []},
            "direction_used": req.direction.value,
            "original_size": [width, height],
            "new_size": [ext.width, ext.height],
            "extend_pixels": req.extend_pixels,
        }

    async def capability_map() -> dict[str, JsonObject]:
        installed = await asyncio.to_thread(catalog.scan_installed, media.models_root)
        model = await asyncio.to_thread(catalog.resolve_image_model, media.models_root, None, images.model)
        return catalog.capabilities(installed, images.upscalers, model)

    @router.get("/v1/capabilities")
    async def get_capabilities() -> JsonObject:
        """Which image features run here, and why the others do not."""
        return {"capabilities": await capability_map()}

    @router.get("/v1/capabilities/{feature}")
    async def get_capability(feature: str) -> JsonObject:
        """One feature; HomePilot's 200 ``{error, valid_features}`` for an unknown one."""
        known = await capability_map()
        if feature not in known:
            return {"error": f"Unknown feature: {feature}", "valid_features": list(known)}
        return known[feature]

    return router
