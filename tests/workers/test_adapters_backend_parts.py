"""The adapters' pure parts: sampler names, model names, image headers, graphs and progress."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kubepilot_api.generationjob import GenerationProgress, GenerationType
from kubepilot_api.workers.config import GenerationRequest
from kubepilot_workers.adapters.comfyui_events import history_failure
from kubepilot_workers.adapters.comfyui_graph import check_workflow, standard_graph, uploads_needed
from kubepilot_workers.adapters.comfyui_progress import ComfyProgress
from kubepilot_workers.adapters.files import image_info, name_in_type_folder, write_output_image
from kubepilot_workers.adapters.samplers import SamplerChoice, resolve_sampler
from kubepilot_workers.executor.backend import ExecutionError


@pytest.mark.parametrize(
    ("name", "comfyui", "sdcpp"),
    [
        ("Euler a", SamplerChoice("euler_ancestral", None), SamplerChoice("euler_a", None)),
        (
            "EulerAncestralDiscreteScheduler",
            SamplerChoice("euler_ancestral", None),
            SamplerChoice("euler_a", None),
        ),
        ("DPM++ 2M Karras", SamplerChoice("dpmpp_2m", "karras"), SamplerChoice("dpm++2m", "karras")),
        ("dpmpp_2m", SamplerChoice("dpmpp_2m", None), SamplerChoice("dpm++2m", None)),
        ("dpm++2m", SamplerChoice("dpmpp_2m", None), SamplerChoice("dpm++2m", None)),
        ("DDIM", SamplerChoice("ddim", None), SamplerChoice("ddim_trailing", None)),
    ],
)
def test_sampler_names_map_to_each_backends_own(
    name: str, comfyui: SamplerChoice, sdcpp: SamplerChoice
) -> None:
    assert resolve_sampler(name, "comfyui") == comfyui
    assert resolve_sampler(name, "sdcpp") == sdcpp


def test_an_empty_sampler_keeps_the_default_and_an_unknown_one_is_refused() -> None:
    assert resolve_sampler("  ", "comfyui") is None
    with pytest.raises(ExecutionError) as raised:
        resolve_sampler("warp drive", "comfyui")
    assert raised.value.code == "INVALID_REQUEST" and "euler" in raised.value.message
    with pytest.raises(ExecutionError):
        resolve_sampler("uni_pc", "sdcpp")


def test_model_paths_become_names_relative_to_their_type_folder() -> None:
    assert (
        name_in_type_folder("/models/checkpoints/sd15/a.safetensors", "checkpoints") == "sd15/a.safetensors"
    )
    assert name_in_type_folder("/data/checkpoints/x/checkpoints/b.ckpt", "checkpoints") == "b.ckpt"
    assert name_in_type_folder("/elsewhere/c.safetensors", "checkpoints") == "c.safetensors"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_image_headers_give_size_and_type(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (37, 23), (1, 2, 3)).save(buffer, format=fmt)
    width, height, mime = image_info(buffer.getvalue())
    assert (width, height, mime) == (37, 23, f"image/{fmt.lower()}")


def test_bytes_that_are_no_image_are_refused() -> None:
    with pytest.raises(ExecutionError) as raised:
        image_info(b"<html>502 Bad Gateway</html>")
    assert raised.value.code == "BAD_OUTPUT"


def test_output_images_are_written_whole_with_their_metadata(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    image = write_output_image(tmp_path / "job", 3, buffer.getvalue(), seed=5, metadata={"backend": "x"})
    assert Path(image.path).read_bytes() == buffer.getvalue() and image.path.endswith("image-03.png")
    assert json.loads(Path(image.metadataPath).read_text())["seed"] == 5
    assert Path(image.path).stat().st_mode & 0o777 == 0o644, "readable by the pods sharing the volume"
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["image-03.json", "image-03.png"]


def test_workflow_checks_catch_what_comfyui_would_not_explain() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "no nodes"),
        ({"1": {"inputs": {}}}, "class_type"),
        ({"1": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0]}}}, "missing node"),
    ]
    for workflow, expected in cases:
        with pytest.raises(ExecutionError, match=expected):
            check_workflow(workflow)
    graph = {"1": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    assert check_workflow(graph) == graph


def test_the_inpaint_graph_masks_the_latent_and_keeps_the_strength() -> None:
    request = GenerationRequest(type=GenerationType.INPAINT, image="/i.png", mask="/m.png", strength=0.6)
    assert uploads_needed(request) == ["/i.png", "/m.png"]
    graph = standard_graph(
        request,
        checkpoint="a.safetensors",
        seed=3,
        uploaded={"/i.png": "kubepilot/i.png", "/m.png": "kubepilot/m.png"},
        sizes={},
        prefix="kubepilot/j",
    )
    by_class = {node["class_type"]: node["inputs"] for node in graph.values()}
    assert by_class["LoadImageMask"] == {"image": "kubepilot/m.png", "channel": "red"}
    mask_node = next(k for k, v in graph.items() if v["class_type"] == "SetLatentNoiseMask")
    assert by_class["KSampler"]["latent_image"] == [mask_node, 0] and by_class["KSampler"]["denoise"] == 0.6
    assert by_class["SaveImage"]["filename_prefix"] == "kubepilot/j"


def test_an_image_job_without_its_image_is_refused() -> None:
    with pytest.raises(ExecutionError, match="input image"):
        uploads_needed(GenerationRequest(type=GenerationType.INPAINT, image="/i.png"))


def test_a_failed_history_entry_names_its_error() -> None:
    error_entry = {
        "status": {
            "status_str": "error",
            "messages": [
                ["execution_error", {"node_id": "3", "node_type": "KSampler", "exception_message": "bad"}]
            ],
        }
    }
    failure = history_failure(error_entry)
    assert failure is not None and failure.code == "EXECUTION_FAILED" and "KSampler" in failure.message
    assert history_failure({"status": {"status_str": "success"}, "outputs": {}}) is None
    assert history_failure({"outputs": {}}) is None


def test_node_progress_of_a_workflow_only_counts_nodes_that_run() -> None:
    reports: list[GenerationProgress] = []
    progress = ComfyProgress(reports.append, node_count=4, images_total=-1, by_steps=False)
    progress.cached(["1", "2"])
    progress.executing("3")
    progress.step(5, 10, "3")
    assert reports[-1].percent == 25 and reports[-1].currentNode == "3"
    progress.executing("4")
    assert reports[-1].percent == 50
    progress.finished(2)
    assert (reports[-1].percent, reports[-1].imagesDone, reports[-1].etaSeconds) == (100, 2, 0)
