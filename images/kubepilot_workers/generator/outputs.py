"""Writing generated images: PNGs carrying their parameters, plus a metadata JSON beside each one.

The PNG has two text chunks: ``parameters`` in the A1111 layout (so common image viewers and UIs
read it back) and ``kubepilot`` with the same data as JSON. Files are written under a temporary name
and renamed, so a reader never sees half an image.

:class:`BackgroundWriter` writes a job's images on one background thread, so PNG encoding (tens of
milliseconds for a 512x512 image) overlaps with computing the next image instead of holding up the GPU.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from kubepilot_api.generationjob import OutputImage
from kubepilot_workers.executor.backend import ExecutionError

PARAMETERS_CHUNK = "parameters"
JSON_CHUNK = "kubepilot"
COMFYUI_PROMPT_CHUNK = "prompt"
"""ComfyUI's chunk with the API-format graph that made the image (dropping the PNG on ComfyUI reloads it)."""


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
    workflow_node: str = ""
    """The ComfyUI output node (SaveImage) this image stands for, when a workflow made it."""
    workflow_graph: dict[str, Any] | None = None
    """That workflow's API-format graph, written in the PNG's ``prompt`` chunk as ComfyUI does."""

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
        if self.workflow_node:
            data["workflowNode"] = self.workflow_node
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
        # mkstemp creates owner-only files; images are served from the shared volume by other pods.
        staging.chmod(0o644)
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_image(
    image: Image.Image, output_dir: Path, parameters: ImageParameters, stem: str = ""
) -> OutputImage:
    """Write ``image-NNN.png`` and ``image-NNN.json`` under ``output_dir``; return the OutputImage entry.

    ``stem`` names the files instead (the trainer's samples are named by step and prompt).
    """
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExecutionError("OUTPUT_FAILED", f"cannot create {output_dir}: {error}") from error
    stem = stem or f"image-{parameters.index:03d}"
    png_path = output_dir / f"{stem}.png"
    metadata_path = output_dir / f"{stem}.json"
    document = parameters.to_json()
    info = PngInfo()
    info.add_text(PARAMETERS_CHUNK, parameters.to_a1111())
    info.add_text(JSON_CHUNK, json.dumps(document, ensure_ascii=False))
    if parameters.workflow_graph is not None:
        info.add_text(COMFYUI_PROMPT_CHUNK, json.dumps(parameters.workflow_graph, ensure_ascii=False))
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


class BackgroundWriter:
    """Writes images with :func:`write_image` on one background thread, in the order they were submitted.

    Use as a context manager: leaving the block always waits for the writes still pending, so files of
    images that were computed are on disk even when the job stops early (cancelled or failed). A write
    that fails makes every later write skip and is raised by :meth:`raise_failure` (the caller checks
    between steps, to stop computing images that could not be saved) and by :meth:`finish`.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-writer")
        self._pending: list[Future[OutputImage]] = []
        self._failure: BaseException | None = None

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # wait=True: an image computed before a cancel still ends up on disk.
        self._executor.shutdown(wait=True)

    def submit(
        self,
        image: Image.Image,
        parameters: ImageParameters,
        on_written: Callable[[OutputImage], None] | None = None,
        stem: str = "",
    ) -> None:
        """Queue ``image``; once it is on disk, ``on_written`` gets its OutputImage (on the writer thread).

        ``stem`` names the files instead of ``image-NNN`` (see :func:`write_image`).
        """
        self.raise_failure()
        self._pending.append(self._executor.submit(self._write, image, parameters, on_written, stem))

    def raise_failure(self) -> None:
        """Raise the error of a write that failed already; nothing while all writes succeed."""
        failure = self._failure
        if failure is not None:
            raise failure

    def finish(self) -> list[OutputImage]:
        """Wait for every queued write; their OutputImages in submission order, or the first failure."""
        outputs = [future.result() for future in self._pending]
        self.raise_failure()
        return outputs

    def _write(
        self,
        image: Image.Image,
        parameters: ImageParameters,
        on_written: Callable[[OutputImage], None] | None,
        stem: str = "",
    ) -> OutputImage:
        if self._failure is not None:
            message = f"image {parameters.index} not written: an earlier image failed"
            raise ExecutionError("OUTPUT_FAILED", message)
        try:
            output = write_image(image, self.output_dir, parameters, stem)
        except BaseException as error:
            self._failure = error
            raise
        if on_written is not None:
            on_written(output)
        return output


def read_parameters(png_path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read back the ``parameters`` text and the JSON chunk of a PNG written by :func:`write_image`."""
    with Image.open(png_path) as image:
        text: dict[str, str] = dict(getattr(image, "text", {}))
    return text.get(PARAMETERS_CHUNK, ""), json.loads(text.get(JSON_CHUNK, "{}"))
