"""The diffusers backend: txt2img, img2img, inpaint, variation, upscale and workflow jobs on one device.

It implements ``ExecutorBackend``, so the same object runs one-shot jobs (the CLI) and queued jobs
behind the executor API (server mode). Seeds follow the A1111 convention: image ``i`` of a job uses
``seed + i``, drawn on a CPU generator so the same seed gives the same pixels on any machine.
``seed + i`` wraps within int64 (the range of a GenerationJob's seeds, where each output's seed is
reported), which changes nothing below ``2**63 - count``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from kubepilot_api.common import now
from kubepilot_api.generationjob import GenerationProgress, GenerationType, OutputImage
from kubepilot_api.workers.config import GenerationRequest, GeneratorConfig
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext
from kubepilot_workers.generator.outputs import BackgroundWriter, ImageParameters
from kubepilot_workers.generator.pipelines import (
    PipelineCache,
    PipelineKind,
    applied_loras,
    clip_skip_arguments,
    resolve_device,
    resolve_dtype,
)
from kubepilot_workers.generator.upscale import Upscaler, UpscalerCache
from kubepilot_workers.generator.workflow import (
    WorkflowPlan,
    apply_ops,
    fit_for_vae,
    img2img_request,
    load_mask,
)
from kubepilot_workers.generator.workflow import plan as workflow_plan

log = logging.getLogger(__name__)

BACKEND_NAME = "kubepilot-generator"
SEED_RANGE = 2**32
SEED_WRAP = 2**63
"""Output seeds stay below this: a status field is an int64, and the API server refuses more."""
SIZE_MULTIPLE = 8

_KINDS = {
    GenerationType.TXT2IMG: PipelineKind.TXT2IMG,
    GenerationType.IMG2IMG: PipelineKind.IMG2IMG,
    GenerationType.VARIATION: PipelineKind.IMG2IMG,
    GenerationType.INPAINT: PipelineKind.INPAINT,
}


def _load_image(path: str, what: str, mode: str) -> Image.Image:
    if not path:
        raise ExecutionError("INVALID_REQUEST", f"this generation type needs an {what}")
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except FileNotFoundError as error:
        raise ExecutionError("INPUT_NOT_FOUND", f"{what} not found: {path}") from error
    except (OSError, UnidentifiedImageError) as error:
        raise ExecutionError("INVALID_INPUT", f"{what} is not a readable image: {path}") from error


class _StepProgress:
    """Turns per-step callbacks into GenerationProgress with an ETA, and checks for cancellation.

    Images are written on a background thread (see ``BackgroundWriter``), so reports come from two
    threads: the job's (steps of the image being computed) and the writer's (an image is on disk). A lock
    keeps them in order; ``imagesDone`` counts images on disk, the percentage counts computed images plus
    the fraction of the current one, so neither goes backwards.
    """

    def __init__(
        self, context: JobContext, images_total: int, writer: BackgroundWriter | None = None, node: str = ""
    ) -> None:
        self.context = context
        self.node = node
        """The workflow node reported as ``currentNode`` (empty for a plain request)."""
        self.images_total = images_total
        self.writer = writer
        self.images_done = 0
        """Images on disk."""
        self.images_computed = 0
        self.step = 0
        self.total_steps = 0
        self.current = 0.0
        """Fraction of the image being computed now (0 between images)."""
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def report(self, step: int, total_steps: int) -> None:
        """Report ``step`` of ``total_steps`` of the image being computed."""
        with self._lock:
            self.step, self.total_steps = step, total_steps
            self.current = min(step, max(total_steps, 1)) / max(total_steps, 1)
            self._send()

    def image_computed(self, total_steps: int) -> None:
        """The current image is complete (its file is being written): count it, no report yet."""
        with self._lock:
            self.images_computed += 1
            self.step = self.total_steps = total_steps
            self.current = 0.0

    def image_written(self, output: OutputImage) -> None:
        """An image is on disk (called on the writer thread): report it, so a dashboard may fetch it."""
        with self._lock:
            self.images_done += 1
            self._send()

    def _send(self) -> None:
        fraction = min(1.0, (self.images_computed + self.current) / self.images_total)
        elapsed = time.monotonic() - self.started
        eta = max(0, round(elapsed / fraction * (1 - fraction))) if fraction > 0 else -1
        self.context.report_progress(
            GenerationProgress(
                step=self.step,
                totalSteps=self.total_steps,
                imagesDone=self.images_done,
                imagesTotal=self.images_total,
                percent=min(100, int(fraction * 100)),
                currentNode=self.node,
                etaSeconds=eta,
                lastUpdatedTime=now(),
            )
        )

    def check(self) -> None:
        """Raise a failed write's error (no use computing more images), or Cancelled when cancelled."""
        if self.writer is not None:
            self.writer.raise_failure()
        if self.context.cancelled.is_set():
            raise Cancelled("job cancelled")

    def step_callback(
        self, pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        """``callback_on_step_end`` for diffusers: report the step, stop when cancelled."""
        self.report(step + 1, int(getattr(pipeline, "num_timesteps", 0) or 0))
        self.check()
        return tensors


class DiffusersBackend:
    """Runs GenerationRequests with diffusers; keeps the model loaded between jobs."""

    name = BACKEND_NAME

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.pipelines = PipelineCache(self.device, self.dtype)
        self.upscalers = UpscalerCache(config.upscalers, self.device, self.dtype, root=config.modelsRoot)
        self.ready = True
        self.last_load_seconds = 0.0
        """Seconds the last job spent loading its model (the executor reports it as loadSeconds)."""

    def load_default(self) -> None:
        """Load the configured model now (server start), so the first job does not wait for it."""
        try:
            self.pipelines.load(self.config.modelPath)
        except ExecutionError:
            self.ready = False
            raise
        self.ready = True

    def health(self) -> tuple[bool, str]:
        """(ready, model loaded now)."""
        return self.ready, self.pipelines.model_path

    def run(self, context: JobContext) -> list[OutputImage]:
        """Run one job (see ``ExecutorBackend.run``)."""
        self.last_load_seconds = 0.0
        if context.request.type is GenerationType.WORKFLOW:
            return self._workflow(context)
        return self._run(context)

    def _workflow(self, context: JobContext) -> list[OutputImage]:
        """A ComfyUI graph of a standard shape: translated (see ``generator.workflow``), then run.

        The graph names its checkpoint, so the job's ``modelPath`` (the operator's default) is not used.
        """
        plan = workflow_plan(
            context.request, context.output_dir, self.config.modelsRoot, self.config.inputsDir
        )
        upscaler = self.upscalers.get(plan.request.upscaler) if plan.uses_upscale_model else None
        job = dataclasses.replace(context, request=plan.request)
        init_image = mask = None
        if plan.request.type in (GenerationType.IMG2IMG, GenerationType.INPAINT):
            loaded = _load_image(plan.request.image, "input image", "RGB")
            init_image = fit_for_vae(apply_ops(loaded, plan.input_ops, upscaler, context.cancelled.is_set))
            job = dataclasses.replace(job, request=img2img_request(plan.request, init_image))
        if plan.request.type is GenerationType.INPAINT and init_image is not None:
            mask = load_mask(plan.request.mask, plan.mask_channel, init_image.size, plan.grow_mask)
        return self._run(job, init_image, plan, upscaler, mask)

    def _run(
        self,
        context: JobContext,
        init_image: Image.Image | None = None,
        plan: WorkflowPlan | None = None,
        upscaler: Upscaler | None = None,
        mask: Image.Image | None = None,
    ) -> list[OutputImage]:
        """A job of a built-in type; the other arguments come from a workflow (see ``_workflow``)."""
        request = context.request
        if request.type is GenerationType.UPSCALE:
            return self._upscale(context) if plan is None else self._upscale_workflow(context, plan, upscaler)
        kind = _KINDS.get(request.type)
        if kind is None:
            raise ExecutionError("UNSUPPORTED", f"{request.type.value} jobs need a ComfyUI service")
        if request.width % SIZE_MULTIPLE or request.height % SIZE_MULTIPLE:
            raise ExecutionError("INVALID_REQUEST", f"width and height must be multiples of {SIZE_MULTIPLE}")
        model_path = request.modelPath or self.config.modelPath
        if kind is not PipelineKind.TXT2IMG and init_image is None:
            size = (request.width, request.height)
            init_image = _load_image(request.image, "init image", "RGB").resize(
                size, Image.Resampling.LANCZOS
            )
        if kind is PipelineKind.INPAINT and mask is None:
            mask = _load_image(request.mask, "mask", "L").resize((request.width, request.height))
        pipeline = self.pipelines.get(model_path, kind)
        self.last_load_seconds = self.pipelines.last_load_seconds
        pipeline.scheduler = self.pipelines.scheduler_for(request.sampler)
        with applied_loras(pipeline, request.loras):
            return self._diffuse(context, pipeline, kind, model_path, init_image, mask, plan, upscaler)

    def _diffuse(
        self,
        context: JobContext,
        pipeline: Any,
        kind: PipelineKind,
        model_path: str,
        init_image: Image.Image | None,
        mask: Image.Image | None,
        plan: WorkflowPlan | None = None,
        upscaler: Upscaler | None = None,
    ) -> list[OutputImage]:
        request = context.request
        seed = request.seed if request.seed >= 0 else secrets.randbelow(SEED_RANGE)
        prompts: dict[str, Any] = {}
        if plan is not None and plan.clip_skip:
            prompts = clip_skip_arguments(pipeline, request.prompt, request.negativePrompt, plan.clip_skip)
        # Image i is written on the writer thread while image i+1 is denoised; leaving the block waits
        # for pending writes, so a cancel keeps the files of the images computed before it.
        with BackgroundWriter(context.output_dir) as writer:
            progress = _StepProgress(context, request.count, writer, plan.sampler_node if plan else "")
            for index in range(request.count):
                progress.check()
                image_seed = (seed + index) % SEED_WRAP
                arguments = self._arguments(request, kind, init_image, mask)
                if prompts:
                    del arguments["prompt"], arguments["negative_prompt"]
                    arguments.update(prompts)
                arguments["generator"] = torch.Generator("cpu").manual_seed(image_seed)
                arguments["callback_on_step_end"] = progress.step_callback
                image = pipeline(**arguments).images[0]
                parameters = self._parameters(context, index, image_seed, model_path, pipeline)
                stem = ""
                if plan is not None:
                    # The workflow's image operations after its VAEDecode, then its SaveImage's name.
                    image = apply_ops(image, plan.output_ops, upscaler, context.cancelled.is_set)
                    parameters.workflow_node, stem = plan.output_node, plan.stem(index)
                    parameters.workflow_graph = request.workflow
                progress.image_computed(int(getattr(pipeline, "num_timesteps", 0) or request.steps))
                writer.submit(image, parameters, progress.image_written, stem)
            return writer.finish()

    @staticmethod
    def _arguments(
        request: GenerationRequest,
        kind: PipelineKind,
        init_image: Image.Image | None,
        mask: Image.Image | None,
    ) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negativePrompt or None,
            "num_inference_steps": request.steps,
            "guidance_scale": request.cfgScale,
            "output_type": "pil",
        }
        if kind is PipelineKind.TXT2IMG:
            arguments.update(width=request.width, height=request.height)
        elif kind is PipelineKind.IMG2IMG:
            arguments.update(image=init_image, strength=request.strength)
        else:
            arguments.update(
                image=init_image,
                mask_image=mask,
                width=request.width,
                height=request.height,
                strength=request.strength,
            )
        return arguments

    @staticmethod
    def _parameters(
        context: JobContext, index: int, seed: int, model_path: str, pipeline: Any
    ) -> ImageParameters:
        request = context.request
        return ImageParameters(
            job_id=context.job_id,
            type=request.type.value,
            index=index,
            seed=seed,
            model=Path(model_path).name,
            prompt=request.prompt,
            negative_prompt=request.negativePrompt,
            steps=request.steps,
            cfg_scale=request.cfgScale,
            sampler=request.sampler or type(pipeline.scheduler).__name__,
            width=request.width,
            height=request.height,
            strength=None if request.type is GenerationType.TXT2IMG else request.strength,
            loras=[{"path": lora.path, "weight": lora.weight} for lora in request.loras],
            source_image=request.image,
        )

    def _upscale(self, context: JobContext) -> list[OutputImage]:
        request = context.request
        sources = [path for path in [request.image, *request.images] if path]
        if not sources:
            raise ExecutionError("INVALID_REQUEST", "upscale needs an image")
        upscaler = self.upscalers.get(request.upscaler)
        with BackgroundWriter(context.output_dir) as writer:
            progress = _StepProgress(context, len(sources), writer)
            for index, source in enumerate(sources):
                progress.check()
                image = _load_image(source, "image", "RGB")
                result = upscaler.upscale(image, request.upscaleFactor, context.cancelled.is_set)
                parameters = ImageParameters(
                    job_id=context.job_id,
                    type=request.type.value,
                    index=index,
                    seed=-1,
                    model=upscaler.path.name,
                    width=result.width,
                    height=result.height,
                    upscaler=upscaler.name,
                    upscale_factor=request.upscaleFactor,
                    source_image=source,
                )
                progress.image_computed(1)
                writer.submit(result, parameters, progress.image_written)
            return writer.finish()

    def _upscale_workflow(
        self, context: JobContext, plan: WorkflowPlan, upscaler: Upscaler | None
    ) -> list[OutputImage]:
        """A workflow's LoadImage → (upscale model, scale) → SaveImage chains, one image each."""
        request = context.request
        sources = [request.image, *request.images]
        with BackgroundWriter(context.output_dir) as writer:
            progress = _StepProgress(context, len(sources), writer, plan.output_node)
            for index, source in enumerate(sources):
                progress.check()
                image = _load_image(source, "input image", "RGB")
                ops = plan.image_ops[index] if index < len(plan.image_ops) else plan.output_ops
                result = apply_ops(image, ops, upscaler, context.cancelled.is_set)
                nodes = plan.output_nodes
                parameters = ImageParameters(
                    job_id=context.job_id,
                    type=GenerationType.UPSCALE.value,
                    index=index,
                    seed=-1,
                    model=upscaler.path.name if upscaler else "",
                    width=result.width,
                    height=result.height,
                    upscaler=upscaler.path.name if upscaler else "resize",
                    upscale_factor=round(result.width / image.width, 4),
                    source_image=source,
                    workflow_node=nodes[index] if index < len(nodes) else plan.output_node,
                    workflow_graph=request.workflow,
                )
                progress.image_computed(1)
                writer.submit(result, parameters, progress.image_written, plan.stem(index))
            return writer.finish()
