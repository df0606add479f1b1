"""ComfyUI API-format graphs: check a user's workflow, build the standard one for a request.

An API-format graph maps node ids to ``{"class_type": ..., "inputs": {...}}``; an input is a
literal or a link ``[source_node_id, output_index]``. The standard graph is the one ComfyUI's
default workflow exports (CheckpointLoaderSimple → CLIPTextEncode (twice) → EmptyLatentImage →
KSampler → VAEDecode → SaveImage), with LoadImage + VAEEncode for img2img, a noise mask for
inpaint, LoraLoader nodes for LoRAs and an upscale-model chain for upscaling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.config import GenerationRequest
from kubepilot_workers.adapters.files import name_in_type_folder
from kubepilot_workers.adapters.samplers import resolve_sampler
from kubepilot_workers.executor.backend import ExecutionError

Graph = dict[str, dict[str, Any]]
Link = list[Any]

DEFAULT_SAMPLER = "euler"
DEFAULT_SCHEDULER = "normal"
KSAMPLER_OVERRIDES = ("sampler_name", "scheduler", "denoise")
"""Keys of a request's ``params`` that override the standard graph's KSampler inputs."""


def check_workflow(workflow: Mapping[str, Any]) -> Graph:
    """The workflow as an API-format graph, or ExecutionError INVALID_WORKFLOW saying what is wrong."""
    if "nodes" in workflow and "links" in workflow:
        raise ExecutionError(
            "INVALID_WORKFLOW",
            "this is a UI-format workflow; export it from ComfyUI with 'Export (API)' and submit that graph",
        )
    if not workflow:
        raise ExecutionError("INVALID_WORKFLOW", "the workflow has no nodes")
    graph: Graph = {}
    for node_id, node in workflow.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise ExecutionError("INVALID_WORKFLOW", f"node {node_id!r} has no class_type")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise ExecutionError("INVALID_WORKFLOW", f"node {node_id!r}: inputs must be an object")
        for name, value in inputs.items():
            if isinstance(value, list) and (len(value) != 2 or str(value[0]) not in workflow):
                raise ExecutionError(
                    "INVALID_WORKFLOW", f"node {node_id!r} input {name!r} links to a missing node"
                )
        graph[str(node_id)] = node
    return graph


def uploads_needed(request: GenerationRequest) -> list[str]:
    """Local image paths the standard graph loads, which must first be uploaded to ComfyUI."""
    match request.type:
        case GenerationType.IMG2IMG | GenerationType.VARIATION:
            paths = [request.image]
        case GenerationType.INPAINT:
            paths = [request.image, request.mask]
        case GenerationType.UPSCALE:
            paths = [request.image, *request.images]
        case _:
            paths = []
    if any(not path for path in paths):
        raise ExecutionError(
            "INVALID_REQUEST", f"a {request.type.value} job needs its input image (and mask)"
        )
    return list(dict.fromkeys(paths))


class _Builder:
    def __init__(self) -> None:
        self.graph: Graph = {}

    def add(self, class_type: str, **inputs: Any) -> str:
        node_id = str(len(self.graph) + 1)
        self.graph[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id


def standard_graph(
    request: GenerationRequest,
    *,
    checkpoint: str,
    seed: int,
    uploaded: Mapping[str, str],
    sizes: Mapping[str, tuple[int, int]],
    prefix: str,
) -> Graph:
    """The graph for a request without a workflow.

    ``uploaded`` maps each path from :func:`uploads_needed` to its name in ComfyUI's input folder;
    ``sizes`` gives their (width, height), used to size upscales.
    """
    if request.type is GenerationType.WORKFLOW:
        raise ExecutionError("INVALID_WORKFLOW", "type workflow needs a workflow graph")
    builder = _Builder()
    if request.type is GenerationType.UPSCALE:
        _upscale(builder, request, uploaded, sizes, prefix)
        return builder.graph

    loader = builder.add("CheckpointLoaderSimple", ckpt_name=checkpoint)
    model: Link = [loader, 0]
    clip: Link = [loader, 1]
    vae: Link = [loader, 2]
    for lora in request.loras:
        lora_node = builder.add(
            "LoraLoader",
            lora_name=name_in_type_folder(lora.path, "loras"),
            strength_model=lora.weight,
            strength_clip=lora.weight,
            model=model,
            clip=clip,
        )
        model, clip = [lora_node, 0], [lora_node, 1]
    positive = builder.add("CLIPTextEncode", text=request.prompt, clip=clip)
    negative = builder.add("CLIPTextEncode", text=request.negativePrompt, clip=clip)

    if request.type is GenerationType.TXT2IMG:
        latent: Link = [
            builder.add(
                "EmptyLatentImage", width=request.width, height=request.height, batch_size=request.count
            ),
            0,
        ]
        denoise = 1.0
    else:
        pixels = builder.add("LoadImage", image=uploaded[request.image])
        latent = [builder.add("VAEEncode", pixels=[pixels, 0], vae=vae), 0]
        if request.count > 1:
            latent = [builder.add("RepeatLatentBatch", samples=latent, amount=request.count), 0]
        if request.type is GenerationType.INPAINT:
            mask = builder.add("LoadImageMask", image=uploaded[request.mask], channel="red")
            latent = [builder.add("SetLatentNoiseMask", samples=latent, mask=[mask, 0]), 0]
        denoise = request.strength

    sampler_inputs: dict[str, Any] = {
        "seed": seed,
        "steps": request.steps,
        "cfg": request.cfgScale,
        "sampler_name": DEFAULT_SAMPLER,
        "scheduler": DEFAULT_SCHEDULER,
        "denoise": denoise,
    }
    choice = resolve_sampler(request.sampler, "comfyui")
    if choice is not None:
        sampler_inputs["sampler_name"] = choice.sampler
        sampler_inputs["scheduler"] = choice.scheduler or DEFAULT_SCHEDULER
    for key in KSAMPLER_OVERRIDES:
        if request.params and key in request.params:
            sampler_inputs[key] = request.params[key]
    sampler = builder.add(
        "KSampler",
        model=model,
        positive=[positive, 0],
        negative=[negative, 0],
        latent_image=latent,
        **sampler_inputs,
    )
    decoded = builder.add("VAEDecode", samples=[sampler, 0], vae=vae)
    builder.add("SaveImage", filename_prefix=prefix, images=[decoded, 0])
    return builder.graph


def _upscale(
    builder: _Builder,
    request: GenerationRequest,
    uploaded: Mapping[str, str],
    sizes: Mapping[str, tuple[int, int]],
    prefix: str,
) -> None:
    model = None
    if request.upscaler:
        model = builder.add(
            "UpscaleModelLoader", model_name=name_in_type_folder(request.upscaler, "upscale_models")
        )
    for path in uploads_needed(request):
        image: Link = [builder.add("LoadImage", image=uploaded[path]), 0]
        if model is not None:
            image = [builder.add("ImageUpscaleWithModel", upscale_model=[model, 0], image=image), 0]
        width, height = sizes[path]
        # An upscale model has its own fixed factor; scaling to the exact target gives the factor asked for.
        resized = builder.add(
            "ImageScale",
            image=image,
            upscale_method="lanczos",
            width=round(width * request.upscaleFactor),
            height=round(height * request.upscaleFactor),
            crop="disabled",
        )
        builder.add("SaveImage", filename_prefix=prefix, images=[resized, 0])
