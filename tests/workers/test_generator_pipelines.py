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
    on_disk: list[list[str]] = []
    request = GenerationRequest(
        type="txt2img", prompt="a red cat", width=48, height=32, count=2, seed=7, steps=3
    )
    progress: list[GenerationProgress] = []

    def record(report: GenerationProgress) -> None:
        progress.append(report)
        on_disk.append(sorted(path.name for path in tmp_path.glob("*.png")))

    context = JobContext(job_id="job-1", request=request, output_dir=tmp_path, report_progress=record)
    outputs = backend.run(context)

    assert [(o.index, o.width, o.height, o.seed) for o in outputs] == [(0, 48, 32, 7), (1, 48, 32, 8)]
    for output in outputs:
        with Image.open(output.path) as image:
            assert image.size == (48, 32)
        text, chunk = read_parameters(output.path)
        assert text.startswith("a red cat\n") and f"Seed: {output.seed}" in text and "Size: 48x32" in text
        assert chunk["seed"] == output.seed and chunk["steps"] == 3
        assert json.loads(Path(output.metadataPath).read_text()) == chunk
        # Other pods (the gateway, a dashboard) read the files from the shared volume.
        assert Path(output.path).stat().st_mode & 0o777 == 0o644
    # Images are written on a background thread while the next one is denoised, so the "image done"
    # reports may come between the next image's steps; each one comes once that image is on disk.
    done = [p.imagesDone for p in progress]
    assert [after - before for before, after in zip([0, *done], done, strict=False)].count(1) == 2
    assert done == sorted(done) and [p.percent for p in progress] == sorted(p.percent for p in progress)
    step_reports = [p.step for p, before in zip(progress, [0, *done], strict=False) if p.imagesDone == before]
    assert step_reports == [1, 2, 3, 1, 2, 3]
    for report, pngs in zip(progress, on_disk, strict=True):
        assert pngs[: report.imagesDone] == [f"image-{i:03d}.png" for i in range(report.imagesDone)]
    assert (progress[-1].step, progress[-1].imagesDone, progress[-1].percent) == (3, 2, 100)


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


def test_output_seeds_wrap_within_int64(backend: DiffusersBackend, tmp_path: Path) -> None:
    """A status field holds an int64: the second image of seed 2**63-1 is seed 0, not 2**63."""
    outputs, _ = _run(backend, tmp_path / "a", type="txt2img", seed=2**63 - 1, count=2)
    assert [o.seed for o in outputs] == [2**63 - 1, 0]
    zero, _ = _run(backend, tmp_path / "b", type="txt2img", seed=0)
    assert _pixels(outputs[1]) == _pixels(zero[0])


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
        ({"type": "workflow"}, "INVALID_WORKFLOW"),
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


def test_cancelling_during_a_later_image_keeps_the_files_of_the_images_before_it(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    request = GenerationRequest(type="txt2img", prompt="x", width=32, height=32, steps=3, count=3, seed=4)
    steps_seen: list[int] = []

    def cancel_in_the_second_image(progress: GenerationProgress) -> None:
        steps_seen.append(progress.step)
        if steps_seen.count(2) == 2:
            context.cancelled.set()

    context = JobContext(
        job_id="c", request=request, output_dir=tmp_path, report_progress=cancel_in_the_second_image
    )
    with pytest.raises(Cancelled):
        backend.run(context)
    # Image 0 was computed before the cancel: its write, in flight or not, finished before run returned.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["image-000.json", "image-000.png"]
    assert read_parameters(tmp_path / "image-000.png")[1]["seed"] == 4


def test_a_write_failing_after_the_first_image_fails_the_job_with_output_failed(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    output_dir = tmp_path / "out"
    moved = tmp_path / "moved"
    request = GenerationRequest(type="txt2img", prompt="x", width=32, height=32, steps=2, count=3)

    def break_the_folder_after_the_first_image(progress: GenerationProgress) -> None:
        if progress.imagesDone == 1 and not moved.exists():
            output_dir.rename(moved)
            output_dir.write_text("a file where the output folder should be")

    context = JobContext(
        job_id="w",
        request=request,
        output_dir=output_dir,
        report_progress=break_the_folder_after_the_first_image,
    )
    with pytest.raises(ExecutionError) as failure:
        backend.run(context)
    assert failure.value.code == "OUTPUT_FAILED"
    assert sorted(path.name for path in moved.iterdir()) == ["image-000.json", "image-000.png"]
    assert output_dir.is_file()


def _save_undamped_upscaler(target: Path) -> Path:
    """A random RealESRGAN-Compact x4 without the damping of ``save_tiny_upscaler``.

    The damped model's output is almost the nearest-neighbour upscale, so bad tile borders would barely
    show; this one changes every pixel with its 4-pixel neighbourhood (4 stacked 3x3 convolutions).
    """
    import importlib

    from safetensors.torch import save_file

    from kubepilot_workers.generator.upscale import import_spandrel

    import_spandrel()
    compact: Any = importlib.import_module("spandrel.architectures.Compact").Compact
    torch.manual_seed(0)
    model = compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(target))
    return target


def test_tiled_upscaling_matches_the_one_pass_result_and_stops_between_tiles(tmp_path: Path) -> None:
    from kubepilot_workers.generator.upscale import Upscaler

    model = _save_undamped_upscaler(tmp_path / "compact-x4.safetensors")
    torch.manual_seed(0)
    noise = torch.randint(0, 256, (28, 40, 3), dtype=torch.uint8)
    image = Image.frombytes("RGB", (40, 28), bytes(noise.numpy().tobytes()))
    cpu = torch.device("cpu")
    one_pass = Upscaler("whole", model, cpu, torch.float32).upscale(image, 4, lambda: False)
    checks: list[int] = []

    def count_checks() -> bool:
        checks.append(1)
        return False

    def difference(tile: int, overlap: int) -> torch.Tensor:
        upscaler = Upscaler("tiled", model, cpu, torch.float32, tile=tile, overlap=overlap)
        in_tiles = upscaler.upscale(image, 4, count_checks)
        assert in_tiles.size == one_pass.size == (160, 112)
        return (
            torch.frombuffer(bytearray(in_tiles.tobytes()), dtype=torch.uint8).int()
            - torch.frombuffer(bytearray(one_pass.tobytes()), dtype=torch.uint8).int()
        ).abs()

    # 24-pixel tiles with an 8-pixel margin keep 8x8 pixels each: 4 x 5 tiles.
    matched = difference(24, 8)
    assert len(checks) == 1 + 20, "one check before the pass, one before each tile"
    assert matched.max().item() <= 1 and matched.float().mean().item() < 0.01
    # The check has teeth: a margin smaller than the receptive field leaves visible seams.
    seams = difference(24, 2)
    assert seams.max().item() > 1

    def stop_at_the_third_tile() -> bool:
        checks.append(1)
        return len(checks) > 3

    checks.clear()
    with pytest.raises(Cancelled):
        Upscaler("tiled", model, cpu, torch.float32, tile=24, overlap=8).upscale(
            image, 4, stop_at_the_third_tile
        )
    assert len(checks) == 4
    with pytest.raises(ValueError):
        Upscaler("bad", model, cpu, torch.float32, tile=16, overlap=8)


def _unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Diffusers UNet keys to the original SD (LDM) layout, for any block count (inverse of diffusers')."""
    blocks, layers = len(config["block_out_channels"]), config["layers_per_block"]
    prefixes = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
        ("middle_block.0.", "mid_block.resnets.0."),
        ("middle_block.1.", "mid_block.attentions.0."),
        ("middle_block.2.", "mid_block.resnets.1."),
    ]
    for i in range(blocks):
        for j in range(layers):
            prefixes.append((f"input_blocks.{(layers + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            prefixes.append(
                (f"input_blocks.{(layers + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}.")
            )
        for j in range(layers + 1):
            prefixes.append((f"output_blocks.{(layers + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            prefixes.append((f"output_blocks.{(layers + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < blocks - 1:
            upsampler = 2 if config["up_block_types"][i].startswith("CrossAttn") else 1
            prefixes.append(
                (f"input_blocks.{(layers + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv.")
            )
            prefixes.append(
                (f"output_blocks.{(layers + 1) * i + layers}.{upsampler}.", f"up_blocks.{i}.upsamplers.0.")
            )
    resnet = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("emb_layers.1.", "time_emb_proj."),
        ("skip_connection.", "conv_shortcut."),
    ]
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ldm, diffusers_prefix = next((ldm, hf) for ldm, hf in prefixes if key.startswith(hf))
        rest = key[len(diffusers_prefix) :]
        if ".resnets." in diffusers_prefix:
            rest = next((new + rest[len(old) :] for new, old in resnet if rest.startswith(old)), rest)
        converted[f"model.diffusion_model.{ldm}{rest}"] = value
    return converted


def _vae_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Diffusers AutoencoderKL keys to the original SD layout (decoder blocks numbered in reverse)."""
    blocks, layers = len(config["block_out_channels"]), config["layers_per_block"]
    prefixes = [
        ("encoder.norm_out.", "encoder.conv_norm_out."),
        ("decoder.norm_out.", "decoder.conv_norm_out."),
    ]
    for part in ("encoder", "decoder"):
        prefixes += [
            (f"{part}.mid.attn_1.", f"{part}.mid_block.attentions.0."),
            (f"{part}.mid.block_1.", f"{part}.mid_block.resnets.0."),
            (f"{part}.mid.block_2.", f"{part}.mid_block.resnets.1."),
        ]
    for i in range(blocks):
        prefixes += [
            (f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.") for j in range(layers)
        ]
        prefixes += [
            (f"decoder.up.{blocks - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.")
            for j in range(layers + 1)
        ]
        if i < blocks - 1:
            prefixes.append((f"encoder.down.{i}.downsample.", f"encoder.down_blocks.{i}.downsamplers.0."))
            prefixes.append(
                (f"decoder.up.{blocks - 1 - i}.upsample.", f"decoder.up_blocks.{i}.upsamplers.0.")
            )
    attention = [
        ("norm.", "group_norm."),
        ("q.", "to_q."),
        ("k.", "to_k."),
        ("v.", "to_v."),
        ("proj_out.", "to_out.0."),
    ]
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ldm, diffusers_prefix = next(((ldm, hf) for ldm, hf in prefixes if key.startswith(hf)), ("", ""))
        rest = key[len(diffusers_prefix) :].replace("conv_shortcut.", "nin_shortcut.")
        if "attn_1" in ldm:
            rest = next((new + rest[len(old) :] for new, old in attention if rest.startswith(old)), rest)
            if value.ndim == 2:
                value = value.reshape(*value.shape, 1, 1)  # the original attention uses 1x1 convolutions
        converted[f"first_stage_model.{ldm}{rest}"] = value
    return converted


def _save_single_file(model_dir: Path, target: Path) -> Path:
    """Save a diffusers SD folder as one original-layout safetensors file plus its ``.config`` folder."""
    import shutil

    from safetensors.torch import load_file, save_file

    unet_config = json.loads((model_dir / "unet" / "config.json").read_text())
    vae_config = json.loads((model_dir / "vae" / "config.json").read_text())
    state = _unet_to_ldm(load_file(model_dir / "unet" / "diffusion_pytorch_model.safetensors"), unet_config)
    state |= _vae_to_ldm(load_file(model_dir / "vae" / "diffusion_pytorch_model.safetensors"), vae_config)
    for key, value in load_file(model_dir / "text_encoder" / "model.safetensors").items():
        # transformers 5 saves CLIPTextModel keys without the text_model. prefix the original layout has.
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        state[f"cond_stage_model.transformer.{name}"] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in state.items()}, str(target))
    # Configs and tokenizer only: the weights must come from the single file.
    shutil.copytree(
        model_dir,
        target.with_name(target.name + ".config"),
        ignore=shutil.ignore_patterns("*.safetensors", "*.bin", ".kubepilot*"),
    )
    return target


def test_a_single_file_checkpoint_with_its_config_folder_loads_offline_and_matches_the_folder_model(
    backend: DiffusersBackend, models: dict[str, Path], tmp_path: Path
) -> None:
    single = _save_single_file(models["sd"], tmp_path / "models" / "tiny-sd.safetensors")
    from_folder, _ = _run(backend, tmp_path / "folder", type="txt2img", seed=11, modelPath=str(models["sd"]))
    from_file, _ = _run(backend, tmp_path / "file", type="txt2img", seed=11, modelPath=str(single))
    assert backend.pipelines.model_path == str(single)
    assert _pixels(from_file[0]) == _pixels(from_folder[0]), "same weights, same seed: same image"
    assert read_parameters(from_file[0].path)[1]["model"] == "tiny-sd.safetensors"
