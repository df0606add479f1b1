"""HomePilot's image endpoints on GenerationJobs: ``/chat`` (imagine), ``/v1/upscale``, ``/v1/enhance``,
``/v1/outpaint``, ``/v1/capabilities*`` and the images themselves (``/files/kubepilot/...``).

- ``POST /chat`` reads the body once: mode ``imagine`` becomes a txt2img GenerationJob and the
  answer is HomePilot's ``{conversation_id, text, media}`` once it finished (``media.images``:
  absolute URLs of the images; a failed job is HomePilot's own 200 ``text: "Image generation
  error: ..."``, ``media: null``). Every other mode (text chat, edit, animate, project) goes to the
  application unchanged (same bytes).
- ``POST /v1/upscale`` and ``/v1/enhance`` (photo, restore) become upscale GenerationJobs on an
  input image: a ``/files/kubepilot/...`` URL of ours is used in place; an application
  ``/files/...`` URL is fetched from the application (and only from it: no other host is ever
  fetched) and staged on the outputs volume after a size and image check. They answer 503, as
  HomePilot does when no model is installed, while the generator has no upscaler
  (``images.upscalers``); ``faces`` is always 503 (the generator cannot restore faces).
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
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.homepilot import catalog, generation, outpaint
from kubepilot_gateway.profiles.homepilot.config import HomePilotSettings
from kubepilot_gateway.profiles.homepilot.proxy import AppProxy

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
    imgCfg: float | None = None
    imgSeed: int | None = Field(default=None, description="0 = random.")
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


def create_router(ctx: GatewayContext, settings: HomePilotSettings, proxy: AppProxy) -> APIRouter:
    router = APIRouter()
    images = settings.images
    models_root = Path(ctx.settings.volumes.models)
    outputs_root = Path(ctx.settings.volumes.outputs)

    def base_url(request: Request) -> str:
        return str(request.base_url)

    @router.post("/chat", response_model=ChatOut, openapi_extra=CHAT_BODY_SCHEMA)
    async def chat(request: Request) -> Response:
        """Imagine mode as a GenerationJob; every other mode to the application."""
        raw = await request.body()
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict) or parsed.get("mode") != "imagine":
            return await proxy.forward(request, "chat", body=raw)
        try:
            inp = ChatIn.model_validate(parsed)
        except ValidationError as error:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
            raise RequestValidationError(errors) from error
        conversation_id = inp.conversation_id or str(uuid.uuid4())
        model = await asyncio.to_thread(catalog.resolve_image_model, models_root, inp.imgModel, images.model)
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
        urls = [generation.file_url(base_url(request), p) for p in generation.output_paths(job)]
        return JSONResponse(
            {
                "conversation_id": conversation_id,
                "text": "Here you go." if urls else "Generated.",
                "media": {"images": urls} if urls else None,
            }
        )

    @router.get("/files/kubepilot/{path:path}", include_in_schema=False)
    async def generated_file(path: str) -> Response:
        """An image the profile's jobs wrote (or staged), from the outputs volume."""
        found = await asyncio.to_thread(generation.served_file, outputs_root, path)
        if found is None:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(found)

    async def staged_input(request: Request, image_url: str) -> tuple[str, tuple[int, int], bytes]:
        """(path relative to the outputs volume, (width, height), bytes) of the input image."""
        relative = generation.relative_from_url(image_url)
        if relative is not None:
            found = await asyncio.to_thread(generation.served_file, outputs_root, relative)
            if found is None:
                raise HTTPException(status_code=400, detail=f"Cannot read image: {image_url} not found")
            data = await asyncio.to_thread(found.read_bytes)
        else:
            path = urlsplit(image_url).path
            if not path.startswith("/files/") or ".." in path.split("/"):
                raise HTTPException(
                    status_code=400,
                    detail="image_url must be a /files URL of this server (other hosts are not fetched)",
                )
            data = await fetch_app_file(path)
            relative = f"{generation.STAGING}/{uuid.uuid4().hex}.png"
        try:
            size = await asyncio.to_thread(_image_size, data)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise HTTPException(
                status_code=400, detail="Cannot read image dimensions: not an image"
            ) from error
        if relative.startswith(generation.STAGING):
            target = outputs_root / relative
            await asyncio.to_thread(_write, target, data)
        return relative, size, data

    async def fetch_app_file(path: str) -> bytes:
        base = proxy.url()
        client = proxy.http.client()
        try:
            async with client.stream(
                "GET", base + path, timeout=settings.proxy.timeout_for("/upload")
            ) as answer:
                if answer.status_code != 200:
                    raise HTTPException(
                        status_code=400,
                        detail=f"Cannot read image: the application answered {answer.status_code}",
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in answer.aiter_bytes():
                    size += len(chunk)
                    if size > images.maxInputBytes:
                        raise HTTPException(status_code=413, detail="Image too large")
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise HTTPException(
                status_code=502, detail="The HomePilot application could not be reached"
            ) from error
        return b"".join(chunks)

    async def upscale_job(
        request: Request, image_url: str, factor: int, upscaler: str, feature: str
    ) -> tuple[list[str], tuple[int, int], tuple[int, int]]:
        relative, (width, height), _ = await staged_input(request, image_url)
        out = (width * factor, height * factor)
        if max(out) > images.maxOutputEdge:
            raise HTTPException(
                status_code=400,
                detail=f"Requested output too large ({out[0]}x{out[1]}). "
                f"Max edge is {images.maxOutputEdge}px. Try a smaller scale factor.",
            )
        spec = {
            "type": "upscale",
            "inputs": {"image": relative},
            "upscale": {"upscaler": upscaler, "factor": float(factor)},
            "params": {"homepilot": {"feature": feature}},
        }
        job = await generation.run_job(ctx, generation.job_body(spec, feature, images), images.waitSeconds)
        if generation.phase_of(job) != "Completed":
            raise HTTPException(
                status_code=500,
                detail=f"{feature.capitalize()} workflow failed: {generation.failure_of(job)}",
            )
        urls = [generation.file_url(base_url(request), p) for p in generation.output_paths(job)]
        return urls, (width, height), out

    def upscaler_for(requested: str | None) -> str:
        if not images.upscalers:
            reason = catalog.capabilities({}, [])["upscale"]["reason"]
            raise HTTPException(status_code=503, detail=f"Upscale is not available: {reason}")
        if requested and requested.removesuffix(".pth") in {u.removesuffix(".pth") for u in images.upscalers}:
            return next(
                u for u in images.upscalers if u.removesuffix(".pth") == requested.removesuffix(".pth")
            )
        return images.upscalers[0]

    @router.post("/v1/upscale")
    async def upscale(req: UpscaleRequest, request: Request) -> JsonObject:
        """An upscale GenerationJob; HomePilot's ``{media: {images, videos}, model_used}``."""
        upscaler = upscaler_for(req.model)
        urls, _, _ = await upscale_job(request, req.image_url, req.scale, upscaler, "upscale")
        return {"media": {"images": urls, "videos": []}, "model_used": upscaler}

    @router.post("/v1/enhance")
    async def enhance(req: EnhanceRequest, request: Request) -> JsonObject:
        """Photo and restore as upscale GenerationJobs; faces is refused (no face restoration here)."""
        if req.mode is EnhanceMode.FACES:
            reason = catalog.capabilities({}, images.upscalers)["enhance_faces"]["reason"]
            raise HTTPException(status_code=503, detail=f"Enhance mode 'faces' is not available: {reason}")
        if not images.upscalers:
            reason = catalog.capabilities({}, [])["enhance_photo"]["reason"]
            raise HTTPException(
                status_code=503, detail=f"Enhance mode '{req.mode.value}' is not available: {reason}"
            )
        upscaler = upscaler_for(None)
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
        _, (width, height), data = await staged_input(request, req.image_url)
        ext = outpaint.extension(width, height, req.direction, req.extend_pixels)
        if max(ext.width, ext.height) > images.maxOutputEdge:
            raise HTTPException(
                status_code=400,
                detail=f"Output too large ({ext.width}x{ext.height}). Max edge is {images.maxOutputEdge}px. "
                "Try a smaller extend_pixels value.",
            )
        model = await asyncio.to_thread(catalog.resolve_image_model, models_root, None, images.model)
        if model is None:
            raise HTTPException(
                status_code=503, detail="Outpaint is not available: no image model is installed"
            )
        stem = f"{generation.STAGING}/{uuid.uuid4().hex}"
        await asyncio.to_thread(_write_canvas, outputs_root, stem, data, ext)
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
            "inputs": {"image": f"{stem}-canvas.png", "mask": f"{stem}-mask.png"},
            "params": {"homepilot": {"feature": "outpaint", "direction": req.direction.value}},
        }
        job = await generation.run_job(ctx, generation.job_body(spec, "outpaint", images), images.waitSeconds)
        if generation.phase_of(job) != "Completed":
            raise HTTPException(
                status_code=500, detail=f"Outpaint workflow failed: {generation.failure_of(job)}"
            )
        urls = [generation.file_url(base_url(request), p) for p in generation.output_paths(job)]
        if not urls:
            raise HTTPException(status_code=500, detail="No image returned from workflow")
        return {
            "media": {"images": urls, "videos": []},
            "direction_used": req.direction.value,
            "original_size": [width, height],
            "new_size": [ext.width, ext.height],
            "extend_pixels": req.extend_pixels,
        }

    async def capability_map() -> dict[str, JsonObject]:
        installed = await asyncio.to_thread(catalog.scan_installed, models_root)
        model = await asyncio.to_thread(catalog.resolve_image_model, models_root, None, images.model)
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


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return int(width), int(height)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)


def _write_canvas(outputs_root: Path, stem: str, data: bytes, ext: outpaint.Extension) -> None:
    """``<stem>-canvas.png`` and ``<stem>-mask.png`` under the outputs volume."""
    with Image.open(io.BytesIO(data)) as image:
        canvas, mask = outpaint.canvas_and_mask(image, ext)
    for suffix, picture in (("canvas", canvas), ("mask", mask)):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        _write(outputs_root / f"{stem}-{suffix}.png", buffer.getvalue())
