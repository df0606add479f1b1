"""What every HomePilot image endpoint shares: reading an input image, staging it on the outputs
volume, running a GenerationJob to its end, and answering its images as URLs.

- ``Media.input_image`` reads the image an ``image_url`` names: a ``/files/kubepilot/...`` URL of
  ours is read in place from the served folders (``generation.served_file``: no ``..``, no
  symlink out); an application ``/files/...`` URL is fetched from the application's
  ServiceInstance only (never another host: no SSRF) and staged under ``homepilot/inputs``.
  Both are size-checked (``maxInputBytes``, 413) and must decode as an image (Pillow's
  ``verify``, decompression-bomb guard: 400 "not an image").
- ``Media.stage_upload`` writes an uploaded file (bytes already read within the limit) the same
  way, for the edit sessions' ``/image``.
- ``Media.run`` creates the job (``generation.run_job``) and raises HomePilot's 500 ``"<Feature>
  workflow failed: <why>"`` when it did not complete; ``Media.urls`` are its images' absolute URLs.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import HTTPException, Request
from PIL import Image, UnidentifiedImageError

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.homepilot import generation
from kubepilot_gateway.profiles.homepilot.config import HomePilotSettings
from kubepilot_gateway.profiles.homepilot.proxy import AppProxy

JsonObject = dict[str, Any]


class InputImage:
    """An input image: its path relative to the outputs volume, its size and its bytes."""

    def __init__(self, relative: str, size: tuple[int, int], data: bytes) -> None:
        self.relative = relative
        self.size = size
        self.data = data


class Media:
    """Input images, jobs and output URLs for the profile's image endpoints."""

    def __init__(self, ctx: GatewayContext, settings: HomePilotSettings, proxy: AppProxy) -> None:
        self.ctx = ctx
        self.settings = settings
        self.images = settings.images
        self.proxy = proxy
        self.models_root = Path(ctx.settings.volumes.models)
        self.outputs_root = Path(ctx.settings.volumes.outputs)

    async def input_image(self, image_url: str) -> InputImage:
        """The image ``image_url`` names (see the module docstring); 400/404/413/502 otherwise."""
        relative = generation.relative_from_url(image_url)
        if relative is not None:
            return await self.served_image(relative, image_url)
        path = urlsplit(image_url).path
        if not path.startswith("/files/") or ".." in path.split("/"):
            raise HTTPException(
                status_code=400,
                detail="image_url must be a /files URL of this server (other hosts are not fetched)",
            )
        data = await self.fetch_app_file(path)
        return await self.stage_upload(data)

    async def served_image(self, relative: str, name: str) -> InputImage:
        """An image of the served folders of the outputs volume (``name`` for the error)."""
        found = await asyncio.to_thread(generation.served_file, self.outputs_root, relative)
        if found is None:
            raise HTTPException(status_code=400, detail=f"Cannot read image: {name} not found")
        data = await asyncio.to_thread(_read_limited, found, self.images.maxInputBytes)
        if data is None:
            raise HTTPException(status_code=413, detail="Image too large")
        return InputImage(relative, await self.checked_size(data), data)

    async def stage_upload(self, data: bytes) -> InputImage:
        """Check ``data`` is an image and write it under ``homepilot/inputs`` (a fresh name)."""
        size = await self.checked_size(data)
        relative = f"{generation.STAGING}/{uuid.uuid4().hex}.png"
        await asyncio.to_thread(write_atomic, self.outputs_root / relative, data)
        return InputImage(relative, size, data)

    async def write_png(self, image: Image.Image, stem: str) -> str:
        """Save ``image`` as ``<stem>.png`` under the outputs volume; the relative path."""
        relative = f"{stem}.png"
        await asyncio.to_thread(_save_png, image, self.outputs_root / relative)
        return relative

    async def checked_size(self, data: bytes) -> tuple[int, int]:
        try:
            return await asyncio.to_thread(image_size, data)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise HTTPException(
                status_code=400, detail="Cannot read image dimensions: not an image"
            ) from error

    async def fetch_app_file(self, path: str) -> bytes:
        """GET the application's ``/files/...`` (streamed, at most ``maxInputBytes``)."""
        base = self.proxy.url()
        client = self.proxy.http.client()
        try:
            url = httpx.URL(base.rstrip("/") + path)
        except httpx.InvalidURL as error:
            raise HTTPException(status_code=400, detail="image_url is not a valid URL") from error
        try:
            async with client.stream(
                "GET", url, timeout=self.settings.proxy.timeout_for("/upload")
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
                    if size > self.images.maxInputBytes:
                        raise HTTPException(status_code=413, detail="Image too large")
                    chunks.append(chunk)
        except httpx.HTTPError as error:
            raise HTTPException(
                status_code=502, detail="The HomePilot application could not be reached"
            ) from error
        return b"".join(chunks)

    async def run(
        self, spec: JsonObject, feature: str, failure: str, labels: dict[str, str] | None = None
    ) -> JsonObject:
        """Create the job, wait for it; the finished job, or HomePilot's 500 naming ``failure``."""
        body = generation.job_body(spec, feature, self.images)
        body["metadata"]["labels"].update(labels or {})
        job = await generation.run_job(self.ctx, body, self.images.waitSeconds)
        phase = generation.phase_of(job)
        if phase != "Completed":
            reason = (
                generation.failure_of(job)
                if phase in generation.TERMINAL
                else f"still {phase or 'Pending'} after {self.images.waitSeconds:g}s "
                f"(GenerationJob {job['metadata']['name']})"
            )
            raise HTTPException(status_code=500, detail=f"{failure} workflow failed: {reason}")
        if not generation.output_paths(job):
            raise HTTPException(status_code=500, detail="No image returned from workflow")
        return job

    @staticmethod
    def urls(request: Request, relatives: list[str]) -> list[str]:
        return [generation.file_url(str(request.base_url), relative) for relative in relatives]


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image; raises when ``data`` is not one."""
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return int(width), int(height)


def _read_limited(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``limit``."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return None if len(data) > limit else data


def write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    partial.write_bytes(data)
    partial.replace(target)


def _save_png(image: Image.Image, target: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomic(target, buffer.getvalue())


def multiple_of_8(size: int, limit: int) -> int:
    """``size`` rounded to the nearest multiple of 8 the generator takes, within 64..``limit``."""
    rounded = (size + 4) // 8 * 8
    return max(64, min(limit - limit % 8, rounded))
