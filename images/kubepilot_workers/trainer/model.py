"""The diffusion model being trained: loading the base model, adding the LoRA, saving LoRA files.

Only the UNet's attention projections get LoRA layers; the VAE and the text encoder stay frozen,
so their outputs (latents, caption embeddings) can be computed once per image and caption.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
SINGLE_FILE_SUFFIXES = frozenset({".safetensors", ".ckpt"})


class ModelLoadError(Exception):
    """The base model could not be loaded."""


@dataclass
class DiffusionComponents:
    """The parts of a Stable Diffusion pipeline the trainer uses."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    """A DDPM scheduler with the base model's noise schedule, for the training objective."""
    inference_scheduler: Any
    """The model's own scheduler, for samples."""


def load_components(base_model_path: str | Path) -> DiffusionComponents:
    """Load a diffusers folder or single checkpoint file; raises :class:`ModelLoadError`."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    path = Path(base_model_path)
    try:
        if path.is_dir():
            pipeline = StableDiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
                str(path), safety_checker=None, requires_safety_checker=False
            )
        elif path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
            pipeline = StableDiffusionPipeline.from_single_file(str(path))
        else:
            raise ModelLoadError(
                f"base model {path} is neither a diffusers folder nor a .safetensors/.ckpt file"
            )
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ModelLoadError(f"cannot load base model {path.name}: {error}") from error
    noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)  # type: ignore[no-untyped-call]
    return DiffusionComponents(
        unet=pipeline.unet,
        vae=pipeline.vae,
        text_encoder=pipeline.text_encoder,
        tokenizer=pipeline.tokenizer,
        noise_scheduler=noise_scheduler,
        inference_scheduler=pipeline.scheduler,
    )


def add_lora(unet: Any, rank: int, alpha: float) -> list[torch.nn.Parameter]:
    """Freeze the UNet, add LoRA layers to its attention projections; returns the trainable parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    # peft annotates lora_alpha as int but only ever divides it by r: a float alpha is fine.
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]
        init_lora_weights="gaussian",
        target_modules=LORA_TARGET_MODULES,
    )
    unet.add_adapter(config)
    trainable = [parameter for parameter in unet.parameters() if parameter.requires_grad]
    # LoRA weights train in fp32 even when the frozen base runs in lower precision.
    for parameter in trainable:
        parameter.data = parameter.data.float()
    return trainable


def trainable_state(unet: Any) -> dict[str, torch.Tensor]:
    """The LoRA parameters by module name, detached on the CPU (for resumable state)."""
    return {
        name: parameter.detach().to("cpu", torch.float32).clone()
        for name, parameter in unet.named_parameters()
        if parameter.requires_grad
    }


def load_trainable_state(unet: Any, state: dict[str, torch.Tensor]) -> None:
    """Put saved LoRA parameters back; every trainable parameter must be present with its shape."""
    parameters = {name: p for name, p in unet.named_parameters() if p.requires_grad}
    missing = sorted(set(parameters) - set(state))
    if missing:
        raise ValueError(
            f"checkpoint lacks {len(missing)} LoRA parameters (e.g. {missing[0]}): rank or model differ"
        )
    with torch.no_grad():
        for name, parameter in parameters.items():
            if state[name].shape != parameter.shape:
                saved, wanted = tuple(state[name].shape), tuple(parameter.shape)
                raise ValueError(f"checkpoint parameter {name} has shape {saved}, not {wanted}")
            parameter.copy_(state[name].to(parameter.device, parameter.dtype))


SHARED_FILE_MODE = 0o644
"""Outputs are read by other pods sharing the volume: readable by group and others."""


def save_lora_file(unet: Any, path: Path, *, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the UNet's LoRA as a diffusers-loadable safetensors file, atomically; returns ``path``.

    ``state`` gives the LoRA parameters when they live elsewhere (gathered from DeepSpeed shards).
    """
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers  # type: ignore[attr-defined]
    from peft.utils import get_peft_model_state_dict

    peft_state = get_peft_model_state_dict(unet, state_dict=_with_adapter_names(unet, state))
    layers = {key: value.detach().to("cpu").contiguous() for key, value in peft_state.items()}
    layers = convert_state_dict_to_diffusers(layers)  # type: ignore[no-untyped-call]
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.partial{path.suffix}")
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(path.parent),
        unet_lora_layers=layers,
        weight_name=staging.name,
        safe_serialization=True,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
    )
    # diffusers writes the file owner-only (0600); other pods (the generator, ComfyUI, the gateway)
    # read it from the shared volume, possibly as another user of the volume's group.
    canonical_header(staging)
    staging.chmod(SHARED_FILE_MODE)
    staging.replace(path)
    return path


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with its keys sorted, in place.

    safetensors serialises the metadata from a hash map whose order changes from one save to the
    next, so the same weights could give different bytes (and sha256). Sorting the header's keys
    makes the file a function of its content; tensor offsets are relative to the data section and
    the header keeps its length (padded with spaces, as safetensors pads it), so the data is untouched.
    """
    with path.open("r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        canonical = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(canonical) > size:  # cannot happen (compact JSON is never longer); keep the file as is
            return
        handle.seek(8)
        handle.write(canonical + b" " * (size - len(canonical)))


def _with_adapter_names(unet: Any, state: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """A full state dict for peft: the saved LoRA values over the module's own tensors."""
    if state is None:
        return None
    merged = dict(unet.state_dict())
    merged.update(state)
    return merged


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
