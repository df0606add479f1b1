"""ComfyUI workflows run by the diffusers generator: the graph translated, then run as what it means.

``kubepilot_api.workers.workflow.translate`` turns a graph of a standard shape into a GenerationRequest
(txt2img, img2img or upscale) plus the image operations the request's fields cannot say; this module
resolves where the graph's files are, checks they stay inside their volumes, and carries out those
operations with PIL and the upscale models, the way ComfyUI's nodes do:

* ``ImageScale`` / ``ImageScaleBy``: a resize with the node's method (``area`` is PIL's box filter,
  ``nearest-exact`` its nearest); a 0 side keeps the aspect ratio, ``crop: center`` first cuts the
  image to the target's aspect ratio around its centre.
* ``ImageUpscaleWithModel``: one pass of the upscale model at its own scale.
* ``VAEEncode`` crops an image to a multiple of 8 pixels per side around its centre, so an img2img
  workflow generates at its input image's size after those operations (no resize to 512x512).
* Masks (``LoadImageMask``, a ``LoadImage``'s MASK): see :func:`load_mask`; scaled to the image
  like ComfyUI's noise mask, grown by ``grow_mask_by`` pixels for ``VAEEncodeForInpaint``.
* ``CLIPSetLastLayer``: the pipeline's ``clip_skip``. The progress names the KSampler node as its
  ``currentNode`` (the ComfyUI-Docker WebSocket's ``workflow_progress`` node).

Input images (``LoadImage``) are read from ``<outputs volume>/inputs/``: the config's ``inputsDir``
(the operator sets it), or for a config without one, the folder found from the job's image folder
(``<outputs>/generations/<ns>/<job>``, the operator's layout). Files are named after the
SaveImage's ``filename_prefix`` as ComfyUI names them: ``<prefix>_00001_.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageFilter

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.config import GenerationRequest
from kubepilot_api.workers.workflow import INVALID_WORKFLOW, PARAMS_KEY, WorkflowError, translate
from kubepilot_workers.executor.backend import ExecutionError
from kubepilot_workers.generator.upscale import Upscaler

log = logging.getLogger(__name__)

INPUTS_FOLDER = "inputs"
"""The folder of the outputs volume that LoadImage names are relative to (ComfyUI's ``input/``)."""
GENERATIONS_FOLDER = "generations"
VAE_MULTIPLE = 8
MAX_SIDE = 4096

_RESAMPLING = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

Ops = list[dict[str, Any]]


def inputs_root(output_dir: Path) -> Path:
    """``<outputs volume>/inputs`` for a job folder ``<outputs volume>/generations/<ns>/<job>``.

    A folder of another layout (a test, a hand-written config) keeps its inputs in ``<folder>/inputs``.
    """
    parts = output_dir.parts
    if len(parts) >= 4 and parts[-3] == GENERATIONS_FOLDER:
        return output_dir.parents[2] / INPUTS_FOLDER
    return output_dir / INPUTS_FOLDER


@dataclass
class WorkflowPlan:
    """A workflow job as the generator runs it."""

    request: GenerationRequest
    """The translated request (txt2img, img2img or upscale), paths absolute."""
    prefix: str
    output_node: str
    output_nodes: list[str] = field(default_factory=list)
    """Every output node, one per image of an upscale (``[image, *images]``)."""
    input_ops: Ops = field(default_factory=list)
    output_ops: Ops = field(default_factory=list)
    image_ops: list[Ops] = field(default_factory=list)
    approximations: list[str] = field(default_factory=list)
    sampler_node: str = ""
    """The KSampler: the progress' ``currentNode`` while it samples."""
    clip_skip: int = 0
    mask_channel: str = "alpha"
    grow_mask: int = 0

    @property
    def uses_upscale_model(self) -> bool:
        """Whether any operation runs the upscale model (which is then loaded)."""
        every = [*self.input_ops, *self.output_ops, *(op for ops in self.image_ops for op in ops)]
        return any(op.get("op") == "upscaleModel" for op in every)

    def stem(self, index: int) -> str:
        """File name (without extension) of image ``index``, as ComfyUI's SaveImage names it."""
        return f"{self.prefix}_{index + 1:05d}_"


def plan(
    request: GenerationRequest, output_dir: Path, models_root: str, inputs_dir: str = ""
) -> WorkflowPlan:
    """Translate a ``workflow`` job's graph; ExecutionError INVALID_WORKFLOW when it cannot run here.

    ``inputs_dir`` is the config's ``inputsDir`` (the operator sets it); empty: :func:`inputs_root`.
    """
    if not request.workflow:
        raise ExecutionError(INVALID_WORKFLOW, "type workflow needs a workflow graph")
    if not models_root:
        raise ExecutionError("INVALID_CONFIG", "the generator's config has no modelsRoot")
    inputs = Path(inputs_dir) if inputs_dir else inputs_root(output_dir)
    try:
        translated = translate(request.workflow, models_root, inputs_root=str(inputs))
    except WorkflowError as error:
        raise ExecutionError(error.code, error.message) from error
    _check_inside(translated.modelPath, Path(models_root), "checkpoint")
    _check_inside(translated.upscaler, Path(models_root), "upscale model")
    for lora in translated.loras:
        _check_inside(lora.path, Path(models_root), "LoRA")
    for image in [translated.image, *translated.images]:
        _check_inside(image, inputs, "input image")
    extra: Mapping[str, Any] = (translated.params or {}).get(PARAMS_KEY, {})
    result = WorkflowPlan(
        request=translated,
        prefix=str(extra.get("filenamePrefix", "ComfyUI")),
        output_node=str(extra.get("outputNode", "")),
        output_nodes=[str(node) for node in extra.get("outputNodes", [])],
        input_ops=list(extra.get("inputOps", [])),
        output_ops=list(extra.get("outputOps", [])),
        image_ops=list(extra.get("imageOps", [])),
        approximations=list(extra.get("approximations", [])),
        sampler_node=str(extra.get("samplerNode", "")),
        clip_skip=int(extra.get("clipSkip", 0)),
        mask_channel=str(extra.get("maskChannel", "alpha")),
        grow_mask=int(extra.get("growMask", 0)),
    )
    for note in result.approximations:
        log.info("workflow: %s", note)
    return result


def _check_inside(path: str, root: Path, what: str) -> None:
    """Refuse a file that a link takes outside its volume (the names themselves were checked already)."""
    if path and not Path(path).resolve().is_relative_to(root.resolve()):
        raise ExecutionError(INVALID_WORKFLOW, f"the {what} {path} is outside {root}")


def apply_ops(
    image: Image.Image, ops: Ops, upscaler: Upscaler | None, should_stop: Callable[[], bool]
) -> Image.Image:
    """Carry out the image operations of a chain, in order (see the module docstring)."""
    for op in ops:
        match op.get("op"):
            case "upscaleModel":
                if upscaler is None:
                    raise ExecutionError("MODEL_NOT_FOUND", "the workflow's upscale model is not loaded")
                image = upscaler.apply_once(image, should_stop)
            case "scaleBy":
                factor = float(op["factor"])
                size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
                image = _resize(image, size, str(op.get("method", "nearest-exact")))
            case "scale":
                image = _scale(image, int(op["width"]), int(op["height"]), op)
            case other:
                raise ExecutionError(INVALID_WORKFLOW, f"unknown image operation {other!r}")
        if image.width > 4 * MAX_SIDE or image.height > 4 * MAX_SIDE:
            raise ExecutionError(INVALID_WORKFLOW, f"the workflow makes an image of {image.size}: too large")
    return image


def _resize(image: Image.Image, size: tuple[int, int], method: str) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, _RESAMPLING.get(method, Image.Resampling.NEAREST))


def _scale(image: Image.Image, width: int, height: int, op: Mapping[str, Any]) -> Image.Image:
    if width == 0:
        width = max(1, round(image.width * height / image.height))
    if height == 0:
        height = max(1, round(image.height * width / image.width))
    if op.get("crop") == "center":
        old, new = image.width / image.height, width / height
        if old > new:
            keep = round(image.width * new / old)
            left = (image.width - keep) // 2
            image = image.crop((left, 0, left + keep, image.height))
        elif old < new:
            keep = round(image.height * old / new)
            top = (image.height - keep) // 2
            image = image.crop((0, top, image.width, top + keep))
    return _resize(image, (width, height), str(op.get("method", "nearest-exact")))


def fit_for_vae(image: Image.Image) -> Image.Image:
    """Crop to a multiple of 8 pixels per side around the centre, as ComfyUI's VAEEncode does."""
    width = image.width // VAE_MULTIPLE * VAE_MULTIPLE
    height = image.height // VAE_MULTIPLE * VAE_MULTIPLE
    if not (VAE_MULTIPLE <= width <= MAX_SIDE and VAE_MULTIPLE <= height <= MAX_SIDE):
        raise ExecutionError(
            INVALID_WORKFLOW,
            f"the image to encode is {image.width}x{image.height}; img2img needs 8..{MAX_SIDE} pixels a side",
        )
    if (width, height) == image.size:
        return image
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def img2img_request(request: GenerationRequest, init_image: Image.Image) -> GenerationRequest:
    """The img2img or inpaint request at the size of its (prepared) init image."""
    if request.type not in (GenerationType.IMG2IMG, GenerationType.INPAINT):
        return request
    return request.model_copy(update={"width": init_image.width, "height": init_image.height})


def load_mask(path: str, channel: str, size: tuple[int, int], grow: int) -> Image.Image:
    """The inpaint mask (white = repaint) as ComfyUI reads it, at the init image's size.

    ``alpha`` is the inverted alpha channel (transparent = repaint; an image without alpha repaints
    nothing), ``red`` / ``green`` / ``blue`` the channel itself; ``grow`` dilates it by that many pixels.
    """
    try:
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
    except FileNotFoundError as error:
        raise ExecutionError("INPUT_NOT_FOUND", f"mask not found: {path}") from error
    except OSError as error:
        raise ExecutionError("INVALID_INPUT", f"mask is not a readable image: {path}") from error
    band = {"alpha": "A", "red": "R", "green": "G", "blue": "B"}.get(channel, "A")
    mask = rgba.getchannel(band)
    if band == "A":
        mask = ImageChops.invert(mask)
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    if grow > 0:
        mask = mask.filter(ImageFilter.MaxFilter(2 * grow + 1))
    return mask
