"""Writing generated images: PNGs carrying their parameters, plus a metadata JSON beside each one.

The PNG has two text chunks: ``parameters`` in the A1111 layout (so common image viewers and UIs
read it back) and ``kubepilot`` with the same data as JSON. Files are written under a temporary name
and renamed, so a reader never sees half an image.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from kubepilot_api.generationjob import OutputImage
from kubepilot_workers.executor.backend import ExecutionError

PARAMETERS_CHUNK = "parameters"
JSON_CHUNK = "kubepilot"


@dataclass
class ImageParameters:
    """How one image was made (written into its PNG and metadata file)."""

    job_id: str
    type: str
    index: int
    seed: int
    model: str
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 0
    cfg_scale: float = 0.0
    sampler: str = ""
    width: int = 0
    height: int = 0
    strength: float | None = None
    loras: list[dict[str, Any]] = field(default_factory=list)
    upscaler: str = ""
    upscale_factor: float | None = None
    source_image: str = ""

    def to_json(self) -> dict[str, Any]:
        """The metadata document (camelCase, like the CRDs)."""
        data: dict[str, Any] = {
            "jobId": self.job_id,
            "type": self.type,
            "index": self.index,
            "seed": self.seed,
            "model": self.model,
            "prompt": self.prompt,
            "negativePrompt": self.negative_prompt,
            "steps": self.steps,
            "cfgScale": self.cfg_scale,
            "sampler": self.sampler,
            "width": self.width,
            "height": self.height,
            "loras": self.loras,
        }
        if self.strength is not None:
            data["strength"] = self.strength
        if self.upscaler:
            data["upscaler"] = self.upscaler
            data["upscaleFactor"] = self.upscale_factor
        if self.source_image:
            data["sourceImage"] = self.source_image
        return data

    def to_a1111(self) -> str:
        """The A1111 ``parameters`` text: prompt, negative prompt, then ``Key: value`` pairs."""
        fields: list[tuple[str, object]] = []
        if self.type == "upscale":
            fields += [
                ("Postprocess upscaler", self.upscaler),
                ("Postprocess upscale by", self.upscale_factor),
            ]
        else:
            fields += [
                ("Steps", self.steps),
                ("Sampler", self.sampler),
                ("CFG scale", self.cfg_scale),
                ("Seed", self.seed),
            ]
        fields += [("Size", f"{self.width}x{self.height}"), ("Model", self.model)]
        if self.strength is not None:
            fields.append(("Denoising strength", self.strength))
        if self.loras:
            fields.append(
                (
                    "Lora weights",
                    ", ".join(f"{Path(lora['path']).stem}: {lora['weight']}" for lora in self.loras),
                )
            )
        pairs = ", ".join(f"{key}: {_a1111_value(value)}" for key, value in fields)
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(pairs)
        return "\n".join(lines)


def _a1111_value(value: object) -> str:
    text = str(value)
    # A1111 quotes values that would break its comma-separated list.
    return json.dumps(text) if ("," in text or ":" in text) else text


def _atomic_write(target: Path, write: Any) -> None:
    handle, staging_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    staging = Path(staging_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_image(image: Image.Image, output_dir: Path, parameters: ImageParameters) -> OutputImage:
    """Write ``image-NNN.png`` and ``image-NNN.json`` under ``output_dir``; return the OutputImage entry."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExecutionError("OUTPUT_FAILED", f"cannot create {output_dir}: {error}") from error
    stem = f"image-{parameters.index:03d}"
    png_path = output_dir / f"{stem}.png"
    metadata_path = output_dir / f"{stem}.json"
    document = parameters.to_json()
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, parameters.to_a1111())
    info.add_text(JSON_CHUNK, json.dumps(document, ensure_ascii=False))
    try:
        _atomic_write(png_path, lambda stream: image.save(stream, format="PNG", pnginfo=info))
        encoded = json.dumps(document, indent=2, ensure_ascii=False).encode()
        _atomic_write(metadata_path, lambda stream: stream.write(encoded))
    except OSError as error:
        raise ExecutionError("OUTPUT_FAILED", f"cannot write {png_path}: {error}") from error
    return OutputImage(
        index=parameters.index,
        path=str(png_path),
        width=image.width,
        height=image.height,
        seed=parameters.seed,
        metadataPath=str(metadata_path),
    )


def read_parameters(png_path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read back the ``parameters`` text and the JSON chunk of a PNG written by :func:`write_image`."""
    with Image.open(png_path) as image:
        text: dict[str, str] = dict(getattr(image, "text", {}))
    return text.get(PARAMETERS_CHUNK, ""), json.loads(text.get(JSON_CHUNK, "{}"))
