"""ComfyUI API-format graphs of the standard shapes translate into the GenerationRequest they mean.

The graphs are written here the way ComfyUI's "Export (API)" writes its default workflows (node ids
as strings, links as ``[node_id, output_index]``); pure unit tests, no cluster and no model.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.workflow import (
    INVALID_WORKFLOW,
    PARAMS_KEY,
    WorkflowError,
    generator_sampler_names,
    supported_node_types,
    translate,
    unsupported_node_types,
)

Graph = dict[str, Any]
MODELS = "/models"
INPUTS = "/outputs/inputs"


def default_graph() -> Graph:
    """ComfyUI's default txt2img workflow as its API export lays it out."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 156680208700286,
                "steps": 20,
                "cfg": 8.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a bottle with a galaxy", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def extra(graph: Graph) -> dict[str, Any]:
    request = translate(graph, MODELS, inputs_root=INPUTS)
    assert request.params is not None
    result: dict[str, Any] = request.params[PARAMS_KEY]
    return result


def refusal(graph: Any) -> WorkflowError:
    with pytest.raises(WorkflowError) as caught:
        translate(graph, MODELS, inputs_root=INPUTS)
    assert caught.value.code == INVALID_WORKFLOW
    return caught.value


def test_the_default_workflow_is_a_txt2img_request_on_its_checkpoint() -> None:
    request = translate(default_graph(), MODELS, inputs_root=INPUTS)
    assert request.type is GenerationType.TXT2IMG
    assert request.modelPath == "/models/checkpoints/v1-5-pruned-emaonly.safetensors"
    assert (request.prompt, request.negativePrompt) == ("a bottle with a galaxy", "text, watermark")
    assert (request.width, request.height, request.count) == (512, 512, 1)
    assert (request.seed, request.steps, request.cfgScale, request.sampler) == (
        156680208700286,
        20,
        8.0,
        "euler",
    )
    assert request.loras == [] and request.image == ""
    assert request.workflow == default_graph()
    assert extra(default_graph()) == {
        "outputNode": "9",
        "outputNodes": ["9"],
        "filenamePrefix": "ComfyUI",
        "outputOps": [],
        "inputOps": [],
        "approximations": [],
        "samplerNode": "3",
        "clipSkip": 0,
    }


def test_batch_size_sets_the_count_and_a_preview_only_graph_runs() -> None:
    graph = default_graph()
    graph["5"]["inputs"]["batch_size"] = 3
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    request = translate(graph, MODELS)
    assert request.count == 3
    assert extra(graph)["filenamePrefix"] == "ComfyUI"


def test_a_preview_beside_a_save_is_ignored() -> None:
    graph = default_graph()
    graph["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    assert extra(graph)["outputNodes"] == ["9"]


def test_lora_chains_apply_in_order_with_model_strength() -> None:
    graph = default_graph()
    graph["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "style\\ink.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.5,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    }
    graph["11"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"lora_name": "detail.safetensors", "strength_model": 0.3, "model": ["10", 0]},
    }
    graph["12"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "off.safetensors",
            "strength_model": 0,
            "strength_clip": 0,
            "model": ["11", 0],
            "clip": ["10", 1],
        },
    }
    graph["3"]["inputs"]["model"] = ["12", 0]
    graph["6"]["inputs"]["clip"] = ["12", 1]
    graph["7"]["inputs"]["clip"] = ["12", 1]
    request = translate(graph, MODELS)
    assert [(lora.path, lora.weight) for lora in request.loras] == [
        ("/models/loras/style/ink.safetensors", 0.8),
        ("/models/loras/detail.safetensors", 0.3),
    ]


def test_a_lora_only_on_the_clip_chain_gets_its_clip_strength() -> None:
    graph = default_graph()
    graph["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "te.safetensors",
            "strength_model": 1.0,
            "strength_clip": 0.4,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    }
    graph["6"]["inputs"]["clip"] = ["10", 1]
    assert [(lora.path, lora.weight) for lora in translate(graph, MODELS).loras] == [
        ("/models/loras/te.safetensors", 0.4)
    ]


def img2img_graph() -> Graph:
    graph = default_graph()
    del graph["5"]
    graph["10"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "photos/cat.png [input]", "upload": "image"},
    }
    graph["11"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["10", 0],
            "upscale_method": "bilinear",
            "width": 320,
            "height": 0,
            "crop": "disabled",
        },
    }
    graph["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}}
    graph["13"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["12", 0], "amount": 2}}
    graph["3"]["inputs"].update(latent_image=["13", 0], denoise=0.55)
    return graph


def test_img2img_loads_the_input_image_and_denoise_is_the_strength() -> None:
    request = translate(img2img_graph(), MODELS, inputs_root=INPUTS)
    assert request.type is GenerationType.IMG2IMG
    assert request.image == "/outputs/inputs/photos/cat.png"
    assert (request.strength, request.count) == (0.55, 2)
    assert extra(img2img_graph())["inputOps"] == [
        {"op": "scale", "width": 320, "height": 0, "method": "bilinear", "crop": "disabled"}
    ]
    # Without an inputs folder (the gateway's check), the name stays relative.
    assert translate(img2img_graph(), MODELS).image == "photos/cat.png"


def test_clip_set_last_layer_is_the_clip_skip() -> None:
    graph = default_graph()
    graph["10"] = {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["4", 1]}}
    graph["6"]["inputs"]["clip"] = ["10", 0]
    graph["7"]["inputs"]["clip"] = ["10", 0]
    assert extra(graph)["clipSkip"] == 1
    graph["7"]["inputs"]["clip"] = ["4", 1]
    assert "skip different numbers" in refusal(graph).message


def test_a_noise_mask_makes_an_inpaint_request_with_its_mask_channel() -> None:
    graph = img2img_graph()
    graph["14"] = {"class_type": "LoadImageMask", "inputs": {"image": "masks/m.png", "channel": "red"}}
    graph["15"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["13", 0], "mask": ["14", 0]}}
    graph["3"]["inputs"]["latent_image"] = ["15", 0]
    request = translate(graph, MODELS, inputs_root=INPUTS)
    assert request.type is GenerationType.INPAINT
    assert (request.image, request.mask) == ("/outputs/inputs/photos/cat.png", "/outputs/inputs/masks/m.png")
    assert (request.strength, request.count) == (0.55, 2)
    assert extra(graph)["maskChannel"] == "red" and "growMask" not in extra(graph)


def test_vae_encode_for_inpaint_takes_the_load_images_alpha_as_its_mask() -> None:
    graph = default_graph()
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "dog.png"}}
    graph["11"] = {
        "class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": 8},
    }
    graph["3"]["inputs"]["latent_image"] = ["11", 0]
    request = translate(graph, MODELS, inputs_root=INPUTS)
    assert (
        request.type is GenerationType.INPAINT and request.mask == request.image == "/outputs/inputs/dog.png"
    )
    assert request.strength == 1.0
    assert (extra(graph)["maskChannel"], extra(graph)["growMask"]) == ("alpha", 8)


def test_a_noise_mask_on_an_empty_latent_is_refused() -> None:
    graph = default_graph()
    graph["10"] = {"class_type": "LoadImageMask", "inputs": {"image": "m.png", "channel": "alpha"}}
    graph["11"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["10", 0]}}
    graph["3"]["inputs"]["latent_image"] = ["11", 0]
    assert "empty latent" in refusal(graph).message


def upscale_chain(graph: Graph, load: str, image: str, save: str) -> None:
    graph[load] = {"class_type": "LoadImage", "inputs": {"image": image}}
    graph[f"{load}u"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["m", 0], "image": [load, 0]},
    }
    graph[f"{load}s"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": [f"{load}u", 0], "upscale_method": "lanczos", "scale_by": 0.5},
    }
    graph[save] = {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "up/x 1", "images": [f"{load}s", 0]},
    }


def test_upscale_model_chains_become_one_upscale_request_over_every_image() -> None:
    graph: Graph = {"m": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-Ultra.pth"}}}
    upscale_chain(graph, "a", "a.png", "sa")
    upscale_chain(graph, "b", "b.png", "sb")
    request = translate(graph, MODELS, inputs_root=INPUTS)
    assert request.type is GenerationType.UPSCALE
    assert (request.image, request.images) == ("/outputs/inputs/a.png", ["/outputs/inputs/b.png"])
    assert request.upscaler == "/models/upscale_models/4x-Ultra.pth"
    ops = [{"op": "upscaleModel"}, {"op": "scaleBy", "factor": 0.5, "method": "lanczos"}]
    assert extra(graph)["imageOps"] == [ops, ops]
    assert extra(graph)["filenamePrefix"] == "x_1"


def test_generate_then_upscale_keeps_the_image_operations_after_the_decode() -> None:
    graph = default_graph()
    graph["m"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x4.safetensors"}}
    graph["u"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["m", 0], "image": ["8", 0]},
    }
    graph["9"]["inputs"]["images"] = ["u", 0]
    request = translate(graph, MODELS)
    assert (
        request.type is GenerationType.TXT2IMG and request.upscaler == "/models/upscale_models/x4.safetensors"
    )
    assert extra(graph)["outputOps"] == [{"op": "upscaleModel"}]


@pytest.mark.parametrize(
    ("sampler", "scheduler", "ours", "approximated"),
    [
        ("dpmpp_2m", "karras", "dpm++ 2m karras", False),
        ("euler_ancestral", "normal", "euler a", False),
        ("euler_ancestral", "karras", "euler a", True),
        ("ddim", "sgm_uniform", "ddim", True),
        ("uni_pc_bh2", "exponential", "unipc exponential", False),
    ],
)
def test_comfyui_samplers_map_to_the_generators_names(
    sampler: str, scheduler: str, ours: str, approximated: bool
) -> None:
    graph = default_graph()
    graph["3"]["inputs"].update(sampler_name=sampler, scheduler=scheduler)
    assert translate(graph, MODELS).sampler == ours
    assert ours in generator_sampler_names()
    assert bool(extra(graph)["approximations"]) is approximated


def test_unsupported_node_types_are_listed_sorted_and_unique_and_refused() -> None:
    graph = default_graph()
    graph["20"] = {"class_type": "ControlNetApply", "inputs": {}}
    graph["21"] = {"class_type": "ControlNetApply", "inputs": {}}
    graph["22"] = {"class_type": "VAELoader", "inputs": {}}
    assert unsupported_node_types(graph) == ["ControlNetApply", "VAELoader"]
    assert unsupported_node_types(default_graph()) == []
    assert {"KSampler", "SaveImage", "LoraLoader", "ImageUpscaleWithModel"} <= supported_node_types()
    error = refusal(graph)
    assert error.node_types == ["ControlNetApply", "VAELoader"]
    assert "ControlNetApply" in error.message and isinstance(error, ValueError)


def mutated(change: str) -> Graph:
    graph = default_graph()
    match change:
        case "dangling":
            graph["8"]["inputs"]["samples"] = ["99", 0]
        case "no output":
            del graph["9"]
        case "cycle":
            graph["6"]["inputs"]["clip"] = ["3", 0]
            graph["3"]["inputs"]["positive"] = ["6", 0]
            graph["6"]["class_type"] = "CLIPTextEncode"
            graph["6"]["inputs"]["text"] = ["6", 0]
        case "two samplers":
            graph["30"] = copy.deepcopy(graph["3"])
            graph["31"] = {"class_type": "VAEDecode", "inputs": {"samples": ["30", 0], "vae": ["4", 2]}}
            graph["32"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "b", "images": ["31", 0]}}
        case "hires fix":
            graph["40"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["8", 0], "vae": ["4", 2]}}
            graph["41"] = copy.deepcopy(graph["3"])
            graph["41"]["inputs"].update(latent_image=["40", 0], denoise=0.5)
            graph["42"] = {"class_type": "VAEDecode", "inputs": {"samples": ["41", 0], "vae": ["4", 2]}}
            graph["9"]["inputs"]["images"] = ["42", 0]
        case "wrong socket":
            graph["3"]["inputs"]["model"] = ["4", 1]
        case "two checkpoints":
            graph["50"] = {
                "class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "other.safetensors"},
            }
            graph["8"]["inputs"]["vae"] = ["50", 2]
        case "escaping checkpoint":
            graph["4"]["inputs"]["ckpt_name"] = "../../etc/passwd"
        case "absolute checkpoint":
            graph["4"]["inputs"]["ckpt_name"] = "/models/x.safetensors"
        case "unknown sampler":
            graph["3"]["inputs"]["sampler_name"] = "dpm_adaptive"
        case "unknown scheduler":
            graph["3"]["inputs"]["scheduler"] = "linear_quadratic"
        case "partial denoise of noise":
            graph["3"]["inputs"]["denoise"] = 0.5
        case "too many images":
            graph["5"]["inputs"]["batch_size"] = 11
        case "odd size":
            graph["5"]["inputs"]["width"] = 500
        case "text link":
            graph["6"]["inputs"]["text"] = ["5", 0]
        case "no class_type":
            graph["6"] = {"inputs": {}}
    return graph


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("dangling", "missing node"),
        ("no output", "no output node"),
        ("cycle", "cycle"),
        ("two samplers", "2 output nodes"),
        ("hires fix", "chained samplers"),
        ("wrong socket", "needs a MODEL"),
        ("two checkpoints", "different checkpoints"),
        ("escaping checkpoint", "not a name inside checkpoints/"),
        ("absolute checkpoint", "not a name inside checkpoints/"),
        ("unknown sampler", "'dpm_adaptive' cannot be run here"),
        ("unknown scheduler", "unknown scheduler"),
        ("partial denoise of noise", "EmptyLatentImage"),
        ("too many images", "count"),
        ("odd size", "multiples of 8"),
        ("text link", "must be a value"),
        ("no class_type", "has no class_type"),
    ],
)
def test_malformed_or_inexpressible_graphs_are_refused_saying_why(change: str, says: str) -> None:
    error = refusal(mutated(change))
    assert says in error.message
    assert error.node_types == []


def test_ui_format_and_empty_graphs_are_refused() -> None:
    assert "Export (API)" in refusal({"nodes": [], "links": []}).message
    assert "no nodes" in refusal({}).message


def test_load_image_names_stay_inside_the_inputs_folder() -> None:
    for name in ("../secret.png", "/etc/x.png", "a.png [output]", "C:\\x.png"):
        graph = img2img_graph()
        graph["10"]["inputs"]["image"] = name
        assert "input" in refusal(graph).message


@pytest.mark.parametrize(
    ("seed", "runs_as"),
    [(2**63 - 1, 2**63 - 1), (2**63, 0), (2**64 - 1, 2**63 - 1), (18_000_000_000_000_000_000.0, None)],
)
def test_comfyuis_64_bit_seeds_run_folded_into_a_generationjobs_int64(seed: Any, runs_as: int | None) -> None:
    """ComfyUI's frontend randomizes seeds over 0..2**64-1; a float that big is a whole number too."""
    graph = default_graph()
    graph["3"]["inputs"]["seed"] = seed
    request = translate(graph, MODELS)
    expected = runs_as if runs_as is not None else int(seed) % 2**63
    assert request.seed == expected
    notes = extra(graph)["approximations"]
    assert (expected != int(seed)) == any("beyond a GenerationJob's int64" in note for note in notes)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, float("inf")])
def test_a_seed_outside_comfyuis_range_or_not_whole_is_refused(seed: Any) -> None:
    graph = default_graph()
    graph["3"]["inputs"]["seed"] = seed
    assert "seed" in str(refusal(graph))
