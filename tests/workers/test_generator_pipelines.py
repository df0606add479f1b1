"""The diffusers backend on tiny random-weight models: sizes, seeds, modes, LoRA, upscale, cancel.

Runs on the CPU; set ``KUBEPILOT_TEST_DEVICE=cuda`` to run the same checks on a GPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from kubepilot_api.generationjob import GenerationProgress, OutputImage
from kubepilot_api.workers.config import GenerationRequest, GeneratorConfig, LoraFile, Workload
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext
from kubepilot_workers.generator.backend import DiffusersBackend
from kubepilot_workers.generator.outputs import read_parameters
from kubepilot_workers.generator.pipelines import PipelineKind
from kubepilot_workers.tinymodels import save_tiny_sd, save_tiny_sd_inpaint, save_tiny_upscaler

UPSCALER = "RealESRGAN 4x+"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.getbasetemp() / "tiny-models"
    return {
        "sd": save_tiny_sd(root / "tiny-sd"),
        "inpaint": save_tiny_sd_inpaint(root / "tiny-sd-inpaint"),
        "upscaler": save_tiny_upscaler(root / "tiny-upscaler-x4.safetensors"),
    }


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny models are all overhead: one torch thread is faster and fair to parallel test runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backend(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> DiffusersBackend:
    config = GeneratorConfig(
        workload=Workload(kind="GenerationJob", namespace="ns", name="test"),
        mode="oneshot",
        modelPath=str(models["sd"]),
        outputsDir=str(tmp_path_factory.mktemp("outputs")),
        upscalers={UPSCALER: str(models["upscaler"])},
        device=os.environ.get("KUBEPILOT_TEST_DEVICE", "cpu"),
    )
    return DiffusersBackend(config)


def _run(
    backend: DiffusersBackend, output_dir: Path, **fields: Any
) -> tuple[list[OutputImage], list[GenerationProgress]]:
    request = GenerationRequest.model_validate(
        {"prompt": "a red cat", "width": 32, "height": 32, "steps": 2, **fields}
    )
    progress: list[GenerationProgress] = []
    context = JobContext(
        job_id="job-1", request=request, output_dir=output_dir, report_progress=progress.append
    )
    return backend.run(context), progress


def _pixels(output: OutputImage) -> bytes:
    with Image.open(output.path) as image:
        return image.convert("RGB").tobytes()


def test_txt2img_honours_size_count_and_seed_and_writes_parameters(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    outputs, progress = _run(backend, tmp_path, type="txt2img", width=48, height=32, count=2, seed=7, steps=3)

    assert [(o.index, o.width, o.height, o.seed) for o in outputs] == [(0, 48, 32, 7), (1, 48, 32, 8)]
    for output in outputs:
        with Image.open(output.path) as image:
            assert image.size == (48, 32)
        text, chunk = read_parameters(output.path)
        assert text.startswith("a red cat\n") and f"Seed: {output.seed}" in text and "Size: 48x32" in text
        assert chunk["seed"] == output.seed and chunk["steps"] == 3
        assert json.loads(Path(output.metadataPath).read_text()) == chunk
    steps = [(p.step, p.imagesDone) for p in progress]
    assert steps == [(1, 0), (2, 0), (3, 0), (3, 1), (1, 1), (2, 1), (3, 1), (3, 2)]
    assert progress[-1].percent == 100 and progress[-1].totalSteps == 3


def test_the_same_seed_gives_the_same_pixels_and_another_seed_does_not(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    first, _ = _run(backend, tmp_path / "a", type="txt2img", seed=42)
    again, _ = _run(backend, tmp_path / "b", type="txt2img", seed=42)
    other, _ = _run(backend, tmp_path / "c", type="txt2img", seed=43)
    assert _pixels(first[0]) == _pixels(again[0])
    assert _pixels(first[0]) != _pixels(other[0])

    picked, _ = _run(backend, tmp_path / "d", type="txt2img", seed=-1)
    assert picked[0].seed >= 0
    replay, _ = _run(backend, tmp_path / "e", type="txt2img", seed=picked[0].seed)
    assert _pixels(picked[0]) == _pixels(replay[0]), "the recorded seed must reproduce the image"


def test_img2img_variation_and_inpaint_produce_the_requested_size(
    backend: DiffusersBackend, models: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "source.png"
    Image.new("RGB", (40, 24), (200, 30, 30)).save(source)
    mask = tmp_path / "mask.png"
    Image.new("L", (40, 24), 255).save(mask)

    for kind in ("img2img", "variation"):
        outputs, _ = _run(
            backend, tmp_path / kind, type=kind, image=str(source), width=32, height=24, strength=0.5
        )
        assert (outputs[0].width, outputs[0].height) == (32, 24)
        assert read_parameters(outputs[0].path)[1]["strength"] == 0.5
    inpainted, _ = _run(backend, tmp_path / "inpaint", type="inpaint", image=str(source), mask=str(mask))
    assert (inpainted[0].width, inpainted[0].height) == (32, 32)
    nine_channel, _ = _run(
        backend,
        tmp_path / "in9",
        type="inpaint",
        image=str(source),
        mask=str(mask),
        modelPath=str(models["inpaint"]),
    )
    assert (nine_channel[0].width, nine_channel[0].height) == (32, 32)
    with pytest.raises(ExecutionError) as refused:
        _run(backend, tmp_path / "t9", type="txt2img", modelPath=str(models["inpaint"]))
    assert refused.value.code == "UNSUPPORTED"


def test_derived_pipelines_share_the_loaded_weights_and_the_model_stays_loaded(
    backend: DiffusersBackend, models: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "source.png"
    Image.new("RGB", (32, 32), "blue").save(source)
    _run(backend, tmp_path / "a", type="txt2img", modelPath=str(models["sd"]))
    _run(backend, tmp_path / "b", type="img2img", image=str(source), modelPath=str(models["sd"]))
    assert backend.last_load_seconds == 0.0, "the second job must reuse the loaded model"
    text2img = backend.pipelines.get(str(models["sd"]), PipelineKind.TXT2IMG)
    img2img = backend.pipelines.get(str(models["sd"]), PipelineKind.IMG2IMG)
    assert img2img is not text2img and img2img.unet is text2img.unet and img2img.vae is text2img.vae
    assert backend.health() == (True, str(models["sd"]))


def test_upscale_reaches_the_factor_with_the_named_model_and_unknown_names_fail(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    sources = []
    for index, size in enumerate([(20, 12), (8, 8)]):
        path = tmp_path / f"in-{index}.png"
        Image.new("RGB", size, (10, 120, 250)).save(path)
        sources.append(str(path))
    outputs, _ = _run(
        backend,
        tmp_path / "up",
        type="upscale",
        image=sources[0],
        images=sources[1:],
        upscaler=UPSCALER,
        upscaleFactor=2,
    )
    assert [(o.width, o.height) for o in outputs] == [(40, 24), (16, 16)]
    text, chunk = read_parameters(outputs[0].path)
    assert chunk["upscaler"] == UPSCALER and "Postprocess upscaler" in text
    with Image.open(outputs[0].path) as image:
        red, _green, blue = image.getpixel((20, 12))  # type: ignore[misc]
    assert blue > red, "the tiny upscaler stays close to its input"

    big, _ = _run(
        backend, tmp_path / "x6", type="upscale", image=sources[1], upscaler=UPSCALER, upscaleFactor=6
    )
    assert (big[0].width, big[0].height) == (48, 48)
    with pytest.raises(ExecutionError) as unknown:
        _run(backend, tmp_path / "bad", type="upscale", image=sources[0], upscaler="SwinIR 9x")
    assert unknown.value.code == "MODEL_NOT_FOUND"


def _save_tiny_lora(model_dir: Path, target: Path) -> Path:
    import diffusers.utils
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    # diffusers is untyped here; the trainer saves its LoRAs the same way (peft state -> diffusers keys).
    utilities: Any = diffusers.utils
    loader: Any = StableDiffusionPipeline
    pipeline = loader.from_pretrained(str(model_dir))
    torch.manual_seed(3)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    pipeline.unet.add_adapter(config)
    layers = utilities.convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet))
    StableDiffusionPipeline.save_lora_weights(
        str(target.parent), unet_lora_layers=layers, weight_name=target.name
    )
    return target


def test_a_job_lora_changes_the_image_and_is_unloaded_afterwards(
    backend: DiffusersBackend, models: dict[str, Path], tmp_path: Path
) -> None:
    lora = _save_tiny_lora(models["sd"], tmp_path / "loras" / "tiny-lora.safetensors")
    plain, _ = _run(backend, tmp_path / "plain", type="txt2img", seed=5)
    styled, _ = _run(
        backend, tmp_path / "lora", type="txt2img", seed=5, loras=[{"path": str(lora), "weight": 1.0}]
    )
    plain_again, _ = _run(backend, tmp_path / "again", type="txt2img", seed=5)

    assert _pixels(styled[0]) != _pixels(plain[0])
    assert _pixels(plain_again[0]) == _pixels(plain[0]), "the LoRA must be gone after its job"
    assert read_parameters(styled[0].path)[1]["loras"] == [{"path": str(lora), "weight": 1.0}]
    with pytest.raises(ExecutionError) as missing:
        _run(
            backend,
            tmp_path / "missing",
            type="txt2img",
            loras=[LoraFile(path=str(tmp_path / "nope.safetensors"))],
        )
    assert missing.value.code == "MODEL_NOT_FOUND"


def test_cancelling_between_steps_stops_the_job_without_writing_an_image(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    request = GenerationRequest(type="txt2img", prompt="x", width=32, height=32, steps=20, count=3)
    context = JobContext(
        job_id="c", request=request, output_dir=tmp_path / "out", report_progress=lambda p: None
    )

    def cancel_at_step_two(progress: GenerationProgress) -> None:
        if progress.step == 2:
            context.cancelled.set()

    context.report_progress = cancel_at_step_two
    with pytest.raises(Cancelled):
        backend.run(context)
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"type": "txt2img", "width": 30}, "INVALID_REQUEST"),
        ({"type": "txt2img", "sampler": "warp drive"}, "INVALID_REQUEST"),
        ({"type": "img2img", "image": "/nonexistent/init.png"}, "INPUT_NOT_FOUND"),
        ({"type": "img2img"}, "INVALID_REQUEST"),
        ({"type": "workflow"}, "UNSUPPORTED"),
        ({"type": "txt2img", "modelPath": "/nonexistent/model"}, "MODEL_NOT_FOUND"),
    ],
)
def test_bad_requests_fail_with_a_clear_code(
    backend: DiffusersBackend, tmp_path: Path, fields: dict[str, Any], code: str
) -> None:
    with pytest.raises(ExecutionError) as failure:
        _run(backend, tmp_path, **fields)
    assert failure.value.code == code


def test_a_named_sampler_is_used_and_recorded(backend: DiffusersBackend, tmp_path: Path) -> None:
    outputs, _ = _run(backend, tmp_path, type="txt2img", sampler="Euler a", seed=1)
    assert read_parameters(outputs[0].path)[1]["sampler"] == "Euler a"
    again, _ = _run(backend, tmp_path / "again", type="txt2img", sampler="euler_a", seed=1)
    assert _pixels(outputs[0]) == _pixels(again[0])


def test_an_unwritable_output_folder_fails_cleanly_without_partial_files(tmp_path: Path) -> None:
    from kubepilot_workers.generator.outputs import ImageParameters, write_image

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    parameters = ImageParameters(job_id="j", type="txt2img", index=0, seed=1, model="m")
    with pytest.raises(ExecutionError) as failure:
        write_image(Image.new("RGB", (8, 8)), blocker / "out", parameters)
    assert failure.value.code == "OUTPUT_FAILED"

    written = write_image(Image.new("RGB", (8, 8)), tmp_path / "ok", parameters)
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["image-000.json", "image-000.png"]
    assert written.metadataPath.endswith("image-000.json")
