"""sd.cpp Studio's pure translation: request checks, job and generation shapes in both compat
modes, image ids, and the A1111 shapes (no server, no cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubepilot_gateway.profiles.sdcpp_studio import a1111
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio import services as svc
from kubepilot_gateway.profiles.sdcpp_studio.config import SdcppSettings

SETTINGS = SdcppSettings.model_validate(
    {"models": [{"id": "tiny-sd", "name": "Tiny SD", "path": "diffusers/tiny-sd"}], "defaultSteps": 4}
)
JOB_ID = "0b9c6d3e-1f2a-4b5c-8d7e-9f0a1b2c3d4e"


def generate(body: Any) -> tr.Generation:
    return tr.generate_request(body, SETTINGS.models, SETTINGS.model, default_steps=SETTINGS.defaultSteps)


def completed_job(**status: Any) -> dict[str, Any]:
    request = generate({"prompt": "a cat", "model": "tiny-sd", "size": "64x128", "seed": 7, "n": 2})
    cr = tr.generation_job(JOB_ID, request)
    cr["metadata"]["creationTimestamp"] = "2026-01-02T03:04:05Z"
    cr["status"] = {
        "phase": "Completed",
        "startedAt": "2026-01-02T03:04:06Z",
        "completedAt": "2026-01-02T03:04:09Z",
        "outputs": [
            {"index": 1, "path": "generations/ns/x/1.png", "width": 64, "height": 128, "seed": 8},
            {"index": 0, "path": "generations/ns/x/0.png", "width": 64, "height": 128, "seed": 7},
        ],
        **status,
    }
    return cr


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "Missing required field: prompt"),
        ({"prompt": "x"}, "Missing required field: model"),
        ({"prompt": "x", "model": "nope"}, "Invalid model: nope"),
        ({"prompt": "x", "model": "tiny-sd", "size": "huge"}, "Invalid size: 'huge'"),
        ({"prompt": "x", "model": "tiny-sd", "size": "65x64"}, "Invalid width: 65"),
        ({"prompt": "x", "model": "tiny-sd", "n": 11}, "Invalid n: 11"),
        ({"prompt": "x", "model": "tiny-sd", "quality": "ultra"}, "Invalid quality: 'ultra'"),
        ({"prompt": "x", "model": "tiny-sd", "style": "bold"}, "Invalid style: 'bold'"),
        ({"prompt": "x", "model": "tiny-sd", "seed": "abc"}, "Invalid seed: 'abc'"),
        (["not", "an", "object"], "Invalid JSON body"),
    ],
)
def test_bad_generate_requests_are_refused_with_the_products_texts(body: Any, error: str) -> None:
    with pytest.raises(tr.BadRequest) as caught:
        generate(body)
    assert caught.value.message == error


def test_an_unknown_model_lists_the_available_ones_in_detail() -> None:
    with pytest.raises(tr.BadRequest) as caught:
        generate({"prompt": "x", "model": "nope"})
    assert caught.value.detail == "Model 'nope' not found in configuration. Available models: tiny-sd"


def test_a_generate_request_becomes_a_labelled_generation_job() -> None:
    request = generate({"prompt": "a cat", "model": "tiny-sd", "size": "64x128", "seed": 7, "n": 2})
    cr = tr.generation_job(JOB_ID, request)
    assert cr["metadata"]["name"] == JOB_ID and tr.is_ours(cr)
    assert cr["spec"] == {
        "type": "txt2img",
        "model": "diffusers/tiny-sd",
        "prompt": "a cat",
        "negativePrompt": "",
        "width": 64,
        "height": 128,
        "count": 2,
        "seed": 7,
        "steps": 4,
        "cfgScale": 7.0,
        "sampler": "",
    }
    assert tr.kept_request(cr)["model"] == "tiny-sd"


def test_job_objects_have_the_documents_fields_and_epoch_seconds_or_milliseconds() -> None:
    cr = completed_job()
    job = tr.job_object(cr, "document")
    assert job == {
        "id": JOB_ID,
        "type": "generate",
        "model": "tiny-sd",
        "prompt": "a cat",
        "negative_prompt": None,
        "size": "64x128",
        "seed": "7",
        "n": 2,
        "quality": None,
        "style": None,
        "input_image_path": None,
        "status": "completed",
        "progress": 1.0,
        "error": None,
        "created_at": 1767323045,
        "updated_at": 1767323049,
        "started_at": 1767323046,
        "completed_at": 1767323049,
    }
    assert tr.job_object(cr, "product")["created_at"] == 1767323045000


def test_a_failed_job_carries_its_error_and_stats_have_exactly_four_keys() -> None:
    failed = completed_job(phase="Failed", error={"code": "X", "message": "boom"})
    assert tr.job_object(failed, "document")["error"] == "boom"
    cancelled = completed_job(phase="Cancelled")
    assert tr.stats([completed_job(), failed, cancelled]) == {
        "pending": 0,
        "processing": 0,
        "completed": 1,
        "failed": 1,
    }


def test_generations_list_their_images_in_batch_order_with_stable_ids() -> None:
    detail = tr.generation_detail(completed_job(), "document", "/outputs")
    assert "image_count" not in detail
    assert [image["id"] for image in detail["images"]] == [f"{JOB_ID}-0", f"{JOB_ID}-1"]
    assert detail["images"][0] == {
        "id": f"{JOB_ID}-0",
        "generation_id": JOB_ID,
        "index_in_batch": 0,
        "file_path": "/outputs/generations/ns/x/0.png",
        "mime_type": "image/png",
        "width": 64,
        "height": 128,
        "revised_prompt": None,
    }
    assert tr.generation_summary(completed_job(), "document")["image_count"] == 2
    assert tr.generation_summary(completed_job(), "product")["status"] == "completed"
    assert tr.sync_answer(completed_job())["data"][1] == {
        "id": f"{JOB_ID}-1",
        "index": 1,
        "revised_prompt": None,
    }


@pytest.mark.parametrize(
    "value", ["../../etc/passwd", f"{JOB_ID}", f"{JOB_ID}-x", "abc-0", f"{JOB_ID}-12345"]
)
def test_image_ids_that_are_not_ours_do_not_parse(value: str) -> None:
    assert tr.split_image_id(value) is None


def test_a1111_samplers_map_onto_the_generators_and_unknown_ones_fall_back() -> None:
    assert a1111.sampler_for("Euler a", "automatic") == "Euler a"
    assert a1111.sampler_for("k_euler_a", None) == "Euler a"
    assert a1111.sampler_for("DPM++ 2M", "Karras") == "DPM++ 2M Karras"
    assert a1111.sampler_for("DPM++ 3M SDE Exponential", "") == ""
    assert all(set(s) == {"name", "aliases", "options"} for s in a1111.samplers())
    assert a1111.sd_models(SETTINGS.models) == [
        {
            "title": "tiny-sd",
            "model_name": "tiny-sd",
            "hash": None,
            "sha256": None,
            "filename": "diffusers/tiny-sd",
            "config": None,
        }
    ]


def test_a1111_txt2img_request_honours_size_batch_and_echoes_parameters() -> None:
    body = {"prompt": "p", "width": 64, "height": 96, "batch_size": 2, "n_iter": 2, "seed": 3, "steps": 2}
    generation, parameters = a1111.txt2img_request(body, SETTINGS.models[0], SETTINGS)
    assert (generation.width, generation.height, generation.n, generation.seed) == (64, 96, 4, 3)
    assert parameters["sampler_name"] == "Euler a" and parameters["steps"] == 2
    with pytest.raises(tr.BadRequest):
        a1111.txt2img_request({"batch_size": 5, "n_iter": 3}, SETTINGS.models[0], SETTINGS)
    info = json.loads(a1111.info(completed_job(), parameters, "tiny-sd"))
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7 and info["sd_model_name"] == "tiny-sd"


def test_a1111_progress_reports_the_running_job_and_counts_the_queue() -> None:
    running = completed_job(
        phase="Processing",
        progress={"step": 3, "totalSteps": 10, "imagesDone": 1, "percent": 40, "etaSeconds": 6},
    )
    queued = completed_job(phase="Pending")
    queued["metadata"]["name"] = "other"
    answer = a1111.progress([queued, running])
    assert answer["progress"] == 0.4 and answer["eta_relative"] == 6.0
    assert answer["state"]["job_count"] == 2 and answer["state"]["job_no"] == 1
    assert (answer["state"]["sampling_step"], answer["state"]["sampling_steps"]) == (3, 10)
    idle = a1111.progress([completed_job()])
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0


def test_model_service_phase_changes_become_model_status_events() -> None:
    entry = SETTINGS.models[0]
    starting = svc.new_service(entry)
    running = {**starting, "status": {"phase": "Running"}}
    stopping = {**running, "spec": {**running["spec"], "running": False}}
    assert svc.status_event(None, starting, "document", 1400) == {
        "type": "model_status_changed",
        "data": {"id": "tiny-sd", "status": "starting", "port": 1400},
    }
    assert svc.status_event(starting, running, "product", None) == {
        "channel": "models",
        "type": "model_status_changed",
        "data": {"modelId": "tiny-sd", "status": "running", "port": None},
    }
    assert svc.status_event(running, stopping, "document", None)["data"]["status"] == "stopping"  # type: ignore[index]
    assert svc.status_event(stopping, None, "document", None)["data"]["status"] == "stopped"  # type: ignore[index]
    assert svc.status_event(running, running, "document", None) is None  # no change, no event
    foreign = {**running, "metadata": {"name": "x", "labels": {}}}
    assert svc.status_event(None, foreign, "document", None) is None  # not one of this profile's


def test_upscale_factors_and_edit_sizes() -> None:
    settings = SdcppSettings.model_validate({"upscalers": [{"name": "X", "upscaler": "x.pth", "scale": 4}]})
    by_factor = tr.upscale_request({"upscaler": "X", "upscale_factor": "1.5"}, (100, 50), settings)
    assert (by_factor.factor, by_factor.size, by_factor.spec_type) == (1.5, "150x75", "upscale")
    to_size = tr.upscale_request(
        {"upscaling_resize_w": 300, "upscaling_resize_h": 100, "resize_mode": 1, "upscaler_1": "X"},
        (100, 50),
        settings,
        tr.A1111_UPSCALE,
    )
    assert (to_size.factor, to_size.size) == (3.0, "300x150")  # covers the target, keeps the aspect ratio
    with pytest.raises(tr.BadRequest, match="Upscaler not found: RealESRGAN 4x\\+"):
        tr.upscale_request({}, (10, 10), settings)  # the default name is not configured here
    assert tr.fitted_size(30, 5000) == (64, 4096)
    edit = tr.image_request(
        "edit", {"prompt": "p"}, (517, 300), SETTINGS.models, SETTINGS.model, SETTINGS.default()
    )
    assert (edit.size, edit.spec_type, edit.strength) == ("512x296", "img2img", 0.75)


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"override_settings": {"sd_model_checkpoint": "a"}, "sd_model_checkpoint": "b"}, "a"),
        ({"override_settings": {"CLIP_stop_at_last_layers": 1}, "sd_model_checkpoint": "b"}, "b"),
        ({"override_settings": None}, ""),  # "": the model set through the options, else the default
        ({}, ""),
    ],
)
def test_a1111_txt2img_takes_its_model_from_the_override_then_the_body(
    body: dict[str, Any], model: str
) -> None:
    assert a1111.requested_model(body) == model
