"""HomePilot's image editing on GenerationJobs: the edit sessions, ``/chat`` in edit mode,
``/v1/edit`` and ``/v1/background``.

Edit sessions follow HomePilot's edit-session service (``edit-session/app/main.py``: "upload once,
chat to edit"), whose routes HomePilot's frontend calls on the backend's address:

- ``POST /v1/edit-sessions/{id}/image``: a multipart upload (``file``; ``instruction`` and
  ``strip_metadata`` form fields) or, as HomePilot's backend also takes it, JSON ``{"image_url"}``
  naming an image of ours or of the application. The upload is checked as the service does:
  content type png/jpeg/webp (400), not empty (400), at most ``maxUploadBytes`` (413, refused
  from its Content-Length before it is read, or as soon as that many bytes arrived), decodes as an
  image (400); with ``strip_metadata`` (default) it is re-encoded as PNG, dropping EXIF. It is
  staged under ``homepilot/inputs`` on the outputs volume with a name we choose (the client's
  file name never reaches the filesystem) and becomes the active image (``[Original Upload]``);
  an ``instruction`` runs the first edit at once (``result``).
- ``POST /v1/edit-sessions/{id}/message`` ``{"message", "model"?, "extra"?}``: an img2img
  GenerationJob on the session's active image with the message as the prompt (the image's size,
  rounded to multiples of 8; ``strength`` ``images.editStrength`` unless ``extra`` says
  ``strength``/``denoise``; ``extra`` may also set ``imgSteps``, ``imgCfg``, ``imgSeed``,
  ``negative_prompt``). The answer is the service's ``{"raw": <HomePilot chat answer>}``; a failed
  job is HomePilot's 200 ``text: "Image generation error: ..."`` with no images. No active
  image: 400 "No active image. Upload an image first.".
- ``POST .../select {"image_url"}``, ``POST .../revert?index=N``, ``GET /v1/edit-sessions/{id}``,
  ``GET .../history``, ``DELETE .../version?image_url=``, ``DELETE /v1/edit-sessions/{id}``: the
  service's state operations and shapes (``conversation_id``, ``active_image_url``,
  ``original_image_url``, ``versions`` [``url``, ``instruction``, ``created_at``, ``parent_url``,
  ``settings``], ``history``). Deleting a session also deletes its GenerationJobs (label
  ``kubepilot.io/homepilot-edit-session``); their images stay.
- ``POST /chat`` with ``mode: "edit"``: HomePilot's ``"edit <image url> <instruction>"`` message, or
  (as the service's ``/chat``) a bare instruction applied to the session ``conversation_id``'s
  active image; the answer is HomePilot's ``ChatOut``.

Deviation: in HomePilot's service a message's results join the history and the active image
changes only on ``select``; here the first result also becomes the active image, so a chain of
messages edits the previous result (the issue's "the result becomes the session's current
image"); ``select`` and ``revert`` still pick any version. Sessions live in ConfigMaps
(``sessions``). Result sizes are the input's rounded to multiples of 8.

``POST /v1/edit`` is not a route of HomePilot's backend (its capabilities name it as the inpaint
endpoint): ours takes ``{"image_url", "prompt", "mask_url"?, "negative_prompt"?, "strength"?,
"steps"?, "seed"?, "model"?}``; with a mask it is an inpaint job (white repainted), without one
img2img; the answer has the sibling endpoints' shape (``media``, ``mode_used``, ``model_used``,
``original_size``).

``POST /v1/background`` is HomePilot's ``BackgroundRequest``/``BackgroundResponse``: ``replace``
inpaints the mask ``background.background_mask`` builds (prompt required, 400 without one, as
HomePilot); ``blur`` is HomePilot's Pillow blur done here (no job); ``remove`` is a 503 whose
``detail`` says background removal needs a segmentation model the generator lacks (HomePilot's
own 503 "Background removal is not available. ..." form, which its client shows).
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from kubepilot_gateway.app.bodylimit import size_limited_route
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.homepilot import background, catalog, generation
from kubepilot_gateway.profiles.homepilot.config import HomePilotSettings
from kubepilot_gateway.profiles.homepilot.media import InputImage, Media, multiple_of_8
from kubepilot_gateway.profiles.homepilot.sessions import (
    LABEL_SESSION,
    SessionRecord,
    SessionStore,
    Version,
    session_key,
)

JsonObject = dict[str, Any]
URL_RE = re.compile(r"https?://\S+", re.IGNORECASE)
ALLOWED_MIME = frozenset({"image/png", "image/jpeg", "image/webp"})
RESULTS = "homepilot/results"
SessionId = Annotated[str, Path(min_length=1, max_length=256, description="Conversation id")]


class EditTuning(BaseModel):
    """The ``extra`` fields an edit message may set (others are ignored, as HomePilot forwards them)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    strength: float | None = Field(default=None, ge=0, le=1)
    denoise: float | None = Field(default=None, ge=0, le=1)
    imgSteps: int | None = Field(default=None, ge=1, le=500)
    imgCfg: float | None = Field(default=None, ge=0, le=50)
    imgSeed: int | None = Field(default=None, ge=0, le=generation.MAX_INT64)
    negative_prompt: str | None = Field(default=None, max_length=32768)


class EditMessageRequest(BaseModel):
    """HomePilot's ``EditMessageRequest``."""

    message: str = Field(min_length=1, max_length=32768, description="Natural language edit instruction")
    provider: str | None = Field(default=None, description="LLM provider name (not used for edits)")
    provider_base_url: str | None = Field(default=None, description="Custom provider URL (not used)")
    model: str | None = Field(default=None, description="Image model (file name or path on the volume)")
    stream: bool | None = Field(default=None, description="Not supported for edits")
    extra: JsonObject = Field(default_factory=dict, description="Additional parameters (see EditTuning)")


class SelectImageRequest(BaseModel):
    image_url: str = Field(description="URL of the image to set as active")


class ImageByUrl(BaseModel):
    image_url: str = Field(description="An image of this server (/files/...)")


class EditRequest(BaseModel):
    """``/v1/edit`` (kubepilot's; HomePilot names the endpoint in its capabilities only)."""

    image_url: str = Field(description="Image URL (from /files)")
    prompt: str = Field(min_length=1, max_length=32768, description="What the edited image shows")
    mask_url: str | None = Field(default=None, description="Mask image URL: white is repainted (inpaint)")
    negative_prompt: str | None = Field(default="blurry, low quality, distorted", max_length=32768)
    strength: float | None = Field(default=None, ge=0, le=1, description="How far to move from the input")
    steps: int | None = Field(default=None, ge=1, le=500)
    seed: int | None = Field(default=None, ge=0, le=generation.MAX_INT64, description="Seed (none: random)")
    model: str | None = Field(default=None, description="Image model (file name or path on the volume)")


class BackgroundAction(StrEnum):
    REMOVE = "remove"
    REPLACE = "replace"
    BLUR = "blur"


class BackgroundRequest(BaseModel):
    """HomePilot's ``BackgroundRequest``."""

    image_url: str = Field(description="Image URL (preferably from /files)")
    action: BackgroundAction = Field(default=BackgroundAction.REMOVE)
    prompt: str | None = Field(default=None, description="Background description for replace action")
    negative_prompt: str | None = Field(default="blurry, low quality, distorted")
    blur_strength: int = Field(default=15, ge=5, le=50, description="Blur strength for blur action (5-50)")


def too_large(limit: int) -> HTTPException:
    """HomePilot's 413 for an upload over its limit."""
    return HTTPException(status_code=413, detail=f"Upload too large. Maximum size: {limit} bytes")


def _body_errors(error: ValidationError, *prefix: str) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": ("body", *prefix, *e["loc"])} for e in error.errors(include_url=False)]
    )


class EditSessions:
    """The edit endpoints' shared logic (the routes are in ``create_router``)."""

    def __init__(self, ctx: GatewayContext, settings: HomePilotSettings, media: Media) -> None:
        self.ctx = ctx
        self.settings = settings
        self.images = settings.images
        self.media = media
        self.store = SessionStore(ctx, settings.editSessions.ttlSeconds)

    # -- jobs ----------------------------------------------------------------------------------

    async def image_model(self, requested: str | None, feature: str) -> str:
        found = await asyncio.to_thread(
            catalog.resolve_image_model, self.media.models_root, requested, self.images.model
        )
        if found is None:
            raise HTTPException(
                status_code=503, detail=f"{feature} is not available: no image model is installed"
            )
        return found

    def edit_spec(
        self, source: InputImage, prompt: str, model: str, tuning: EditTuning, mask: str | None = None
    ) -> JsonObject:
        """An img2img spec (inpaint with ``mask``) on ``source`` at its size rounded to 8."""
        width, height = source.size
        strength = tuning.strength if tuning.strength is not None else tuning.denoise
        if strength is None:
            strength = 1.0 if mask else self.images.editStrength
        spec: JsonObject = {
            "type": "inpaint" if mask else "img2img",
            "model": model,
            "prompt": prompt,
            "negativePrompt": tuning.negative_prompt or "",
            "width": multiple_of_8(width, self.images.maxOutputEdge),
            "height": multiple_of_8(height, self.images.maxOutputEdge),
            "steps": min(tuning.imgSteps or self.images.steps, self.images.maxSteps),
            "cfgScale": tuning.imgCfg if tuning.imgCfg is not None else self.images.cfgScale,
            "seed": tuning.imgSeed if tuning.imgSeed else -1,
            "strength": strength,
            "inputs": {"image": source.relative, **({"mask": mask} if mask else {})},
        }
        return spec

    async def edit_session_job(
        self,
        conversation_id: str | None,
        source: InputImage,
        instruction: str,
        model: str | None,
        tuning: EditTuning,
    ) -> tuple[list[str] | None, str]:
        """Run one edit; (result paths, or None when the job failed; the text of HomePilot's answer)."""
        chosen = await self.image_model(model, "Edit")
        spec = self.edit_spec(source, instruction, chosen, tuning)
        spec["params"] = {"homepilot": {"feature": "edit"}}
        labels = {LABEL_SESSION: session_key(conversation_id)} if conversation_id else {}
        try:
            job = await self.media.run(spec, "edit", "Edit", labels=labels)
        except HTTPException as error:
            if error.status_code != 500:
                raise
            return None, f"Image generation error: {str(error.detail).removeprefix('Edit workflow failed: ')}"
        return generation.output_paths(job), "Here you go."

    async def apply(
        self,
        conversation_id: str,
        source: InputImage,
        instruction: str,
        model: str | None,
        tuning: EditTuning,
    ) -> tuple[list[str] | None, str]:
        """One edit of a session: the results join its history, the first becomes active."""
        paths, text = await self.edit_session_job(conversation_id, source, instruction, model, tuning)
        if paths:
            settings = {"type": "img2img", "parent": source.relative}

            def record(session: SessionRecord) -> None:
                for path in reversed(paths):
                    session.set_active(path, instruction, settings)

            await self.store.update(conversation_id, record)
        return paths, text

    async def active_source(self, session: SessionRecord) -> InputImage:
        if not session.active:
            raise HTTPException(status_code=400, detail="No active image. Upload an image first.")
        return await self.media.served_image(session.active, session.active)

    # -- views ---------------------------------------------------------------------------------

    def view(self, request: Request, session: SessionRecord) -> JsonObject:
        base = str(request.base_url)

        def url(path: str | None) -> str | None:
            return generation.file_url(base, path) if path else None

        versions = [
            {
                "url": url(v.path),
                "instruction": v.instruction,
                "created_at": v.created_at,
                "parent_url": url(v.parent),
                "settings": v.settings,
            }
            for v in session.versions
        ]
        return {
            "conversation_id": session.conversation_id,
            "active_image_url": url(session.active),
            "original_image_url": url(session.original),
            "versions": versions,
            "history": [v["url"] for v in versions],
        }

    def chat_answer(
        self, request: Request, conversation_id: str, paths: list[str] | None, text: str
    ) -> JsonObject:
        urls = self.media.urls(request, paths or [])
        return {"conversation_id": conversation_id, "text": text, "media": {"images": urls} if urls else None}

    # -- /chat in edit mode --------------------------------------------------------------------

    async def chat_edit(self, request: Request, body: JsonObject) -> Response:
        """HomePilot's ``/chat`` ``mode: edit``: ``edit <url> <instruction>`` or a session's image."""
        try:
            message = str(EditMessageRequest.model_validate({"message": body.get("message")}).message)
            tuning = EditTuning.model_validate(body)
        except ValidationError as error:
            raise _body_errors(error) from error
        conversation_id = str(body.get("conversation_id") or "") or None
        found = URL_RE.search(message)
        if found:
            source = await self.media.input_image(found.group(0))
            instruction = (message[: found.start()] + message[found.end() :]).strip()
            instruction = (
                re.sub(r"^edit\b", "", instruction, flags=re.IGNORECASE).strip() or "improve the image"
            )
        elif conversation_id:
            source = await self.active_source(await self.store.get(conversation_id))
            instruction = message.strip()
        else:
            raise HTTPException(status_code=400, detail="No active image. Upload an image first.")
        model = body.get("imgModel") if isinstance(body.get("imgModel"), str) else None
        if conversation_id:
            paths, text = await self.apply(conversation_id, source, instruction, model, tuning)
        else:
            paths, text = await self.edit_session_job(None, source, instruction, model, tuning)
        answer = self.chat_answer(request, conversation_id or str(uuid.uuid4()), paths, text)
        return JSONResponse(answer)


def create_router(edits: EditSessions) -> APIRouter:
    router = APIRouter()
    uploads = APIRouter(route_class=size_limited_route(edits.settings.editSessions.maxUploadBytes, too_large))
    media = edits.media
    store = edits.store
    images = edits.images

    @uploads.post(
        "/v1/edit-sessions/{conversation_id}/image",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "instruction": {"type": "string"},
                                "strip_metadata": {"type": "boolean", "default": True},
                            },
                        }
                    },
                    "application/json": {"schema": ImageByUrl.model_json_schema()},
                }
            }
        },
    )
    async def set_active_image(conversation_id: SessionId, request: Request) -> JsonObject:
        """Upload (or name) an image and make it the session's active image; optionally edit it."""
        instruction: str | None = None
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                named = ImageByUrl.model_validate_json(await request.body())
            except ValidationError as error:
                raise _body_errors(error) from error
            source = await media.input_image(named.image_url)
        else:
            source, instruction = await _read_upload(request, media)
        session = await store.update(
            conversation_id, lambda s: s.set_active(source.relative, "[Original Upload]")
        )
        result = edits.view(request, session)
        if instruction and instruction.strip():
            paths, text = await edits.apply(conversation_id, source, instruction.strip(), None, EditTuning())
            result.update(edits.view(request, await store.get(conversation_id)))
            result["result"] = edits.chat_answer(request, conversation_id, paths, text)
        return result

    @router.post("/v1/edit-sessions/{conversation_id}/message")
    async def edit_message(
        conversation_id: SessionId, req: EditMessageRequest, request: Request
    ) -> JsonObject:
        """An img2img GenerationJob on the active image; the result becomes the active image."""
        try:
            tuning = EditTuning.model_validate(req.extra)
        except ValidationError as error:
            raise _body_errors(error, "extra") from error
        source = await edits.active_source(await store.get(conversation_id))
        paths, text = await edits.apply(conversation_id, source, req.message, req.model, tuning)
        return {"raw": edits.chat_answer(request, conversation_id, paths, text)}

    @router.post("/v1/edit-sessions/{conversation_id}/select")
    async def select_image(
        conversation_id: SessionId, req: SelectImageRequest, request: Request
    ) -> JsonObject:
        """A version (or another image of ours) becomes the active image."""
        source = await media.input_image(req.image_url)
        current = await store.get(conversation_id)
        existing = current.version(source.relative)
        instruction = existing.instruction if existing else "[Selected as base]"
        session = await store.update(conversation_id, lambda s: s.set_active(source.relative, instruction))
        return edits.view(request, session)

    @router.post("/v1/edit-sessions/{conversation_id}/revert")
    async def revert(
        conversation_id: SessionId, request: Request, index: Annotated[int, Query()] = 0
    ) -> JsonObject:
        """Version ``index`` (0 = newest) becomes the active image."""
        current = await store.get(conversation_id)
        if not current.versions:
            raise HTTPException(status_code=400, detail="No history available")
        if index < 0 or index >= len(current.versions):
            raise HTTPException(
                status_code=400, detail=f"Invalid history index. Valid range: 0-{len(current.versions) - 1}"
            )
        target: Version = current.versions[index]
        label = f"[Reverted to: {target.instruction or 'previous version'}]"
        session = await store.update(conversation_id, lambda s: s.set_active(target.path, label))
        return edits.view(request, session)

    @router.get("/v1/edit-sessions/{conversation_id}")
    async def get_session(conversation_id: SessionId, request: Request) -> JsonObject:
        return edits.view(request, await store.get(conversation_id))

    @router.get("/v1/edit-sessions/{conversation_id}/history")
    async def get_history(conversation_id: SessionId, request: Request) -> JsonObject:
        view = edits.view(request, await store.get(conversation_id))
        return {
            "conversation_id": conversation_id,
            "versions": view["versions"],
            "history": view["history"],
            "count": len(view["versions"]),
        }

    @router.delete("/v1/edit-sessions/{conversation_id}/version")
    async def delete_version(
        conversation_id: SessionId, request: Request, image_url: Annotated[str, Query()]
    ) -> JsonObject:
        """Drop one version; when it was the active image, the newest remaining one is."""
        relative = generation.relative_from_url(image_url)

        def drop(session: SessionRecord) -> None:
            session.versions = [v for v in session.versions if v.path != relative]
            if session.active == relative:
                session.active = session.versions[0].path if session.versions else None

        return edits.view(request, await store.update(conversation_id, drop))

    @router.delete("/v1/edit-sessions/{conversation_id}")
    async def clear_session(conversation_id: SessionId) -> JsonObject:
        """Delete the session and its GenerationJobs (their images stay)."""
        await store.delete(conversation_id)
        return {"ok": True}

    @router.post("/v1/edit")
    async def edit(req: EditRequest, request: Request) -> JsonObject:
        """img2img, or inpaint with ``mask_url``, on ``image_url``."""
        source = await media.input_image(req.image_url)
        mask = (await media.input_image(req.mask_url)).relative if req.mask_url else None
        model = await edits.image_model(req.model, "Edit")
        tuning = EditTuning(
            strength=req.strength, imgSteps=req.steps, imgSeed=req.seed, negative_prompt=req.negative_prompt
        )
        spec = edits.edit_spec(source, req.prompt, model, tuning, mask)
        spec["params"] = {"homepilot": {"feature": "edit"}}
        job = await media.run(spec, "edit", "Edit")
        return {
            "media": {"images": media.urls(request, generation.output_paths(job)), "videos": []},
            "mode_used": spec["type"],
            "model_used": model,
            "original_size": list(source.size),
        }

    @router.post("/v1/background")
    async def process_background(req: BackgroundRequest, request: Request) -> JsonObject:
        """Replace (inpainting a built mask), blur (here), remove (unavailable: 503)."""
        source = await media.input_image(req.image_url)
        width, height = source.size
        if max(width, height) > images.maxOutputEdge:
            raise HTTPException(
                status_code=400,
                detail=f"Image too large ({width}x{height}). Max edge is {images.maxOutputEdge}px.",
            )
        if req.action is BackgroundAction.REMOVE:
            raise HTTPException(status_code=503, detail=catalog.BACKGROUND_REMOVAL_UNAVAILABLE)
        stem = f"{RESULTS}/{uuid.uuid4().hex}"
        if req.action is BackgroundAction.BLUR:
            picture = await asyncio.to_thread(_decoded, source.data)
            result = await asyncio.to_thread(background.blurred, picture, req.blur_strength)
            path = await media.write_png(result, f"{stem}-blur")
            return {
                "media": {"images": media.urls(request, [path]), "videos": []},
                "action_used": req.action.value,
                "has_alpha": False,
                "original_size": [width, height],
            }
        if not req.prompt:
            raise HTTPException(status_code=400, detail="prompt is required for replace action")
        model = await edits.image_model(None, "Background replace")
        picture = await asyncio.to_thread(_decoded, source.data)
        mask, rule = await asyncio.to_thread(background.background_mask, picture)
        mask_path = await media.write_png(mask, f"{stem}-mask")
        tuning = EditTuning(strength=1.0, negative_prompt=req.negative_prompt)
        spec = edits.edit_spec(source, req.prompt, model, tuning, mask_path)
        spec["params"] = {"homepilot": {"feature": "background", "action": "replace", "mask": rule}}
        job = await media.run(spec, "background", "Background replacement")
        return {
            "media": {"images": media.urls(request, generation.output_paths(job)), "videos": []},
            "action_used": req.action.value,
            "has_alpha": False,
            "original_size": [width, height],
        }

    router.include_router(uploads)
    return router


def _decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        return picture.copy()


async def _read_upload(request: Request, media: Media) -> tuple[InputImage, str | None]:
    """The multipart ``file`` checked as HomePilot's service does, staged; and ``instruction``."""
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", "file"), "msg": "Field required", "input": None}]
            )
        if upload.content_type not in ALLOWED_MIME:
            raise HTTPException(
                status_code=400,
                detail=f"Unsupported content type: {upload.content_type}. "
                f"Allowed: {', '.join(sorted(ALLOWED_MIME))}",
            )
        data = await upload.read()
        instruction = form.get("instruction")
        strip = str(form.get("strip_metadata") or "true").lower() not in ("false", "0", "no", "off")
    if not data:
        raise HTTPException(status_code=400, detail="Empty upload")
    await media.checked_size(data)
    if strip:
        data = await asyncio.to_thread(_without_metadata, data)
    return await media.stage_upload(data), instruction if isinstance(instruction, str) else None


def _without_metadata(data: bytes) -> bytes:
    """The image re-encoded as PNG (no EXIF), as HomePilot's ``strip_exif``."""
    with Image.open(io.BytesIO(data)) as picture:
        converted = picture if picture.mode in ("RGB", "RGBA") else picture.convert("RGBA")
        buffer = io.BytesIO()
        converted.save(buffer, format="PNG")
    return buffer.getvalue()
