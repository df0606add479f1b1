"""Upscaling with ESRGAN-family models through ``spandrel`` (RealESRGAN, ESRGAN, Compact, SwinIR, ...).

``spandrel`` imports ``torchvision`` at import time for two architectures we never use for upscaling
(LaMa inpainting and RestoreFormer face restoration). Where torchvision is absent (our CPU test
environment must not install it), :func:`import_spandrel` puts placeholders in for the two functions
while spandrel's registry is imported and removes them afterwards; those two architectures then fail
if called, every upscaler works.

Large images are upscaled in tiles (:data:`DEFAULT_TILE` pixels per side at most), so memory stays
bounded whatever the input size: each tile is cut with an overlap margin around the part it keeps, and
only that centre part is pasted into the result. With a margin at least the model's receptive field
(a few pixels for Compact/ESRGAN-style convolution stacks), the tiles' borders never reach the pasted
part, so the result matches a one-pass upscale and shows no seams.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from kubepilot_workers.executor.backend import Cancelled, ExecutionError

log = logging.getLogger(__name__)

_import_lock = threading.Lock()

DEFAULT_TILE = 512
"""Largest tile side in input pixels, overlap included (a 4x model then makes 2048x2048 tiles)."""
DEFAULT_TILE_OVERLAP = 32
"""Input pixels of context kept around each tile's pasted part."""


def _unavailable(name: str) -> Callable[..., Any]:
    def fail(*args: object, **kwargs: object) -> Any:
        raise RuntimeError(f"torchvision.{name} is not installed; this spandrel architecture cannot run here")

    return fail


def import_spandrel() -> types.ModuleType:
    """Import spandrel, bridging a missing torchvision as described in the module docstring."""
    with _import_lock:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        if importlib.util.find_spec("torchvision") is not None:
            return importlib.import_module("spandrel")
        placeholders = {
            "torchvision": types.ModuleType("torchvision"),
            "torchvision.transforms": types.ModuleType("torchvision.transforms"),
            "torchvision.transforms.functional": types.ModuleType("torchvision.transforms.functional"),
        }
        functional = placeholders["torchvision.transforms.functional"]
        functional.InterpolationMode = type("InterpolationMode", (), {})  # type: ignore[attr-defined]
        functional.rotate = _unavailable("transforms.functional.rotate")  # type: ignore[attr-defined]
        functional.normalize = _unavailable("transforms.functional.normalize")  # type: ignore[attr-defined]
        sys.modules.update(placeholders)
        try:
            return importlib.import_module("spandrel")
        finally:
            # Other libraries probe for torchvision: they must go on seeing that it is absent.
            for name in placeholders:
                sys.modules.pop(name, None)


class Upscaler:
    """One loaded upscaling model on a device."""

    def __init__(
        self,
        name: str,
        path: Path,
        device: torch.device,
        dtype: torch.dtype,
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_TILE_OVERLAP,
    ) -> None:
        if overlap < 0 or tile <= 2 * overlap:
            raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({overlap})")
        spandrel = import_spandrel()
        try:
            descriptor = spandrel.ModelLoader(device=device).load_from_file(str(path))
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise ExecutionError("MODEL_LOAD_FAILED", f"could not load upscaler {name!r}: {error}") from error
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise ExecutionError("MODEL_LOAD_FAILED", f"{path.name} is not an image-to-image model")
        supports_half = descriptor.supports_half if dtype == torch.float16 else descriptor.supports_bfloat16
        self.dtype = dtype if dtype == torch.float32 or supports_half else torch.float32
        self.descriptor = descriptor.to(device=device, dtype=self.dtype).eval()
        self.name = name
        self.path = path
        self.device = device
        self.scale = int(descriptor.scale)
        self.tile = tile
        self.overlap = overlap

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        """One model pass: uint8 CHW on the CPU in, uint8 CHW on the CPU out."""
        batch = pixels.unsqueeze(0).to(device=self.device, dtype=self.dtype) / 255.0
        with torch.inference_mode():
            result: torch.Tensor = self.descriptor(batch)
        return (result[0].clamp(0, 1) * 255).round().to(torch.uint8).cpu()

    def _apply(self, image: Image.Image, should_stop: Callable[[], bool]) -> Image.Image:
        """One model pass over ``image``, tile by tile when it is larger than a tile."""
        raw = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
        pixels = raw.view(image.height, image.width, 3).permute(2, 0, 1)
        height, width = image.height, image.width
        if height <= self.tile and width <= self.tile:
            result = self._run(pixels)
        else:
            result = self._run_tiled(pixels, should_stop)
        array = result.permute(1, 2, 0).contiguous()
        return Image.frombytes("RGB", (array.shape[1], array.shape[0]), bytes(array.numpy().tobytes()))

    def _run_tiled(self, pixels: torch.Tensor, should_stop: Callable[[], bool]) -> torch.Tensor:
        height, width = pixels.shape[1], pixels.shape[2]
        core = self.tile - 2 * self.overlap
        scale = max(1, self.scale)
        result = torch.empty((3, height * scale, width * scale), dtype=torch.uint8)
        for top in range(0, height, core):
            for left in range(0, width, core):
                if should_stop():
                    raise Cancelled("upscale interrupted")
                bottom, right = min(top + core, height), min(left + core, width)
                # The tile: the part kept plus up to ``overlap`` pixels of real neighbours on each side.
                tile_top, tile_left = max(0, top - self.overlap), max(0, left - self.overlap)
                tile_bottom = min(height, bottom + self.overlap)
                tile_right = min(width, right + self.overlap)
                upscaled = self._run(pixels[:, tile_top:tile_bottom, tile_left:tile_right])
                kept = upscaled[
                    :,
                    (top - tile_top) * scale : (bottom - tile_top) * scale,
                    (left - tile_left) * scale : (right - tile_left) * scale,
                ]
                result[:, top * scale : bottom * scale, left * scale : right * scale] = kept
        return result

    def apply_once(self, image: Image.Image, should_stop: Callable[[], bool]) -> Image.Image:
        """One model pass at the model's own scale (ComfyUI's ImageUpscaleWithModel), tiled when large."""
        if should_stop():
            raise Cancelled("upscale interrupted")
        return self._apply(image.convert("RGB"), should_stop)

    def upscale(self, image: Image.Image, factor: float, should_stop: Callable[[], bool]) -> Image.Image:
        """Upscale by ``factor``: model passes until reaching it, then a Lanczos resize to the exact size.

        ``should_stop`` is checked before each pass and between tiles; it raises Cancelled when true.
        """
        target = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        current = image.convert("RGB")
        while current.width < target[0] or current.height < target[1]:
            if should_stop():
                raise Cancelled("upscale interrupted")
            current = self._apply(current, should_stop)
            if self.scale <= 1:
                break
        if current.size != target:
            current = current.resize(target, Image.Resampling.LANCZOS)
        return current


class UpscalerCache:
    """Upscaler names (``GeneratorConfig.upscalers``) to loaded models, loaded on first use.

    A name that is not configured may be an absolute path of a model file inside ``root`` (the models
    volume): the operator resolves a job's upscaler file to such a path, so a file nobody configured
    can still be used. Anything outside ``root`` (after resolving links) is refused.
    """

    def __init__(
        self,
        files: dict[str, str],
        device: torch.device,
        dtype: torch.dtype,
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_TILE_OVERLAP,
        root: str = "",
    ) -> None:
        self._files = dict(files)
        self._root = Path(root).resolve() if root else None
        self._device = device
        self._dtype = dtype
        self._tile = tile
        self._overlap = overlap
        self._loaded: dict[str, Upscaler] = {}

    def get(self, name: str) -> Upscaler:
        """The upscaler for ``name``; empty picks the only configured one. MODEL_NOT_FOUND if unknown."""
        if not name and len(self._files) == 1:
            name = next(iter(self._files))
        if name in self._loaded:
            return self._loaded[name]
        file = self._files.get(name) or self._file_in_root(name)
        if file is None:
            known = ", ".join(sorted(self._files)) or "none configured"
            raise ExecutionError("MODEL_NOT_FOUND", f"unknown upscaler {name!r} (known: {known})")
        path = Path(file)
        if not path.is_file():
            raise ExecutionError("MODEL_NOT_FOUND", f"upscaler {name!r}: file not found: {file}")
        upscaler = Upscaler(name, path, self._device, self._dtype, self._tile, self._overlap)
        self._loaded[name] = upscaler
        log.info("loaded upscaler %s (%s, x%d)", name, upscaler.descriptor.architecture.name, upscaler.scale)
        return upscaler

    def _file_in_root(self, name: str) -> str | None:
        if self._root is None or not name.startswith("/"):
            return None
        path = Path(name).resolve()
        return str(path) if path.is_relative_to(self._root) else None
