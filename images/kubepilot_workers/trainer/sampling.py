"""Sample images during training, rendered with the components being trained (LoRA active).

A diffusers pipeline is assembled around the live UNet, so a sample shows the LoRA exactly as it
is at this step, with no file written or reloaded. Samples are written by the generator's own
``write_image``: the same PNG text chunks (A1111 ``parameters`` and JSON) and metadata file as a
GenerationJob's images, so a dashboard shows how each sample was made and it can be reproduced.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kubepilot_workers.generator.outputs import ImageParameters, write_image
from kubepilot_workers.trainer.model import DiffusionComponents

DEFAULT_SAMPLE_STEPS = 20
DEFAULT_CFG_SCALE = 7.0
MAX_SAMPLE_SIDE = 2048
MAX_SAMPLE_STEPS = 200


class SampleRequestError(ValueError):
    """A custom sample request with unusable parameters."""


@dataclass(frozen=True)
class SampleRequest:
    """What to render: prompts plus the settings every prompt shares."""

    prompts: list[str]
    negative_prompt: str
    seed: int
    steps: int
    cfg_scale: float
    width: int
    height: int


def _int_param(params: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise SampleRequestError(f"sample parameter {key} must be an integer")
    if not low <= int(value) <= high:
        raise SampleRequestError(f"sample parameter {key} must be between {low} and {high}")
    return int(value)


def sample_request(
    params: dict[str, Any], default_prompts: list[str], resolution: int, seed: int
) -> SampleRequest:
    """A request from an action's params (keys of :meth:`TrainerControl.sample`) or the defaults."""
    prompt = params.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise SampleRequestError("sample parameter prompt must be a string")
    prompts = [prompt] if prompt else list(default_prompts) or [""]
    negative = params.get("negative_prompt", "")
    if not isinstance(negative, str):
        raise SampleRequestError("sample parameter negative_prompt must be a string")
    cfg = params.get("cfg_scale", DEFAULT_CFG_SCALE)
    if isinstance(cfg, bool) or not isinstance(cfg, int | float) or not 0 <= float(cfg) <= 50:
        raise SampleRequestError("sample parameter cfg_scale must be a number between 0 and 50")
    side = resolution // 8 * 8
    return SampleRequest(
        prompts=prompts,
        negative_prompt=negative,
        seed=_int_param(params, "seed", seed, 0, 2**63 - 1),
        steps=_int_param(params, "steps", DEFAULT_SAMPLE_STEPS, 1, MAX_SAMPLE_STEPS),
        cfg_scale=float(cfg),
        width=_int_param(params, "width", side, 8, MAX_SAMPLE_SIDE) // 8 * 8,
        height=_int_param(params, "height", side, 8, MAX_SAMPLE_SIDE) // 8 * 8,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "empty"


def build_pipeline(components: DiffusionComponents, unet: Any) -> Any:
    """A StableDiffusionPipeline around the live UNet (no safety checker: training previews)."""
    from diffusers import StableDiffusionPipeline

    pipeline: Any = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=unet,
        scheduler=components.inference_scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def render_samples(
    pipeline: Any,
    request: SampleRequest,
    folder: Path,
    step: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[None] | None = None,
    *,
    run: str = "",
    model: str = "",
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Render one image per prompt into ``folder``; returns the PNG files written.

    ``run`` and ``model`` (the base model's name) go into each image's metadata; ``on_progress``
    hears ``(images done, images in the pass)`` before the first image and after each one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if on_progress is not None:
        on_progress(0, len(request.prompts))
    was_training = pipeline.unet.training
    pipeline.unet.eval()
    try:
        for index, prompt in enumerate(request.prompts):
            generator = torch.Generator(device="cpu").manual_seed(request.seed + index)
            with torch.no_grad(), autocast or contextlib.nullcontext():
                result = pipeline(
                    prompt=prompt,
                    negative_prompt=request.negative_prompt or None,
                    num_inference_steps=request.steps,
                    guidance_scale=request.cfg_scale,
                    width=request.width,
                    height=request.height,
                    generator=generator,
                    output_type="pil",
                )
            parameters = ImageParameters(
                job_id=f"{run}-step{step:08d}" if run else f"step{step:08d}",
                type="sample",
                index=index,
                seed=request.seed + index,
                model=model,
                prompt=prompt,
                negative_prompt=request.negative_prompt,
                steps=request.steps,
                cfg_scale=request.cfg_scale,
                sampler=type(pipeline.scheduler).__name__,
                width=request.width,
                height=request.height,
            )
            stem = f"step{step:08d}-{index:02d}-{_slug(prompt)}"
            written.append(Path(write_image(result.images[0], folder, parameters, stem=stem).path))
            if on_progress is not None:
                on_progress(len(written), len(request.prompts))
    finally:
        pipeline.unet.train(was_training)
    return written
