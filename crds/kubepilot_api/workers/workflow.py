"""ComfyUI API-format workflows of the standard shapes, translated into one GenerationRequest.

ComfyUI cannot run everywhere (not on the dev stack, not in CI), but the workflows its default
templates export are a handful of shapes our diffusers generator can run: this module reads such a
graph node by node and says which request it means. It is the reverse of the executor adapter's
``standard_graph`` (``kubepilot_workers.adapters.comfyui_graph``), and pure (stdlib and pydantic),
so the gateway refuses an unsupported graph up front with the same rules the generator applies.

Supported shapes (everything reachable from the output node must be one of these node types):

* txt2img: ``CheckpointLoaderSimple`` → ``CLIPTextEncode`` (positive, negative) →
  ``EmptyLatentImage`` → ``KSampler`` → ``VAEDecode`` → ``SaveImage`` / ``PreviewImage``;
* LoRAs: ``LoraLoader`` / ``LoraLoaderModelOnly`` chains between the checkpoint and the sampler;
  ``CLIPSetLastLayer`` on the prompts' CLIP chain (diffusers' ``clip_skip`` = -stop_at_clip_layer - 1);
* img2img: ``LoadImage`` → ``VAEEncode`` → (``RepeatLatentBatch``) → ``KSampler`` with
  ``denoise`` < 1 (the request's ``strength``);
* inpaint: the img2img latent with a ``SetLatentNoiseMask`` (the adapter's shape), or
  ``VAEEncodeForInpaint``; the mask from a ``LoadImageMask`` (its channel; ``alpha`` inverted as
  ComfyUI does) or the ``MASK`` output of a ``LoadImage`` (its inverted alpha). diffusers' inpaint
  pipeline runs it; ``grow_mask_by`` dilates the mask as ComfyUI does, but the masked pixels are not
  greyed before encoding (the pipeline masks the latents itself);
* upscale: ``LoadImage`` → ``ImageUpscaleWithModel`` (``UpscaleModelLoader``) and/or
  ``ImageScale`` / ``ImageScaleBy`` → ``SaveImage`` (one chain per image, as the adapter builds
  them), and the same image operations after a
  ``VAEDecode`` (generate, then upscale) or between a ``LoadImage`` and its ``VAEEncode``.

Decisions (document vs. product shapes):

* **Checkpoints**: ``ckpt_name`` is a path relative to ``<models_root>/checkpoints/`` (ComfyUI's
  own folder for it); a diffusers folder there works as well as a single file. Backslashes (graphs
  exported on Windows) become ``/``; an absolute name or a ``..`` step is refused. Every model,
  CLIP and VAE link must come from the same checkpoint: a graph mixing checkpoints cannot be
  expressed. The job's own ``spec.model`` is therefore ignored for a workflow.
* **LoRAs**: ``lora_name`` relative to ``<models_root>/loras/``; weight = ``strength_model`` (a
  LoRA only on the CLIP chain gets ``strength_clip``). diffusers applies one weight per LoRA to the
  UNet and the text encoder alike. A LoRA with both strengths 0 is skipped, as ComfyUI does.
* **Upscale models**: ``model_name`` relative to ``<models_root>/upscale_models/``; one upscale
  model per graph. The request's ``upscaler`` is its absolute path (the generator accepts a file
  inside the models volume).
* **Input images**: a ``LoadImage`` ``image`` name is relative to the inputs folder (ComfyUI's
  ``input/``): ``<inputs_root>/<name>``, where the generator passes ``<outputs volume>/inputs``.
  A trailing `` [input]`` annotation is dropped; other annotations, absolute names and ``..``
  steps are refused. Without ``inputs_root`` the name stays relative (validation only).
* **Samplers**: ComfyUI's ``sampler_name`` + ``scheduler`` map to the generator's names
  (``dpmpp_2m`` + ``karras`` → ``dpm++ 2m karras``). ``normal`` keeps the sampler's own spacing;
  ``simple``, ``sgm_uniform``, ``ddim_uniform`` and ``beta`` (diffusers' beta sigmas need scipy,
  which the generator image lacks) are run with that same spacing, and a sigma schedule
  (``karras``, ``exponential``) on a sampler without sigmas is dropped: both are
  recorded in ``params.workflow.approximations``. A sampler with no diffusers equivalent
  (``dpm_adaptive``, ``dpmpp_2s_ancestral``, ...) is refused, and so is ``lms`` (diffusers' LMS
  needs scipy).
* **Outputs**: when the graph has ``SaveImage`` nodes, ``PreviewImage`` nodes are ignored (ComfyUI
  keeps their images in its temp folder only). Several output nodes must each scale a loaded
  image (the adapter's multi-image upscale); anything else (two samplers feeding two saves, a
  second sampler after a decode: "hires fix") is refused, since one request runs one generation.
  ``filename_prefix`` (last path segment, characters outside ``[A-Za-z0-9._-]`` replaced) names
  the files: ``<prefix>_00001_.png`` as ComfyUI names them.
* **Seeds**: ComfyUI's range is 0..2**64-1 (its frontend randomizes over all of it), a
  GenerationJob's an int64: a seed above 2**63-1 runs as ``seed % 2**63``, noted in
  ``approximations``.
* ``denoise`` is an img2img request's ``strength``; on an ``EmptyLatentImage`` it must be 1 (a partial
  denoise of pure noise has no diffusers equivalent).

What the request's fields cannot say goes in ``params["workflow"]`` (see :data:`PARAMS_KEY`):
``outputNode`` (``outputNodes`` all of them), ``filenamePrefix``, ``inputOps`` (image operations
before ``VAEEncode``), ``outputOps`` (after ``VAEDecode``, or on the first loaded image),
``imageOps`` (upscale type: the operations of each of ``[image, *images]``), ``approximations``
(notes on what runs differently from ComfyUI), and for generations ``samplerNode`` (the KSampler,
reported as the progress' ``currentNode``), ``clipSkip`` (0: none) and, for inpaint,
``maskChannel`` and ``growMask``. An operation is
``{"op": "upscaleModel"}``, ``{"op": "scaleBy", "factor", "method"}`` or ``{"op": "scale",
"width", "height", "method", "crop"}`` (a 0 side keeps the aspect ratio, as in ComfyUI). For
img2img, width and height are the input image's size after ``inputOps`` (rounded down to a
multiple of 8 by the generator); the request's defaults stand until then.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.config import GenerationRequest, LoraFile

INVALID_WORKFLOW = "INVALID_WORKFLOW"
"""The error code of every refusal (the ComfyUI-Docker API's code for a bad workflow)."""
PARAMS_KEY = "workflow"
"""Key of ``GenerationRequest.params`` holding what the request's own fields cannot say."""
CHECKPOINTS_FOLDER = "checkpoints"
LORAS_FOLDER = "loras"
UPSCALE_MODELS_FOLDER = "upscale_models"
INPUT_ANNOTATION = "[input]"
DEFAULT_PREFIX = "ComfyUI"
COMFYUI_SEED_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1

# class_type → the socket type of each output, by index (links are checked against them).
_OUTPUTS: dict[str, tuple[str, ...]] = {
    "CheckpointLoaderSimple": ("MODEL", "CLIP", "VAE"),
    "LoraLoader": ("MODEL", "CLIP"),
    "LoraLoaderModelOnly": ("MODEL",),
    "CLIPSetLastLayer": ("CLIP",),
    "CLIPTextEncode": ("CONDITIONING",),
    "EmptyLatentImage": ("LATENT",),
    "LoadImage": ("IMAGE", "MASK"),
    "LoadImageMask": ("MASK",),
    "VAEEncode": ("LATENT",),
    "VAEEncodeForInpaint": ("LATENT",),
    "SetLatentNoiseMask": ("LATENT",),
    "RepeatLatentBatch": ("LATENT",),
    "KSampler": ("LATENT",),
    "VAEDecode": ("IMAGE",),
    "UpscaleModelLoader": ("UPSCALE_MODEL",),
    "ImageUpscaleWithModel": ("IMAGE",),
    "ImageScale": ("IMAGE",),
    "ImageScaleBy": ("IMAGE",),
    "SaveImage": (),
    "PreviewImage": (),
}
_SAVE = "SaveImage"
_PREVIEW = "PreviewImage"
_IMAGE_OPS = frozenset({"ImageUpscaleWithModel", "ImageScale", "ImageScaleBy"})

# ComfyUI sampler_name → (the generator's sampler name, whether it takes a sigma schedule).
_SAMPLERS: dict[str, tuple[str, bool]] = {
    "euler": ("euler", True),
    "euler_ancestral": ("euler a", False),
    "heun": ("heun", True),
    "dpm_2": ("dpm2", True),
    "dpm_2_ancestral": ("dpm2 a", True),
    "dpmpp_2m": ("dpm++ 2m", True),
    "dpmpp_2m_sde": ("dpm++ 2m sde", True),
    "dpmpp_2m_sde_gpu": ("dpm++ 2m sde", True),
    "dpmpp_sde": ("dpm++ sde", True),
    "dpmpp_sde_gpu": ("dpm++ sde", True),
    "ddim": ("ddim", False),
    "ddpm": ("ddpm", False),
    "uni_pc": ("unipc", True),
    "uni_pc_bh2": ("unipc", True),
    "deis": ("deis", True),
    "lcm": ("lcm", False),
}
_SIGMA_SCHEDULES = frozenset({"karras", "exponential"})
_SPACING_SCHEDULES = frozenset({"normal", "simple", "sgm_uniform", "ddim_uniform", "beta"})
_METHODS = frozenset({"nearest-exact", "bilinear", "area", "bicubic", "lanczos"})
_CROPS = frozenset({"disabled", "center"})
_MASK_CHANNELS = frozenset({"alpha", "red", "green", "blue"})
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class WorkflowError(ValueError):
    """A graph we cannot run: ``code`` is INVALID_WORKFLOW, ``node_types`` the unsupported ones (if any)."""

    def __init__(self, message: str, node_types: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.code = INVALID_WORKFLOW
        self.message = message
        self.node_types: list[str] = sorted(set(node_types))


def supported_node_types() -> frozenset[str]:
    """The class_type names :func:`translate` understands."""
    return frozenset(_OUTPUTS)


def generator_sampler_names() -> frozenset[str]:
    """Every sampler name :func:`translate` may put in a request (the generator must know them all)."""
    names = set()
    for name, sigmas in _SAMPLERS.values():
        names.add(name)
        if sigmas:
            names.update(f"{name} {schedule}" for schedule in _SIGMA_SCHEDULES)
    return frozenset(names)


def unsupported_node_types(graph: Mapping[str, Any]) -> list[str]:
    """Sorted, unique class_type names in ``graph`` that :func:`translate` does not support.

    Nodes without a string class_type are not counted here (:func:`translate` refuses them).
    """
    found = set()
    for node in graph.values():
        if isinstance(node, Mapping):
            class_type = node.get("class_type")
            if isinstance(class_type, str) and class_type not in _OUTPUTS:
                found.add(class_type)
    return sorted(found)


@dataclass(frozen=True)
class _Node:
    id: str
    class_type: str
    inputs: Mapping[str, Any]

    def label(self) -> str:
        return f"node {self.id} ({self.class_type})"


@dataclass
class _Generation:
    """What the sampler part of one output chain means."""

    type: GenerationType
    checkpoint: str
    prompt: str
    negative: str
    width: int
    height: int
    count: int
    seed: int
    steps: int
    cfg: float
    sampler: str
    strength: float
    loras: list[LoraFile]
    image: str
    mask: str
    input_ops: list[dict[str, Any]]
    approximations: list[str]
    extra: dict[str, Any]
    """More of ``params.workflow``: samplerNode, clipSkip and, for inpaint, maskChannel and growMask."""


@dataclass
class _Chain:
    """One output node's chain: a generation or a loaded image, then image operations."""

    output: _Node
    generation: _Generation | None
    image: str
    ops: list[dict[str, Any]] = field(default_factory=list)


class _Reader:
    def __init__(self, graph: Mapping[str, Any], models_root: str, inputs_root: str) -> None:
        self.models_root = models_root
        self.inputs_root = inputs_root
        self.nodes = _parse(graph)
        self.upscale_models: set[str] = set()

    # --- links and literals -------------------------------------------------------------------
    def link(self, node: _Node, name: str, socket: str) -> tuple[_Node, int]:
        """The node (and output index) feeding ``node``'s input ``name``, which must carry ``socket``."""
        value = node.inputs.get(name)
        if value is None:
            raise WorkflowError(f"{node.label()}: input {name!r} is missing")
        if not _is_link(value):
            raise WorkflowError(f"{node.label()}: input {name!r} must be a link to a {socket} output")
        source = self.nodes[str(value[0])]
        index = value[1]
        outputs = _OUTPUTS.get(source.class_type, ())
        if index >= len(outputs) or outputs[index] != socket:
            got = outputs[index] if index < len(outputs) else "no output"
            raise WorkflowError(
                f"{node.label()}: input {name!r} needs a {socket} but links to output {index} of "
                f"{source.label()} ({got})"
            )
        return source, index

    @staticmethod
    def value(node: _Node, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        """A literal input of ``kind`` (``default`` when absent and a default is given)."""
        value = node.inputs.get(name)
        if value is None:
            if default is not None:
                return default
            raise WorkflowError(f"{node.label()}: input {name!r} is missing")
        if _is_link(value):
            raise WorkflowError(f"{node.label()}: input {name!r} must be a value, not a link")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise WorkflowError(f"{node.label()}: input {name!r} has the wrong type ({value!r})")
        return value

    def number(self, node: _Node, name: str, default: float | None = None) -> float:
        return float(self.value(node, name, (int, float), default))

    def integer(self, node: _Node, name: str, default: int | None = None) -> int:
        number = self.value(node, name, (int, float), default)
        # Not float(number) == int(number): a float cannot hold every int (a seed near 2**64).
        if isinstance(number, float) and not number.is_integer():
            raise WorkflowError(f"{node.label()}: input {name!r} must be a whole number ({number!r})")
        return int(number)

    # --- the walk -------------------------------------------------------------------------------
    def outputs(self) -> list[_Node]:
        saves = [node for node in self.nodes.values() if node.class_type == _SAVE]
        if saves:
            return saves
        previews = [node for node in self.nodes.values() if node.class_type == _PREVIEW]
        if not previews:
            raise WorkflowError("the workflow has no output node (SaveImage or PreviewImage)")
        return previews

    def chain(self, output: _Node) -> _Chain:
        image, ops = self.image_chain(output, "images")
        if image.class_type == "LoadImage":
            return _Chain(output, None, self.input_image(image), ops)
        return _Chain(output, self.generation(image), "", ops)

    def image_chain(self, node: _Node, name: str) -> tuple[_Node, list[dict[str, Any]]]:
        """Walk IMAGE links back from ``node``: the source (LoadImage or VAEDecode) and the operations."""
        ops: list[dict[str, Any]] = []
        source, _ = self.link(node, name, "IMAGE")
        while source.class_type in _IMAGE_OPS:
            ops.insert(0, self.image_op(source))
            source, _ = self.link(source, "image", "IMAGE")
        if source.class_type not in ("LoadImage", "VAEDecode"):
            raise WorkflowError(f"{source.label()}: cannot be the source of an image here")
        return source, ops

    def image_op(self, node: _Node) -> dict[str, Any]:
        if node.class_type == "ImageUpscaleWithModel":
            loader, _ = self.link(node, "upscale_model", "UPSCALE_MODEL")
            name = self.value(loader, "model_name", str)
            self.upscale_models.add(self.models_path(loader, "model_name", UPSCALE_MODELS_FOLDER, name))
            return {"op": "upscaleModel"}
        method = self.value(node, "upscale_method", str, "nearest-exact")
        if method not in _METHODS:
            raise WorkflowError(f"{node.label()}: unknown upscale_method {method!r}")
        if node.class_type == "ImageScaleBy":
            factor = self.number(node, "scale_by")
            if not 0.01 <= factor <= 8:
                raise WorkflowError(f"{node.label()}: scale_by must be between 0.01 and 8 ({factor})")
            return {"op": "scaleBy", "factor": factor, "method": method}
        width, height = self.integer(node, "width"), self.integer(node, "height")
        crop = self.value(node, "crop", str, "disabled")
        if crop not in _CROPS:
            raise WorkflowError(f"{node.label()}: unknown crop {crop!r}")
        if not (0 <= width <= 16384 and 0 <= height <= 16384) or width == height == 0:
            raise WorkflowError(f"{node.label()}: width and height must be 0..16384, not both 0")
        return {"op": "scale", "width": width, "height": height, "method": method, "crop": crop}

    def generation(self, decode: _Node) -> _Generation:
        sampler, _ = self.link(decode, "samples", "LATENT")
        if sampler.class_type != "KSampler":
            raise WorkflowError(f"{decode.label()}: its samples must come from a KSampler")
        checkpoints: set[str] = set()
        checkpoints.add(self.vae(decode, "vae"))
        model_loras, model_checkpoint = self.model_chain(sampler)
        checkpoints.add(model_checkpoint)
        prompts: list[str] = []
        clip_loras: list[tuple[str, float]] = []
        clip_skips: set[int] = set()
        for name in ("positive", "negative"):
            encoder, _ = self.link(sampler, name, "CONDITIONING")
            if encoder.class_type != "CLIPTextEncode":
                raise WorkflowError(f"{sampler.label()}: {name} must come from a CLIPTextEncode")
            prompts.append(self.value(encoder, "text", str, ""))
            loras, checkpoint, clip_skip = self.clip_chain(encoder)
            checkpoints.add(checkpoint)
            clip_loras.extend(loras)
            clip_skips.add(clip_skip)
        if len(clip_skips) > 1:
            raise WorkflowError(f"{sampler.label()}: its two prompts skip different numbers of CLIP layers")
        kind, latent = self.latent(sampler, checkpoints)
        if len(checkpoints) > 1:
            raise WorkflowError(
                f"{sampler.label()}: its model, CLIP and VAE come from different checkpoints "
                f"({', '.join(sorted(checkpoints))}); one generation uses one checkpoint"
            )
        denoise = self.number(sampler, "denoise", 1.0)
        if not 0 < denoise <= 1:
            raise WorkflowError(f"{sampler.label()}: denoise must be in (0, 1] ({denoise})")
        if kind is GenerationType.TXT2IMG and denoise < 1:
            raise WorkflowError(
                f"{sampler.label()}: denoise {denoise} on an EmptyLatentImage cannot be run here; "
                "use 1.0, or a LoadImage → VAEEncode latent for img2img"
            )
        seed = self.integer(sampler, "seed", 0)
        if not 0 <= seed <= COMFYUI_SEED_MAX:
            raise WorkflowError(f"{sampler.label()}: seed must be in 0..{COMFYUI_SEED_MAX} ({seed})")
        sampler_name, approximations = self.sampler_name(sampler)
        if seed > INT64_MAX:  # ComfyUI's frontend randomizes over 64 bits: half its seeds are here
            folded = seed % (INT64_MAX + 1)
            approximations.append(f"seed {seed} is beyond a GenerationJob's int64: run as {folded}")
            seed = folded
        return _Generation(
            type=kind,
            checkpoint=next(iter(checkpoints)),
            prompt=prompts[0],
            negative=prompts[1],
            width=latent.get("width", 512),
            height=latent.get("height", 512),
            count=latent["count"],
            seed=seed,
            steps=self.integer(sampler, "steps"),
            cfg=self.number(sampler, "cfg"),
            sampler=sampler_name,
            strength=denoise,
            loras=_merge_loras(model_loras, clip_loras),
            image=latent.get("image", ""),
            mask=latent.get("mask", ""),
            input_ops=latent.get("ops", []),
            approximations=approximations,
            extra={"samplerNode": sampler.id, "clipSkip": clip_skips.pop(), **latent.get("extra", {})},
        )

    def latent(self, sampler: _Node, checkpoints: set[str]) -> tuple[GenerationType, dict[str, Any]]:
        node, _ = self.link(sampler, "latent_image", "LATENT")
        amount = 1
        mask: dict[str, Any] | None = None
        while node.class_type in ("RepeatLatentBatch", "SetLatentNoiseMask"):
            if node.class_type == "RepeatLatentBatch":
                amount *= self.integer(node, "amount")
            elif mask is not None:
                raise WorkflowError(f"{node.label()}: a second noise mask cannot be run here")
            else:
                mask = self.mask(node)
            node, _ = self.link(node, "samples", "LATENT")
        if node.class_type == "VAEEncodeForInpaint":
            if mask is not None:
                raise WorkflowError(f"{node.label()}: a second noise mask cannot be run here")
            grow = self.integer(node, "grow_mask_by", 6)
            if not 0 <= grow <= 64:
                raise WorkflowError(f"{node.label()}: grow_mask_by must be 0..64 ({grow})")
            mask = {**self.mask(node), "growMask": grow}
        if node.class_type == "EmptyLatentImage" and mask is not None:
            raise WorkflowError(f"{node.label()}: a noise mask on an empty latent cannot be run here")
        if node.class_type == "EmptyLatentImage":
            width, height = self.integer(node, "width"), self.integer(node, "height")
            if width % 8 or height % 8:
                raise WorkflowError(f"{node.label()}: width and height must be multiples of 8")
            return GenerationType.TXT2IMG, {
                "width": width,
                "height": height,
                "count": self.integer(node, "batch_size", 1) * amount,
            }
        if node.class_type in ("VAEEncode", "VAEEncodeForInpaint"):
            checkpoints.add(self.vae(node, "vae"))
            source, ops = self.image_chain(node, "pixels")
            if source.class_type != "LoadImage":
                raise WorkflowError(
                    f"{node.label()}: encodes the output of another sampler ({source.label()}); "
                    "chained samplers (hires fix) cannot be run here"
                )
            latent: dict[str, Any] = {"count": amount, "image": self.input_image(source), "ops": ops}
            if mask is None:
                return GenerationType.IMG2IMG, latent
            path = mask.pop("path")
            return GenerationType.INPAINT, {**latent, "mask": path, "extra": mask}
        raise WorkflowError(
            f"{sampler.label()}: latent_image must come from EmptyLatentImage or VAEEncode, "
            f"not {node.label()}"
        )

    def model_chain(self, sampler: _Node) -> tuple[list[tuple[str, float]], str]:
        loras: list[tuple[str, float]] = []
        node, _ = self.link(sampler, "model", "MODEL")
        while node.class_type in ("LoraLoader", "LoraLoaderModelOnly"):
            loras.insert(0, self.lora(node, "strength_model"))
            node, _ = self.link(node, "model", "MODEL")
        return loras, self.checkpoint(node)

    def clip_chain(self, encoder: _Node) -> tuple[list[tuple[str, float]], str, int]:
        """The LoRAs on a prompt's CLIP chain, its checkpoint, and the CLIP layers it skips."""
        loras: list[tuple[str, float]] = []
        skip: int | None = None
        node, _ = self.link(encoder, "clip", "CLIP")
        while node.class_type in ("LoraLoader", "CLIPSetLastLayer"):
            if node.class_type == "LoraLoader":
                loras.insert(0, self.lora(node, "strength_clip"))
            elif skip is None:  # the one nearest the prompt wins, as in ComfyUI
                last = self.integer(node, "stop_at_clip_layer", -1)
                if not -24 <= last <= -1:
                    raise WorkflowError(f"{node.label()}: stop_at_clip_layer must be -24..-1 ({last})")
                skip = -last - 1
            node, _ = self.link(node, "clip", "CLIP")
        return loras, self.checkpoint(node), skip or 0

    def mask(self, node: _Node) -> dict[str, Any]:
        """The file and channel of the MASK input of ``node`` (a LoadImageMask or a LoadImage's alpha)."""
        source, _ = self.link(node, "mask", "MASK")
        if source.class_type == "LoadImage":
            return {"path": self.input_image(source), "maskChannel": "alpha"}
        channel = self.value(source, "channel", str, "alpha")
        if channel not in _MASK_CHANNELS:
            raise WorkflowError(f"{source.label()}: unknown channel {channel!r}")
        return {"path": self.input_image(source), "maskChannel": channel}

    def vae(self, node: _Node, name: str) -> str:
        loader, _ = self.link(node, name, "VAE")
        return self.checkpoint(loader)

    def checkpoint(self, node: _Node) -> str:
        name = self.value(node, "ckpt_name", str)
        return self.models_path(node, "ckpt_name", CHECKPOINTS_FOLDER, name)

    def lora(self, node: _Node, strength: str) -> tuple[str, float]:
        path = self.models_path(node, "lora_name", LORAS_FOLDER, self.value(node, "lora_name", str))
        weights = (self.number(node, "strength_model", 1.0), self.number(node, "strength_clip", 1.0))
        if node.class_type == "LoraLoaderModelOnly":
            weights = (weights[0], weights[0])
        if weights == (0.0, 0.0):
            return path, 0.0
        return path, weights[0] if strength == "strength_model" else weights[1]

    def models_path(self, node: _Node, name: str, folder: str, value: str) -> str:
        relative = _contained(value)
        if relative is None:
            raise WorkflowError(f"{node.label()}: {name} {value!r} is not a name inside {folder}/")
        return posixpath.join(self.models_root, folder, relative)

    def input_image(self, node: _Node) -> str:
        value = self.value(node, "image", str).strip()
        if value.endswith("]"):
            name, _, annotation = value.rpartition(" [")
            if f"[{annotation}" != INPUT_ANNOTATION:
                raise WorkflowError(
                    f"{node.label()}: only images of the input folder can be loaded ({value!r})"
                )
            value = name
        relative = _contained(value)
        if relative is None:
            raise WorkflowError(f"{node.label()}: image {value!r} is not a name inside the inputs folder")
        return posixpath.join(self.inputs_root, relative) if self.inputs_root else relative

    def sampler_name(self, sampler: _Node) -> tuple[str, list[str]]:
        comfy = self.value(sampler, "sampler_name", str, "euler")
        schedule = self.value(sampler, "scheduler", str, "normal")
        entry = _SAMPLERS.get(comfy)
        if entry is None:
            known = ", ".join(sorted(_SAMPLERS))
            raise WorkflowError(f"{sampler.label()}: sampler {comfy!r} cannot be run here; known: {known}")
        name, takes_sigmas = entry
        notes: list[str] = []
        if schedule in _SIGMA_SCHEDULES:
            if takes_sigmas:
                return f"{name} {schedule}", notes
            notes.append(
                f"scheduler {schedule!r} is not available for {comfy!r}; its default spacing is used"
            )
        elif schedule in _SPACING_SCHEDULES:
            if schedule != "normal":
                notes.append(f"scheduler {schedule!r} runs as 'normal' (the sampler's own timestep spacing)")
        else:
            known = ", ".join(sorted(_SIGMA_SCHEDULES | _SPACING_SCHEDULES))
            raise WorkflowError(f"{sampler.label()}: unknown scheduler {schedule!r}; known: {known}")
        return name, notes


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int)


def _contained(name: str) -> str | None:
    """``name`` as a relative POSIX path that stays inside its folder, or None."""
    text = name.replace("\\", "/").strip()
    if not text or text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return None
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return posixpath.join(*parts)


def _parse(graph: Mapping[str, Any]) -> dict[str, _Node]:
    """Check the structure (nodes, links, no cycle) and the node types; the nodes by id."""
    if not isinstance(graph, Mapping):
        raise WorkflowError("a workflow is an object of nodes by id")
    if "nodes" in graph and "links" in graph:
        raise WorkflowError(
            "this is a UI-format workflow; export it from ComfyUI with 'Export (API)' and submit that graph"
        )
    if not graph:
        raise WorkflowError("the workflow has no nodes")
    nodes: dict[str, _Node] = {}
    for node_id, node in graph.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            raise WorkflowError(f"node {node_id!r} has no class_type")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            raise WorkflowError(f"node {node_id!r}: inputs must be an object")
        nodes[str(node_id)] = _Node(str(node_id), node["class_type"], inputs)
    unsupported = unsupported_node_types(graph)
    if unsupported:
        raise WorkflowError(
            "these node types cannot run without ComfyUI: " + ", ".join(unsupported), unsupported
        )
    for node in nodes.values():
        for name, value in node.inputs.items():
            if not isinstance(value, list):
                continue
            if not _is_link(value) or str(value[0]) not in nodes:
                raise WorkflowError(f"{node.label()}: input {name!r} links to a missing node ({value!r})")
            if isinstance(value[1], bool) or not isinstance(value[1], int) or value[1] < 0:
                raise WorkflowError(f"{node.label()}: input {name!r} has a bad output index ({value!r})")
    _check_acyclic(nodes)
    return nodes


def _check_acyclic(nodes: Mapping[str, _Node]) -> None:
    """Kahn's algorithm: nodes whose sources are all resolved peel off; what is left is a cycle."""
    waiting = {node_id: set(_sources(node)) for node_id, node in nodes.items()}
    users: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node_id, sources in waiting.items():
        for source in sources:
            users[source].append(node_id)
    ready = [node_id for node_id, sources in waiting.items() if not sources]
    done = 0
    while ready:
        node_id = ready.pop()
        done += 1
        for user in users[node_id]:
            waiting[user].discard(node_id)
            if not waiting[user]:
                ready.append(user)
    if done < len(nodes):
        stuck = sorted(node_id for node_id, sources in waiting.items() if sources)
        raise WorkflowError(f"the workflow has a cycle (through nodes {', '.join(stuck)})")


def _sources(node: _Node) -> list[str]:
    return [str(value[0]) for value in node.inputs.values() if _is_link(value)]


def _merge_loras(model: list[tuple[str, float]], clip: list[tuple[str, float]]) -> list[LoraFile]:
    """Model-chain LoRAs with their model strength, then CLIP-only ones; zero weights dropped."""
    weights: dict[str, float] = {}
    for path, weight in model:
        weights.setdefault(path, weight)
    for path, weight in clip:
        if weights.get(path, 0.0) == 0.0:
            weights[path] = weight
    return [LoraFile(path=path, weight=weight) for path, weight in weights.items() if weight != 0.0]


def _prefix(output: _Node) -> str:
    raw = output.inputs.get("filename_prefix", DEFAULT_PREFIX)
    text = raw if isinstance(raw, str) else DEFAULT_PREFIX
    last = text.replace("\\", "/").rstrip("/").rpartition("/")[2]
    cleaned = _UNSAFE_NAME.sub("_", last).strip("._")
    return cleaned[:64] or DEFAULT_PREFIX


def translate(graph: Mapping[str, Any], models_root: str, *, inputs_root: str = "") -> GenerationRequest:
    """The GenerationRequest an API-format ``graph`` of a standard shape means.

    ``models_root`` is the models volume's mount path (checkpoints, LoRAs and upscale models resolve
    under it), ``inputs_root`` the folder ``LoadImage`` names are relative to (see the module
    docstring). Raises :class:`WorkflowError` naming the unsupported node types, or saying what is
    malformed (dangling link, no output node, a cycle, a shape one request cannot express).
    """
    reader = _Reader(graph, models_root.rstrip("/") or "/", inputs_root.rstrip("/"))
    chains = [reader.chain(output) for output in reader.outputs()]
    first = chains[0]
    if len(chains) > 1 and any(chain.generation is not None for chain in chains):
        names = ", ".join(chain.output.label() for chain in chains)
        raise WorkflowError(
            f"the workflow has {len(chains)} output nodes ({names}); one job runs one generation "
            "(several outputs must each upscale or scale a loaded image)"
        )
    if len(reader.upscale_models) > 1:
        raise WorkflowError(
            "the workflow uses several upscale models (" + ", ".join(sorted(reader.upscale_models)) + ")"
        )
    upscaler = next(iter(reader.upscale_models), "")
    extra: dict[str, Any] = {
        "outputNode": first.output.id,
        "outputNodes": [chain.output.id for chain in chains],
        "filenamePrefix": _prefix(first.output),
        "outputOps": first.ops,
        "inputOps": [],
        "approximations": [],
    }
    fields: dict[str, Any]
    generation = first.generation
    if generation is None:
        if any(not chain.ops for chain in chains):
            raise WorkflowError("an output node saves a loaded image unchanged; nothing to run")
        extra["imageOps"] = [chain.ops for chain in chains]
        images = [chain.image for chain in chains]
        fields = {"type": GenerationType.UPSCALE, "image": images[0], "images": images[1:]}
    else:
        extra["inputOps"] = generation.input_ops
        extra["approximations"] = generation.approximations
        extra.update(generation.extra)
        fields = {
            "type": generation.type,
            "modelPath": generation.checkpoint,
            "prompt": generation.prompt,
            "negativePrompt": generation.negative,
            "width": generation.width,
            "height": generation.height,
            "count": generation.count,
            "seed": generation.seed,
            "steps": generation.steps,
            "cfgScale": generation.cfg,
            "sampler": generation.sampler,
            "loras": generation.loras,
            "image": generation.image,
        }
        if generation.type is not GenerationType.TXT2IMG:
            fields["strength"] = generation.strength
        if generation.type is GenerationType.INPAINT:
            fields["mask"] = generation.mask
    try:
        return GenerationRequest(
            **fields, upscaler=upscaler, workflow=dict(graph), params={PARAMS_KEY: extra}
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()
        )
        raise WorkflowError(f"the workflow asks for what a generation cannot do: {problems}") from error
