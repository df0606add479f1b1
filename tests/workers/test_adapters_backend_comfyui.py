"""The ComfyUI adapter against a local ComfyUI stand-in over real HTTP and WebSocket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.config import GenerationRequest, LoraFile
from kubepilot_workers.adapters import comfyui_events
from kubepilot_workers.adapters.comfyui import ComfyUIBackend
from kubepilot_workers.executor.backend import Cancelled, ExecutionError
from tests.workers.fakebackends import FakeComfyUI, RunInThread, job_context, png_bytes, wait_for

CHECKPOINT = "/models/checkpoints/sd15/tiny.safetensors"


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[FakeComfyUI]:
    server = FakeComfyUI(tmp_path / "comfy")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def backend(comfy: FakeComfyUI) -> Iterator[ComfyUIBackend]:
    adapter = ComfyUIBackend(comfy.url, poll_interval=0.05, unavailable_after=1.0, cancel_grace=3.0)
    yield adapter
    adapter.close()


def _only_prompt(comfy: FakeComfyUI) -> dict[str, dict[str, object]]:
    assert len(comfy.prompts) == 1
    return next(iter(comfy.prompts.values()))


def _nodes(graph: dict[str, dict[str, object]], class_type: str) -> list[dict[str, object]]:
    return [node for node in graph.values() if node["class_type"] == class_type]


def test_txt2img_runs_the_standard_graph_with_step_progress_and_copies_the_images(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    comfy.folders["loras"].append("style/ink.safetensors")
    request = GenerationRequest(
        type=GenerationType.TXT2IMG,
        modelPath=CHECKPOINT,
        prompt="a lighthouse",
        negativePrompt="blurry",
        width=64,
        height=48,
        count=2,
        seed=42,
        steps=8,
        sampler="DPM++ 2M Karras",
        loras=[LoraFile(path="/models/loras/style/ink.safetensors", weight=0.6)],
    )
    context, reports = job_context(request, tmp_path / "out")

    images = backend.run(context)

    assert [image.index for image in images] == [0, 1]
    for image in images:
        assert (image.width, image.height, image.seed, image.mimeType) == (64, 48, 42, "image/png")
        with Image.open(image.path) as written:
            assert written.size == (64, 48)
        assert Path(image.metadataPath).is_file()
    graph = _only_prompt(comfy)
    assert _nodes(graph, "CheckpointLoaderSimple")[0]["inputs"] == {"ckpt_name": "sd15/tiny.safetensors"}
    lora = _nodes(graph, "LoraLoader")[0]["inputs"]
    assert (
        isinstance(lora, dict)
        and lora["lora_name"] == "style/ink.safetensors"
        and lora["strength_model"] == 0.6
    )
    sampler = _nodes(graph, "KSampler")[0]["inputs"]
    assert isinstance(sampler, dict)
    assert (sampler["sampler_name"], sampler["scheduler"], sampler["steps"], sampler["seed"]) == (
        "dpmpp_2m",
        "karras",
        8,
        42,
    )
    steps = [report.step for report in reports if report.totalSteps == 8]
    assert steps == sorted(steps) and 8 in steps, "per-step progress must arrive from the WebSocket"
    assert reports[-1].percent == 100 and reports[-1].imagesDone == 2 and reports[-1].imagesTotal == 2
    assert all(0 <= report.percent <= 100 or report.percent == -1 for report in reports)
    assert backend.health() == (True, "sd15/tiny.safetensors")


def test_img2img_uploads_the_init_image_and_denoises_by_the_strength(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    init = tmp_path / "init.png"
    init.write_bytes(png_bytes(40, 32, (10, 200, 10)))
    request = GenerationRequest(
        type=GenerationType.IMG2IMG,
        modelPath=CHECKPOINT,
        prompt="x",
        image=str(init),
        strength=0.4,
        steps=3,
        count=2,
    )
    context, _ = job_context(request, tmp_path / "out", job_id="uid/with odd chars")

    images = backend.run(context)

    assert [(image.width, image.height) for image in images] == [(40, 32), (40, 32)]
    graph = _only_prompt(comfy)
    load = _nodes(graph, "LoadImage")[0]["inputs"]
    assert isinstance(load, dict)
    uploaded = comfy.root / "input" / str(load["image"])
    assert uploaded.read_bytes() == init.read_bytes()
    sampler = _nodes(graph, "KSampler")[0]["inputs"]
    assert isinstance(sampler, dict) and sampler["denoise"] == 0.4
    assert _nodes(graph, "RepeatLatentBatch")[0]["inputs"]["amount"] == 2  # type: ignore[index]


def test_inpaint_and_upscale_build_graphs_comfyui_accepts(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    init.write_bytes(png_bytes(32, 32, (1, 2, 3)))
    mask.write_bytes(png_bytes(32, 32, (255, 255, 255)))
    inpaint = GenerationRequest(
        type=GenerationType.INPAINT, modelPath=CHECKPOINT, image=str(init), mask=str(mask), steps=2
    )
    assert len(backend.run(job_context(inpaint, tmp_path / "inpaint")[0])) == 1

    comfy.folders["upscale_models"].append("RealESRGAN_x4plus.pth")
    upscale = GenerationRequest(
        type=GenerationType.UPSCALE,
        image=str(init),
        upscaler="/models/upscale_models/RealESRGAN_x4plus.pth",
        upscaleFactor=2.0,
    )
    images = backend.run(job_context(upscale, tmp_path / "upscale", job_id="up")[0])
    assert [(image.width, image.height) for image in images] == [(64, 64)]


def test_a_workflow_runs_as_written_and_only_saved_images_are_outputs(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    workflow = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 16, "height": 24, "batch_size": 1}},
        "2": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": 0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "mine"}},
    }
    request = GenerationRequest(type=GenerationType.WORKFLOW, workflow=workflow)
    context, reports = job_context(request, tmp_path / "out")

    images = backend.run(context)

    assert len(images) == 1 and (images[0].width, images[0].height, images[0].seed) == (16, 24, -1)
    assert _only_prompt(comfy) == workflow
    assert {"1", "2", "4"} <= {report.currentNode for report in reports}
    percents = [report.percent for report in reports if report.percent >= 0]
    assert percents == sorted(percents) and percents[-1] == 100


@pytest.mark.parametrize(
    ("workflow", "expected"),
    [
        ({"1": {"class_type": "NoSuchNode", "inputs": {}}}, "does not exist"),
        ({"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}, "Required input is missing"),
    ],
)
def test_an_invalid_workflow_fails_with_comfyuis_reason(
    backend: ComfyUIBackend, tmp_path: Path, workflow: dict[str, object], expected: str
) -> None:
    request = GenerationRequest(type=GenerationType.WORKFLOW, workflow=workflow)
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == "INVALID_WORKFLOW" and expected in raised.value.message


def test_a_ui_format_workflow_is_refused_before_reaching_comfyui(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    request = GenerationRequest(
        type=GenerationType.WORKFLOW, workflow={"nodes": [], "links": [], "version": 0.4}
    )
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == "INVALID_WORKFLOW" and "API" in raised.value.message
    assert comfy.prompts == {}


def test_an_unknown_checkpoint_is_model_not_found(backend: ComfyUIBackend, tmp_path: Path) -> None:
    request = GenerationRequest(
        type=GenerationType.TXT2IMG, modelPath="/models/checkpoints/missing.safetensors"
    )
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == "MODEL_NOT_FOUND" and "missing.safetensors" in raised.value.message


def test_the_only_checkpoint_is_used_when_the_job_names_none(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    request = GenerationRequest(type=GenerationType.TXT2IMG, width=16, height=16, steps=1)
    assert len(backend.run(job_context(request, tmp_path)[0])) == 1
    loader = _nodes(_only_prompt(comfy), "CheckpointLoaderSimple")[0]["inputs"]
    assert loader == {"ckpt_name": "sd15/tiny.safetensors"}


def test_a_node_failure_fails_the_job_and_out_of_memory_is_recognised(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    comfy.fail_class = "KSampler"
    comfy.fail_exception = ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB")
    request = GenerationRequest(type=GenerationType.TXT2IMG, modelPath=CHECKPOINT, steps=2)
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == "OUT_OF_MEMORY" and "KSampler" in raised.value.message

    comfy.fail_exception = ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied")
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == "EXECUTION_FAILED" and "shapes" in raised.value.message


def test_cancelling_a_running_job_interrupts_comfyui(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    comfy.step_delay = 0.02
    request = GenerationRequest(type=GenerationType.TXT2IMG, modelPath=CHECKPOINT, steps=400)
    context, reports = job_context(request, tmp_path)
    job = RunInThread(backend.run, context)
    wait_for(lambda: any(report.step >= 2 for report in reports))

    context.cancelled.set()
    job.join()

    assert isinstance(job.error, Cancelled)
    prompt_id = next(iter(comfy.prompts))
    assert comfy.interrupts == [{"prompt_id": prompt_id}]
    assert comfy.history[prompt_id]["status"]["status_str"] == "error"


def test_cancelling_a_queued_job_deletes_it_from_the_queue(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    comfy.paused = True
    request = GenerationRequest(type=GenerationType.TXT2IMG, modelPath=CHECKPOINT, steps=2)
    context, _ = job_context(request, tmp_path)
    job = RunInThread(backend.run, context)
    wait_for(lambda: bool(comfy.pending))

    context.cancelled.set()
    job.join()

    assert isinstance(job.error, Cancelled)
    assert comfy.deleted == list(comfy.prompts) and comfy.interrupts == [] and comfy.history == {}


def test_a_silent_websocket_falls_back_to_history(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(comfyui_events, "SILENCE_CHECK_SECONDS", 0.1)
    comfy.send_events = False
    request = GenerationRequest(
        type=GenerationType.TXT2IMG, modelPath=CHECKPOINT, steps=2, width=16, height=16
    )
    images = backend.run(job_context(request, tmp_path)[0])
    assert len(images) == 1 and Path(images[0].path).is_file()


def test_a_backend_that_is_down_is_unhealthy_and_fails_jobs_as_unavailable(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    comfy.stop()
    assert backend.health() == (False, "")
    request = GenerationRequest(type=GenerationType.TXT2IMG, modelPath=CHECKPOINT)
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == "BACKEND_UNAVAILABLE"


def test_comfyui_dying_mid_job_fails_it_as_unavailable(
    comfy: FakeComfyUI, backend: ComfyUIBackend, tmp_path: Path
) -> None:
    comfy.step_delay = 0.02
    request = GenerationRequest(type=GenerationType.TXT2IMG, modelPath=CHECKPOINT, steps=400)
    context, reports = job_context(request, tmp_path)
    job = RunInThread(backend.run, context)
    wait_for(lambda: any(report.step >= 1 for report in reports))

    comfy.stop()
    job.join()

    assert isinstance(job.error, ExecutionError) and job.error.code == "BACKEND_UNAVAILABLE"
    assert not list(tmp_path.glob("image-*")), "no output may be written for a failed job"
