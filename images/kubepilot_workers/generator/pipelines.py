"""Loading diffusers pipelines once and deriving the img2img / inpaint ones from the same components.

The cache holds one model at a time (one GPU's worth): asking for another model path drops the old
one first. img2img and inpaint pipelines come from ``from_pipe``, so they share the loaded weights
instead of loading them again.

Single-file checkpoints (``.safetensors`` / ``.ckpt`` in the original Stable Diffusion layout) need the
diffusers configs of their model family (UNet/VAE/text-encoder configs, tokenizer, scheduler) besides
the weights. diffusers fetches those from the Hugging Face hub unless told where they are, and the
generator usually runs without network access. So for ``model.safetensors`` we look for a config folder
``model.safetensors.config/`` beside it: a diffusers model folder (``model_index.json`` and the
per-component configs and tokenizer files; weights there are not needed and not read). When it is there
the model loads fully offline, as the pipeline class its ``model_index.json`` names; without it diffusers
guesses the family and needs the hub (or a populated Hugging Face cache).
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

from kubepilot_api.workers.config import LoraFile
from kubepilot_workers.executor.backend import ExecutionError

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SINGLE_FILE_CONFIG_SUFFIX = ".config"


class PipelineKind(StrEnum):
    """Which diffusers task a pipeline serves."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"


# Sampler names as users write them (A1111 / ComfyUI style), normalised, to diffusers schedulers.
_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "plms": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler a": ("EulerAncestralDiscreteScheduler", {}),
    "euler ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++ 2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp 2m": ("DPMSolverMultistepScheduler", {}),
    "dpm++ 2m karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp 2m karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++ sde": ("DPMSolverSinglestepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm++ 2m sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "deis": ("DEISMultistepScheduler", {}),
}
# The sigma schedules of ComfyUI's schedulers (workflows name them, e.g. dpmpp_2m + karras) on every
# scheduler that has them: "<sampler> karras" and "<sampler> exponential".
_SIGMA_SAMPLERS = (
    "euler",
    "heun",
    "dpm2",
    "dpm2 a",
    "dpm++ 2m",
    "dpm++ 2m sde",
    "dpm++ sde",
    "unipc",
    "deis",
)
for _name in _SIGMA_SAMPLERS:
    _class_name, _overrides = _SAMPLERS[_name]
    for _schedule in ("karras", "exponential"):
        _SAMPLERS.setdefault(
            f"{_name} {_schedule}", (_class_name, {**_overrides, f"use_{_schedule}_sigmas": True})
        )


def sampler_names() -> list[str]:
    """The sampler names a request may use (case, ``_`` and ``-`` do not matter)."""
    return sorted(_SAMPLERS)


def _normalise_sampler(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks the first CUDA device when there is one, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ExecutionError("INVALID_CONFIG", f"unknown torch device {requested!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExecutionError(
            "DEVICE_UNAVAILABLE", f"device {requested!r} requested but CUDA is not available"
        )
    return device


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on GPUs and float32 on the CPU (where half precision is slow)."""
    if requested == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[requested]


def _unet_in_channels(model_dir: Path) -> int:
    try:
        config = json.loads((model_dir / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return 4
    value = config.get("in_channels", 4)
    return value if isinstance(value, int) else 4


def single_file_config_dir(model_file: Path) -> Path:
    """The diffusers config folder of a single-file checkpoint: ``<file name>.config`` beside it."""
    return model_file.with_name(model_file.name + SINGLE_FILE_CONFIG_SUFFIX)


def _load_single_file(path: Path, dtype: torch.dtype) -> Any:
    import diffusers

    config_dir = single_file_config_dir(path)
    if not (config_dir / "model_index.json").is_file():
        try:
            return diffusers.StableDiffusionPipeline.from_single_file(str(path), dtype=dtype)
        except OSError as error:
            raise ExecutionError(
                "MODEL_LOAD_FAILED",
                f"could not load {path}: {error} (to load it without hub access, put its diffusers "
                f"config folder at {config_dir})",
            ) from error
    try:
        class_name = json.loads((config_dir / "model_index.json").read_text()).get("_class_name", "")
    except ValueError as error:
        raise ExecutionError("MODEL_LOAD_FAILED", f"unreadable {config_dir}/model_index.json") from error
    loader: Any = getattr(diffusers, str(class_name), None)
    if loader is None or not hasattr(loader, "from_single_file"):
        loader = diffusers.StableDiffusionPipeline
    return loader.from_single_file(str(path), config=str(config_dir), local_files_only=True, dtype=dtype)


def load_base_pipeline(model_path: str, device: torch.device, dtype: torch.dtype) -> Any:
    """Load a model (diffusers folder, or a single .safetensors/.ckpt file) onto the device.

    A single file uses its ``<file>.config`` folder when there is one (see the module docstring).
    """
    from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image

    path = Path(model_path)
    try:
        if path.is_dir() and (path / "model_index.json").is_file():
            # A 9-channel UNet only works in an inpaint pipeline: load that one as the base.
            loader: Any = (
                AutoPipelineForInpainting if _unet_in_channels(path) == 9 else AutoPipelineForText2Image
            )
            pipeline = loader.from_pretrained(str(path), dtype=dtype)
        elif path.is_file() and path.suffix in SINGLE_FILE_SUFFIXES:
            pipeline = _load_single_file(path, dtype)
        else:
            raise ExecutionError("MODEL_NOT_FOUND", f"no diffusers folder or model file at {model_path}")
        pipeline.to(device)
    except ExecutionError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError) as error:
        raise ExecutionError("MODEL_LOAD_FAILED", f"could not load {model_path}: {error}") from error
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@dataclass
class LoadedModel:
    """One model on the device, with the pipelines derived from it so far."""

    path: str
    base: Any
    base_kind: PipelineKind
    default_scheduler: Any
    pipelines: dict[PipelineKind, Any] = field(default_factory=dict)


class PipelineCache:
    """Keeps the current model loaded between jobs and hands out pipelines per task."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self.last_load_seconds = 0.0
        """Seconds the last ``get`` spent loading (0 when the model was already loaded)."""

    @property
    def model_path(self) -> str:
        """Path of the model loaded now, empty when none."""
        model = self._model
        return model.path if model else ""

    def load(self, model_path: str) -> LoadedModel:
        """Load ``model_path`` unless it is loaded already (dropping any other model first)."""
        with self._lock:
            started = time.monotonic()
            self.last_load_seconds = 0.0
            if self._model is not None and self._model.path == model_path:
                return self._model
            if not Path(model_path).exists():
                # Checked before dropping the current model, so a typo does not unload a good one.
                raise ExecutionError("MODEL_NOT_FOUND", f"no model at {model_path}")
            self._drop()
            log.info("loading model %s on %s (%s)", model_path, self.device, self.dtype)
            base = load_base_pipeline(model_path, self.device, self.dtype)
            from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

            inpaint_only = isinstance(base, StableDiffusionInpaintPipeline | StableDiffusionXLInpaintPipeline)
            kind = PipelineKind.INPAINT if inpaint_only else PipelineKind.TXT2IMG
            self._model = LoadedModel(model_path, base, kind, base.scheduler, {kind: base})
            self.last_load_seconds = time.monotonic() - started
            return self._model

    def get(self, model_path: str, kind: PipelineKind) -> Any:
        """The pipeline for ``kind`` on ``model_path``, sharing the loaded components."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

        model = self.load(model_path)
        pipeline = model.pipelines.get(kind)
        if pipeline is not None:
            return pipeline
        if model.base_kind is PipelineKind.INPAINT:
            raise ExecutionError(
                "UNSUPPORTED", f"{model_path} is an inpainting model; it only runs inpaint jobs"
            )
        derive = AutoPipelineForImage2Image if kind is PipelineKind.IMG2IMG else AutoPipelineForInpainting
        try:
            pipeline = derive.from_pipe(model.base)
        except (ValueError, KeyError, TypeError) as error:
            raise ExecutionError(
                "UNSUPPORTED", f"{kind.value} is not available for {model_path}: {error}"
            ) from error
        pipeline.set_progress_bar_config(disable=True)
        model.pipelines[kind] = pipeline
        return pipeline

    def scheduler_for(self, sampler: str) -> Any:
        """A fresh scheduler for a job: the model's own kind when ``sampler`` is empty."""
        import diffusers

        model = self._model
        if model is None:
            raise ExecutionError("MODEL_NOT_FOUND", "no model loaded")
        default = model.default_scheduler
        if not sampler:
            return type(default).from_config(default.config)
        entry = _SAMPLERS.get(_normalise_sampler(sampler))
        if entry is None:
            known = ", ".join(sampler_names())
            raise ExecutionError("INVALID_REQUEST", f"unknown sampler {sampler!r}; known: {known}")
        class_name, overrides = entry
        return getattr(diffusers, class_name).from_config(default.config, **overrides)

    def _drop(self) -> None:
        if self._model is None:
            return
        log.info("unloading model %s", self._model.path)
        self._model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


@contextmanager
def applied_loras(pipeline: Any, loras: list[LoraFile]) -> Iterator[list[str]]:
    """Load the job's LoRAs with their weights for the duration of the block, then unload them all."""
    if not loras:
        yield []
        return
    names: list[str] = []
    try:
        for index, lora in enumerate(loras):
            path = Path(lora.path)
            if not path.is_file():
                raise ExecutionError("MODEL_NOT_FOUND", f"LoRA file not found: {lora.path}")
            name = f"kubepilot_job_lora_{index}"
            pipeline.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            names.append(name)
        pipeline.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
    except ExecutionError:
        _unload(pipeline, names)
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        # A load that failed half-way may have injected layers already: unload whatever is there.
        _unload(pipeline, [*names, "partial"])
        raise ExecutionError("LORA_LOAD_FAILED", f"could not apply LoRA: {error}") from error
    try:
        yield names
    finally:
        _unload(pipeline, names)


def _unload(pipeline: Any, names: list[str]) -> None:
    if names:
        # unload_lora_weights restores the original layers, so the next job sees the bare model.
        pipeline.unload_lora_weights()


def clip_skip_arguments(pipeline: Any, prompt: str, negative_prompt: str, clip_skip: int) -> dict[str, Any]:
    """Pipeline arguments that encode the prompts ``clip_skip`` CLIP layers before the last one.

    SD 1.x/2.x pipelines get ``prompt_embeds`` / ``negative_prompt_embeds`` computed here: diffusers'
    own ``clip_skip`` reaches for ``text_encoder.text_model``, which transformers 5's CLIPTextModel no
    longer has. Like diffusers (and ComfyUI's CLIPSetLastLayer), the chosen hidden state goes through the
    final layer norm. SDXL pipelines (two encoders) keep diffusers' own ``clip_skip``.
    """
    if clip_skip <= 0:
        return {"prompt": prompt, "negative_prompt": negative_prompt or None}
    if getattr(pipeline, "text_encoder_2", None) is not None:
        return {"prompt": prompt, "negative_prompt": negative_prompt or None, "clip_skip": clip_skip}
    tokenizer, encoder = pipeline.tokenizer, pipeline.text_encoder
    norm = getattr(encoder, "text_model", encoder).final_layer_norm

    def encode(text: str) -> Any:
        ids = tokenizer(
            text,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(encoder.device)
        with torch.inference_mode():
            hidden = encoder(ids, output_hidden_states=True).hidden_states
            layer = hidden[-(min(clip_skip, len(hidden) - 1) + 1)]
            return norm(layer).to(dtype=encoder.dtype)

    return {"prompt_embeds": encode(prompt), "negative_prompt_embeds": encode(negative_prompt)}
