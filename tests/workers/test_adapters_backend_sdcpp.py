"""The sd.cpp adapter against a local stand-in of sd-server's native async job API."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.config import GenerationRequest, LoraFile
from kubepilot_workers.adapters.sdcpp import SdCppBackend, native_request
from kubepilot_workers.executor.backend import Cancelled, ExecutionError
from tests.workers.fakebackends import FakeSdCpp, RunInThread, job_context, png_bytes, wait_for

MODEL = "/models/checkpoints/tiny.gguf"


@pytest.fixture
def sdcpp() -> Iterator[FakeSdCpp]:
    server = FakeSdCpp(MODEL, loras=("styles/ink.safetensors",))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def backend(sdcpp: FakeSdCpp) -> Iterator[SdCppBackend]:
    adapter = SdCppBackend(sdcpp.url, poll_interval=0.02, unavailable_after=1.0)
    yield adapter
    adapter.close()


def test_txt2img_decodes_the_batch_into_pngs_with_their_seeds(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    request = GenerationRequest(
        type=GenerationType.TXT2IMG,
        modelPath=MODEL,
        prompt="a fox",
        negativePrompt="text",
        width=64,
        height=80,
        count=3,
        seed=7,
        steps=12,
        cfgScale=5.5,
        sampler="Euler a",
        loras=[LoraFile(path="/models/loras/styles/ink.safetensors", weight=0.8)],
    )
    context, reports = job_context(request, tmp_path / "out")

    images = backend.run(context)

    assert [(image.index, image.seed) for image in images] == [(0, 7), (1, 8), (2, 9)]
    for image in images:
        with Image.open(image.path) as written:
            assert written.size == (64, 80) and written.format == "PNG"
    body = next(iter(sdcpp.bodies.values()))
    assert body["sample_params"] == {
        "sample_steps": 12,
        "guidance": {"txt_cfg": 5.5},
        "sample_method": "euler_a",
    }
    assert body["lora"] == [{"path": "styles/ink.safetensors", "multiplier": 0.8}]
    assert (body["batch_count"], body["seed"], body["negative_prompt"]) == (3, 7, "text")
    assert reports[0].percent == 0 and reports[0].imagesTotal == 3
    assert reports[-1].percent == 100 and reports[-1].imagesDone == 3
    assert backend.health() == (True, MODEL)


def test_img2img_and_inpaint_send_their_images_inline(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    init.write_bytes(png_bytes(64, 64, (0, 0, 0)))
    mask.write_bytes(png_bytes(64, 64, (255, 255, 255)))
    request = GenerationRequest(
        type=GenerationType.INPAINT, image=str(init), mask=str(mask), strength=0.3, width=64, height=64
    )
    assert len(backend.run(job_context(request, tmp_path / "out")[0])) == 1
    body = next(iter(sdcpp.bodies.values()))
    assert base64.b64decode(body["init_image"]) == init.read_bytes()
    assert base64.b64decode(body["mask_image"]) == mask.read_bytes()
    assert body["strength"] == 0.3


def test_params_are_laid_over_the_native_request() -> None:
    request = GenerationRequest(
        type=GenerationType.TXT2IMG,
        steps=9,
        params={
            "clip_skip": 2,
            "sample_params": {"scheduler": "karras", "guidance": {"distilled_guidance": 3.5}},
        },
    )
    body = native_request(request, seed=1)
    assert body["clip_skip"] == 2
    assert body["sample_params"] == {
        "sample_steps": 9,
        "scheduler": "karras",
        "guidance": {"txt_cfg": 7.0, "distilled_guidance": 3.5},
    }


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"type": GenerationType.UPSCALE, "image": "/x.png"}, "UNSUPPORTED"),
        ({"type": GenerationType.WORKFLOW, "workflow": {"1": {}}}, "UNSUPPORTED"),
        ({"type": GenerationType.TXT2IMG, "sampler": "lms"}, "INVALID_REQUEST"),
        ({"type": GenerationType.IMG2IMG, "image": "/does/not/exist.png"}, "INVALID_REQUEST"),
        (
            {"type": GenerationType.TXT2IMG, "loras": [LoraFile(path="/models/loras/unknown.safetensors")]},
            "INVALID_REQUEST",
        ),
        (
            {"type": GenerationType.TXT2IMG, "modelPath": "/models/checkpoints/other.safetensors"},
            "MODEL_NOT_FOUND",
        ),
    ],
)
def test_requests_the_server_cannot_run_fail_with_a_clear_code(
    backend: SdCppBackend, tmp_path: Path, request_fields: dict[str, object], code: str
) -> None:
    request = GenerationRequest.model_validate(request_fields)
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(request, tmp_path)[0])
    assert raised.value.code == code and raised.value.message


def test_a_failed_generation_carries_the_servers_message(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    sdcpp.fail_next = "generate_image returned no results"
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(GenerationRequest(type=GenerationType.TXT2IMG), tmp_path)[0])
    assert raised.value.code == "EXECUTION_FAILED" and "no results" in raised.value.message


def test_cancelling_a_queued_job_cancels_it_on_the_server(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    sdcpp.paused = True
    context, _ = job_context(GenerationRequest(type=GenerationType.TXT2IMG), tmp_path)
    job = RunInThread(backend.run, context)
    wait_for(lambda: bool(sdcpp.queue))

    context.cancelled.set()
    job.join()

    assert isinstance(job.error, Cancelled)
    assert [job["status"] for job in sdcpp.jobs.values()] == ["cancelled"]


def test_cancelling_a_generating_job_gives_it_up_at_once(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    sdcpp.generate_seconds = 1.0
    context, _ = job_context(GenerationRequest(type=GenerationType.TXT2IMG), tmp_path)
    job = RunInThread(backend.run, context)
    wait_for(lambda: any(job["status"] == "generating" for job in sdcpp.jobs.values()))

    context.cancelled.set()
    job.join(timeout=0.8)

    assert isinstance(job.error, Cancelled)
    assert not list(tmp_path.glob("image-*"))


def test_a_server_that_is_down_is_unhealthy_and_fails_jobs_as_unavailable(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    sdcpp.stop()
    assert backend.health() == (False, "")
    with pytest.raises(ExecutionError) as raised:
        backend.run(job_context(GenerationRequest(type=GenerationType.TXT2IMG), tmp_path)[0])
    assert raised.value.code == "BACKEND_UNAVAILABLE"


def test_the_server_dying_mid_job_fails_it_as_unavailable(
    sdcpp: FakeSdCpp, backend: SdCppBackend, tmp_path: Path
) -> None:
    sdcpp.generate_seconds = 30.0
    context, _ = job_context(GenerationRequest(type=GenerationType.TXT2IMG), tmp_path)
    job = RunInThread(backend.run, context)
    wait_for(lambda: any(job["status"] == "generating" for job in sdcpp.jobs.values()))

    sdcpp.stop()
    job.join()

    assert isinstance(job.error, ExecutionError) and job.error.code == "BACKEND_UNAVAILABLE"
