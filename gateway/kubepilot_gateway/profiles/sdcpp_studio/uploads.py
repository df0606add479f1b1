"""Input images: read from a request (multipart file or base64 JSON), checked, staged on the outputs volume.

Why the checks sit here: a GenerationJob names its input images as paths on the outputs volume, so
the gateway writes every upload there itself, under a name it chooses (``<uuid>.png`` in the
profile's inputs area), never under a name or path the client sent. Each upload is

- **bounded**: a request body larger than ``maxRequestBytes`` is refused while it streams in, one
  image larger than ``maxUploadBytes`` (the product's 50 MB multer limit by default) is refused,
  and so is one of more than ``maxUploadPixels`` pixels (before Pillow decodes it: no
  decompression bomb);
- **an image**: Pillow must open and fully decode it as PNG, JPEG or WebP (the product's
  ``jpeg|jpg|png|webp`` filter, checked on the bytes rather than the file name);
- **re-encoded as PNG** (the product's ``ensurePngFormat``), so what the generator reads is a plain
  image without the client's metadata.

Refusals are the product's 400 ``{"error": ...}``: "Image file is required", "File too large",
"Only image files are allowed" (plus a ``detail`` saying why).

:func:`check_image` and :func:`decode_base64` are pure; :class:`Stager` and :func:`read_body` do
the I/O.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import uuid
import warnings
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from kubepilot_gateway.profiles.sdcpp_studio.jobs import BadRequest, parse_json

JsonObject = dict[str, Any]

IMAGE_REQUIRED = "Image file is required"
TOO_LARGE = "File too large"
NOT_AN_IMAGE = "Only image files are allowed"
"""The product's texts."""
FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
MAX_FILES = 4
MAX_FIELDS = 64


@dataclass(frozen=True)
class CheckedImage:
    """An upload that passed the checks, re-encoded as PNG."""

    png: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_request_bytes: int


def check_image(data: bytes, limits: Limits, what: str = "image") -> CheckedImage:
    """``data`` as a checked PNG; BadRequest when it is too large or not a readable image."""
    if not data:
        raise BadRequest(IMAGE_REQUIRED, f"{what} is empty")
    if len(data) > limits.max_bytes:
        raise BadRequest(TOO_LARGE, f"{what} is larger than {limits.max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                if opened.format not in FORMATS:
                    raise BadRequest(
                        NOT_AN_IMAGE, f"{what} is {opened.format or 'unknown'}, not PNG, JPEG or WebP"
                    )
                width, height = opened.size
                if width < 1 or height < 1 or width * height > limits.max_pixels:
                    raise BadRequest(
                        TOO_LARGE, f"{what} is {width}x{height}; at most {limits.max_pixels} pixels"
                    )
                opened.load()
                mode = opened.mode
                keeps_alpha = "A" in mode or "transparency" in opened.info
                image = (
                    opened
                    if mode in ("RGB", "RGBA", "L")
                    else opened.convert("RGBA" if keeps_alpha else "RGB")
                )
                out = io.BytesIO()
                image.save(out, format="PNG")
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(TOO_LARGE, f"{what} has too many pixels") from None
    except UnidentifiedImageError as error:
        raise BadRequest(
            NOT_AN_IMAGE, f"{what} is not an image Pillow can read ({type(error).__name__})"
        ) from None
    except (OSError, ValueError, SyntaxError) as error:  # truncated or corrupt image data
        raise BadRequest(NOT_AN_IMAGE, f"{what} could not be decoded: {error}") from None
    return CheckedImage(png=out.getvalue(), width=width, height=height)


def decode_base64(value: Any, limits: Limits, what: str = "image") -> bytes:
    """A base64 image as A1111 clients send it (a bare string or a ``data:`` URL) → its bytes."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(IMAGE_REQUIRED, f"{what} must be a base64 string")
    text = value.strip()
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    if len(text) * 3 // 4 > limits.max_bytes + 3:
        raise BadRequest(TOO_LARGE, f"{what} is larger than {limits.max_bytes} bytes")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid image data", f"{what} is not valid base64") from None


# -- reading a request --------------------------------------------------------------------------


@dataclass
class Body:
    """A request's fields and files, from multipart, a URL-encoded form or a JSON object."""

    fields: JsonObject
    files: dict[str, bytes]
    json: bool


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise BadRequest(TOO_LARGE, f"the request is larger than {limit} bytes")
        yield chunk


async def read_body(request: Request, limits: Limits) -> Body:
    """The request's fields and uploaded files, its size bounded while it streams in.

    Multipart files are read only up to one byte past ``max_bytes`` (enough to refuse them); a
    file field's client file name is ignored (the gateway names what it stores)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise BadRequest(TOO_LARGE, f"the request is larger than {limits.max_request_bytes} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    stream = _limited(request.stream(), limits.max_request_bytes)
    if content_type == "multipart/form-data":
        parser = MultiPartParser(request.headers, stream, max_files=MAX_FILES, max_fields=MAX_FIELDS)
        try:
            form = await parser.parse()
        except MultiPartException as error:
            raise BadRequest("Invalid multipart body", error.message) from None
        fields: JsonObject = {}
        files: dict[str, bytes] = {}
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key not in files:
                        files[key] = await value.read(limits.max_bytes + 1)
                elif key not in fields:
                    fields[key] = value
        finally:
            await form.close()
        return Body(fields, files, json=False)
    raw = b"".join([chunk async for chunk in stream])
    if content_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return Body(dict(reversed(pairs)), {}, json=False)
    if not raw.strip():
        return Body({}, {}, json=True)
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise BadRequest("Invalid JSON body", "the body must be a JSON object")
    return Body(value, {}, json=True)


def image_bytes(body: Body, name: str, limits: Limits, *, required: bool) -> bytes | None:
    """The raw bytes of image field ``name``: an uploaded file, or base64 text in the field."""
    if name in body.files:
        data = body.files[name]
        if not data:
            if required:
                raise BadRequest(IMAGE_REQUIRED, f"{name} is empty")
            return None
        return data
    value = body.fields.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(IMAGE_REQUIRED, f"the {name} field is missing")
        return None
    return decode_base64(value, limits, name)


# -- the inputs area ------------------------------------------------------------------------------


class Stager:
    """Writes checked images into the inputs area of the outputs volume, under gateway-chosen names."""

    def __init__(self, outputs_root: Path, inputs_dir: str) -> None:
        self.outputs_root = outputs_root
        self.inputs_dir = inputs_dir.strip("/")

    def relative_for(self, suffix: str = "") -> str:
        return f"{self.inputs_dir}/{uuid.uuid4()}{suffix}.png"

    def _write(self, relative: str, data: bytes) -> None:
        target = self.outputs_root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.part")
        temporary.write_bytes(data)
        temporary.replace(target)

    async def stage(self, image: CheckedImage, suffix: str = "") -> str:
        """Write ``image``; its path relative to the outputs volume (what ``inputs.*`` names)."""
        relative = self.relative_for(suffix)
        await asyncio.to_thread(self._write, relative, image.png)
        return relative

    def owns(self, relative: str) -> bool:
        """Whether ``relative`` is a file this stager wrote (directly in the inputs area)."""
        head, _, name = relative.rpartition("/")
        return head == self.inputs_dir and name.endswith(".png") and "/" not in name and ".." not in name

    def remove(self, relatives: list[str]) -> None:
        """Remove staged inputs (only files of the inputs area; missing ones are fine)."""
        for relative in relatives:
            if self.owns(relative):
                with contextlib.suppress(OSError):
                    (self.outputs_root / relative).unlink()
