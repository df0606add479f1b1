"""What both adapters do with files: name models the way backends want, sniff and write images.

Backends answer with encoded image bytes; the adapter writes them under the job's output folder
atomically (a temporary name, then a rename), so a reader never sees half an image, and reads
width and height from the header so no imaging library is needed in the sidecar.
"""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kubepilot_api.generationjob import OutputImage
from kubepilot_workers.executor.backend import ExecutionError

MAX_SEED = 2**32 - 1
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif"}


def pick_seed(seed: int) -> int:
    """The request's seed, or a random one for -1, so the seed used is always recorded."""
    return seed if seed >= 0 else random.randint(0, MAX_SEED)


def name_in_type_folder(path: str, folder: str) -> str:
    """A model path as a backend names it: relative to its type folder (``checkpoints``, ``loras``).

    ``/models/checkpoints/sd15/model.safetensors`` becomes ``sd15/model.safetensors``; a path
    with no such folder in it keeps only its file name, which the backend resolves or refuses.
    """
    parts = PurePosixPath(path).parts
    for position in range(len(parts) - 2, -1, -1):
        if parts[position] == folder:
            return "/".join(parts[position + 1 :])
    return PurePosixPath(path).name


def image_info(data: bytes) -> tuple[int, int, str]:
    """(width, height, MIME type) read from a PNG, JPEG, WebP or GIF header.

    Raises ExecutionError BAD_OUTPUT for bytes that are none of them.
    """
    size = _png_size(data) or _jpeg_size(data) or _webp_size(data) or _gif_size(data)
    if size is None:
        raise ExecutionError(
            "BAD_OUTPUT", "the backend returned bytes that are not a PNG, JPEG, WebP or GIF image"
        )
    return size


def _png_size(data: bytes) -> tuple[int, int, str] | None:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height, "image/png"
    return None


def _gif_size(data: bytes) -> tuple[int, int, str] | None:
    if len(data) >= 10 and data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return width, height, "image/gif"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int, str] | None:
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    # Walk the marker segments up to a start-of-frame one, which carries the size.
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height, "image/jpeg"
        position += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int, str] | None:
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF, "image/webp"
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "image/webp"
    if chunk == b"VP8X":
        return (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
            "image/webp",
        )
    return None


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        # mkstemp creates owner-only files; images are served from the shared volume by other pods.
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_output_image(
    output_dir: Path, index: int, data: bytes, *, seed: int, metadata: dict[str, Any]
) -> OutputImage:
    """Write one image (and its parameters as JSON beside it) and describe it."""
    width, height, mime = image_info(data)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        image_path = output_dir / f"image-{index:02d}{_EXTENSIONS[mime]}"
        metadata_path = output_dir / f"image-{index:02d}.json"
        _write_atomically(image_path, data)
        document = {**metadata, "index": index, "seed": seed, "width": width, "height": height}
        _write_atomically(metadata_path, json.dumps(document, indent=2, sort_keys=True).encode())
    except OSError as error:
        raise ExecutionError(
            "OUTPUT_WRITE_FAILED", f"could not write image {index} under {output_dir}: {error}"
        ) from error
    return OutputImage(
        index=index,
        path=str(image_path),
        width=width,
        height=height,
        seed=seed,
        mimeType=mime,
        metadataPath=str(metadata_path),
    )
