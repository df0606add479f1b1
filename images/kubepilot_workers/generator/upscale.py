"""Upscaling with ESRGAN-family models through ``spandrel`` (RealESRGAN, ESRGAN, Compact, SwinIR, ...).

``spandrel`` imports ``torchvision`` at import time for two architectures we never use for upscaling
(LaMa inpainting and RestoreFormer face restoration). Where torchvision is absent (our CPU test
environment must not install it), :func:`import_spandrel` puts placeholders in for the two functions
while spandrel's registry is imported and removes them afterwards; those two architectures then fail
if called, every upscaler works.
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

    def __init__(self, name: str, path: Path, device: torch.device, dtype: torch.dtype) -> None:
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

    def _apply(self, image: Image.Image) -> Image.Image:
        pixels = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
        batch = pixels.view(image.height, image.width, 3).permute(2, 0, 1).unsqueeze(0)
        batch = batch.to(device=self.device, dtype=self.dtype) / 255.0
        with torch.inference_mode():
            result = self.descriptor(batch)
        array = (result[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().contiguous()
        height, width = array.shape[0], array.shape[1]
        return Image.frombytes("RGB", (width, height), bytes(array.numpy().tobytes()))

    def upscale(self, image: Image.Image, factor: float, should_stop: Callable[[], bool]) -> Image.Image:
        """Upscale by ``factor``: model passes until reaching it, then a Lanczos resize to the exact size."""
        target = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        current = image.convert("RGB")
        while current.width < target[0] or current.height < target[1]:
            if should_stop():
                raise Cancelled("upscale interrupted")
            current = self._apply(current)
            if self.scale <= 1:
                break
        if current.size != target:
            current = current.resize(target, Image.Resampling.LANCZOS)
        return current


class UpscalerCache:
    """Upscaler names (``GeneratorConfig.upscalers``) to loaded models, loaded on first use."""

    def __init__(self, files: dict[str, str], device: torch.device, dtype: torch.dtype) -> None:
        self._files = dict(files)
        self._device = device
        self._dtype = dtype
        self._loaded: dict[str, Upscaler] = {}

    def get(self, name: str) -> Upscaler:
        """The upscaler for ``name``; empty picks the only configured one. MODEL_NOT_FOUND if unknown."""
        if not name and len(self._files) == 1:
            name = next(iter(self._files))
        if name in self._loaded:
            return self._loaded[name]
        file = self._files.get(name)
        if file is None:
            known = ", ".join(sorted(self._files)) or "none configured"
            raise ExecutionError("MODEL_NOT_FOUND", f"unknown upscaler {name!r} (known: {known})")
        path = Path(file)
        if not path.is_file():
            raise ExecutionError("MODEL_NOT_FOUND", f"upscaler {name!r}: file not found: {file}")
        upscaler = Upscaler(name, path, self._device, self._dtype)
        self._loaded[name] = upscaler
        log.info("loaded upscaler %s (%s, x%d)", name, upscaler.descriptor.architecture.name, upscaler.scale)
        return upscaler
