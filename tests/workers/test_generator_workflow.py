"""The diffusers generator runs ComfyUI workflows of the standard shapes, on tiny random-weight models.

The graphs are the ones the ComfyUI adapter builds (``standard_graph``) or written as ComfyUI exports
them; the generator translates them and must produce what the equivalent plain request produces.
Runs on the CPU.
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

from kubepilot_api.generationjob import GenerationProgress, GenerationType, OutputImage
from kubepilot_api.workers.config import GenerationRequest, GeneratorConfig, Workload
from kubepilot_api.workers.workflow import generator_sampler_names, translate
from kubepilot_workers.adapters.comfyui_graph import standard_graph
from kubepilot_workers.executor.backend import ExecutionError, JobContext
from kubepilot_workers.generator.backend import DiffusersBackend
from kubepilot_workers.generator.outputs import read_parameters
from kubepilot_workers.generator.workflow import inputs_root, load_mask, plan
from kubepilot_workers.tinymodels import save_tiny_sd, save_tiny_upscaler

Graph = dict[str, Any]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A models volume laid out as ComfyUI's folders and an outputs volume with its inputs folder."""
    root = tmp_path_factory.mktemp("volumes")
    models, outputs = root / "models", root / "outputs"
    save_tiny_sd(models / "checkpoints" / "tiny-sd")
    save_tiny_upscaler(models / "upscale_models" / "tiny-x4.safetensors", scale=4)
    (outputs / "inputs").mkdir(parents=True)
    return {"models": models, "outputs": outputs, "root": root}


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny models are all overhead: one torch thread is faster and fair to parallel test runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backend(volumes: dict[str, Path]) -> DiffusersBackend:
    config = GeneratorConfig(
        workload=Workload(kind="GenerationJob", namespace="ns", name="wf"),
        mode="oneshot",
        # The operator's default model: a workflow names its own checkpoint, so this one is never loaded.
        modelPath=str(volumes["models"] / "diffusers" / "absent"),
        modelsRoot=str(volumes["models"]),
        outputsDir=str(volumes["outputs"] / "generations" / "ns" / "wf-1234abcd"),
        device=os.environ.get("KUBEPILOT_TEST_DEVICE", "cpu"),
    )
    return DiffusersBackend(config)


def job_dir(volumes: dict[str, Path], name: str) -> Path:
    return volumes["outputs"] / "generations" / "ns" / name


def run(
    backend: DiffusersBackend,
    output_dir: Path,
    progress: list[GenerationProgress] | None = None,
    **fields: Any,
) -> list[OutputImage]:
    request = GenerationRequest.model_validate({"prompt": "", **fields})
    progress = [] if progress is None else progress
    context = JobContext(
        job_id=output_dir.name, request=request, output_dir=output_dir, report_progress=progress.append
    )
    outputs = backend.run(context)
    # Every job reports its progress up to its last image on disk.
    assert progress[-1].imagesDone == progress[-1].imagesTotal == len(outputs)
    return outputs


def run_workflow(
    backend: DiffusersBackend,
    output_dir: Path,
    graph: Graph,
    progress: list[GenerationProgress] | None = None,
) -> list[OutputImage]:
    return run(backend, output_dir, progress, type="workflow", workflow=graph)


def pixels(output: OutputImage) -> bytes:
    with Image.open(output.path) as image:
        return image.convert("RGB").tobytes()


def txt2img_request(**fields: Any) -> GenerationRequest:
    values: dict[str, Any] = {
        "type": "txt2img",
        "prompt": "a red cat",
        "negativePrompt": "blurry",
        "width": 32,
        "height": 32,
        "count": 2,
        "seed": 7,
        "steps": 2,
        "cfgScale": 5.0,
        "sampler": "DPM++ 2M Karras",
        **fields,
    }
    return GenerationRequest.model_validate(values)


def adapter_graph(request: GenerationRequest, **uploads: Any) -> Graph:
    """The graph the ComfyUI adapter sends for ``request`` (what a dashboard submits)."""
    return standard_graph(
        request,
        checkpoint="tiny-sd",
        seed=max(request.seed, 0),
        uploaded=uploads.get("uploaded", {}),
        sizes=uploads.get("sizes", {}),
        prefix="kubepilot-job",
    )


def node(graph: Graph, class_type: str, occurrence: int = 0) -> str:
    """The id of the ``occurrence``-th node of ``class_type`` (ids are the adapter's numbering)."""
    return [key for key, value in graph.items() if value["class_type"] == class_type][occurrence]


def test_the_adapters_graphs_translate_back_to_their_requests(volumes: dict[str, Path]) -> None:
    models = str(volumes["models"])
    original = txt2img_request(loras=[{"path": f"{models}/loras/a/b.safetensors", "weight": 0.6}])
    back = translate(adapter_graph(original), models)
    assert back.model_dump(exclude={"workflow", "params", "modelPath", "sampler"}) == original.model_dump(
        exclude={"workflow", "params", "modelPath", "sampler"}
    )
    assert (back.modelPath, back.sampler) == (f"{models}/checkpoints/tiny-sd", "dpm++ 2m karras")

    img2img = GenerationRequest(
        type=GenerationType.IMG2IMG, prompt="p", image="/x/in.png", strength=0.3, count=2
    )
    back = translate(
        adapter_graph(img2img, uploaded={"/x/in.png": "in.png"}), models, inputs_root="/o/inputs"
    )
    assert (back.type, back.image, back.strength, back.count) == (
        GenerationType.IMG2IMG,
        "/o/inputs/in.png",
        0.3,
        2,
    )

    upscale = GenerationRequest(
        type=GenerationType.UPSCALE, image="/x/a.png", upscaler=f"{models}/upscale_models/tiny-x4.safetensors"
    )
    graph = adapter_graph(upscale, uploaded={"/x/a.png": "a.png"}, sizes={"/x/a.png": (10, 6)})
    back = translate(graph, models, inputs_root="/o/inputs")
    assert (back.type, back.image, back.upscaler) == (
        GenerationType.UPSCALE,
        "/o/inputs/a.png",
        upscale.upscaler,
    )


def test_a_txt2img_workflow_makes_the_same_images_as_the_plain_request(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    request = txt2img_request()
    progress: list[GenerationProgress] = []
    outputs = run_workflow(backend, job_dir(volumes, "wf-txt"), adapter_graph(request), progress)
    plain = run(
        backend,
        job_dir(volumes, "plain-txt"),
        **request.model_dump(exclude={"sampler", "modelPath"}),
        modelPath=str(volumes["models"] / "checkpoints" / "tiny-sd"),
        sampler="dpm++ 2m karras",
    )
    assert [Path(o.path).name for o in outputs] == ["kubepilot-job_00001_.png", "kubepilot-job_00002_.png"]
    assert [(o.width, o.height, o.seed) for o in outputs] == [(32, 32, 7), (32, 32, 8)]
    assert [pixels(o) for o in outputs] == [pixels(o) for o in plain]
    _text, chunk = read_parameters(outputs[0].path)
    assert chunk["workflowNode"] == node(adapter_graph(request), "SaveImage")
    assert (chunk["sampler"], chunk["type"]) == ("dpm++ 2m karras", "txt2img")
    with Image.open(outputs[0].path) as image:
        assert json.loads(dict(getattr(image, "text", {}))["prompt"]) == adapter_graph(request)
    # The dashboard's workflow_progress names the node running: the KSampler.
    assert {p.currentNode for p in progress} == {node(adapter_graph(request), "KSampler")}
    assert (Path(outputs[0].path).with_suffix(".json")).is_file()


def test_generate_then_upscale_with_the_model_and_scale_by(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    graph = adapter_graph(txt2img_request(count=1))
    graph["m"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "tiny-x4.safetensors"}}
    graph["u"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["m", 0], "image": [node(graph, "VAEDecode"), 0]},
    }
    graph["s"] = {
        "class_type": "ImageScaleBy",
        "inputs": {"image": ["u", 0], "upscale_method": "area", "scale_by": 0.75},
    }
    graph[node(graph, "SaveImage")]["inputs"]["images"] = ["s", 0]
    outputs = run_workflow(backend, job_dir(volumes, "wf-up"), graph)
    assert [(o.width, o.height) for o in outputs] == [(96, 96)]


def test_an_img2img_workflow_starts_from_the_input_image_at_its_own_size(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    Image.new("RGB", (40, 28), (200, 30, 30)).save(volumes["outputs"] / "inputs" / "red.png")
    request = GenerationRequest(
        type=GenerationType.IMG2IMG, prompt="p", image="/x/red.png", strength=0.5, count=2, steps=2, seed=1
    )
    graph = adapter_graph(request, uploaded={"/x/red.png": "red.png [input]"})
    # LoadImage → ImageScale to 48 wide, aspect kept (48x34) → VAEEncode crops to 48x32.
    graph["s"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": [node(graph, "LoadImage"), 0],
            "upscale_method": "bicubic",
            "width": 48,
            "height": 0,
            "crop": "disabled",
        },
    }
    graph[node(graph, "VAEEncode")]["inputs"]["pixels"] = ["s", 0]
    outputs = run_workflow(backend, job_dir(volumes, "wf-i2i"), graph)
    assert [(o.width, o.height) for o in outputs] == [(48, 32), (48, 32)]
    _text, chunk = read_parameters(outputs[0].path)
    assert chunk["type"] == "img2img" and chunk["strength"] == 0.5
    assert chunk["sourceImage"] == str(volumes["outputs"] / "inputs" / "red.png")


def test_an_inpaint_workflow_uses_its_mask_channel(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    inputs = volumes["outputs"] / "inputs"
    Image.new("RGB", (32, 24), (30, 200, 30)).save(inputs / "green.png")
    mask = Image.new("RGB", (32, 24), (0, 0, 0))
    mask.paste((255, 0, 0), (8, 8, 24, 16))
    mask.save(inputs / "mask.png")
    request = GenerationRequest(
        type=GenerationType.INPAINT,
        prompt="p",
        image="/x/g.png",
        mask="/x/m.png",
        steps=2,
        seed=3,
        strength=0.9,
    )
    graph = adapter_graph(request, uploaded={"/x/g.png": "green.png", "/x/m.png": "mask.png"})
    assert graph[node(graph, "LoadImageMask")]["inputs"]["channel"] == "red"
    outputs = run_workflow(backend, job_dir(volumes, "wf-inpaint"), graph)
    assert [(o.width, o.height) for o in outputs] == [(32, 24)]
    _text, chunk = read_parameters(outputs[0].path)
    assert chunk["type"] == "inpaint" and chunk["strength"] == 0.9


def test_masks_are_read_as_comfyui_reads_them(tmp_path: Path) -> None:
    source = Image.new("RGBA", (8, 8), (255, 0, 0, 255))
    source.putpixel((2, 2), (0, 0, 0, 0))
    source.save(tmp_path / "m.png")
    alpha = load_mask(str(tmp_path / "m.png"), "alpha", (8, 8), 0)
    assert alpha.getpixel((2, 2)) == 255 and alpha.getpixel((5, 5)) == 0, "transparent is repainted"
    red = load_mask(str(tmp_path / "m.png"), "red", (8, 8), 0)
    assert red.getpixel((5, 5)) == 255 and red.getpixel((2, 2)) == 0
    scaled = load_mask(str(tmp_path / "m.png"), "alpha", (16, 16), 0)
    grown = load_mask(str(tmp_path / "m.png"), "alpha", (16, 16), 1)

    def marked(mask: Image.Image) -> int:
        return mask.width * mask.height - mask.histogram()[0]

    assert grown.size == scaled.size == (16, 16)
    assert marked(grown) > marked(scaled) > 0, "grow_mask_by dilates the scaled mask"


def test_clip_set_last_layer_skips_a_clip_layer(backend: DiffusersBackend, volumes: dict[str, Path]) -> None:
    graph = adapter_graph(txt2img_request(count=1, steps=1, sampler="euler"))
    plain = run_workflow(backend, job_dir(volumes, "wf-clip-0"), graph)
    loader = node(graph, "CheckpointLoaderSimple")
    graph["skip"] = {
        "class_type": "CLIPSetLastLayer",
        "inputs": {"stop_at_clip_layer": -2, "clip": [loader, 1]},
    }
    for encoder in (node(graph, "CLIPTextEncode"), node(graph, "CLIPTextEncode", 1)):
        graph[encoder]["inputs"]["clip"] = ["skip", 0]
    skipped = run_workflow(backend, job_dir(volumes, "wf-clip-1"), graph)
    assert pixels(skipped[0]) != pixels(plain[0])


def test_upscale_chains_of_several_images_each_reach_their_size(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    inputs = volumes["outputs"] / "inputs"
    Image.new("RGB", (10, 6), (0, 0, 255)).save(inputs / "a.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(inputs / "b.png")
    request = GenerationRequest(
        type=GenerationType.UPSCALE,
        image="/x/a.png",
        images=["/x/b.png"],
        upscaler="/m/upscale_models/tiny-x4.safetensors",
        upscaleFactor=3,
    )
    graph = adapter_graph(
        request,
        uploaded={"/x/a.png": "a.png", "/x/b.png": "b.png"},
        sizes={"/x/a.png": (10, 6), "/x/b.png": (8, 8)},
    )
    outputs = run_workflow(backend, job_dir(volumes, "wf-upscale"), graph)
    assert [(o.width, o.height) for o in outputs] == [(30, 18), (24, 24)]
    _text, chunk = read_parameters(outputs[1].path)
    assert chunk["upscaler"] == "tiny-x4.safetensors" and chunk["workflowNode"] == node(graph, "SaveImage", 1)
    with Image.open(outputs[0].path) as image:
        red, _green, blue = image.convert("RGB").getpixel((15, 9))  # type: ignore[misc]
    assert blue > red, "the tiny upscaler stays close to its input"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 about diffusers' sigma arrays, per step
def test_every_sampler_a_workflow_may_name_is_known_to_the_generator(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    backend.pipelines.load(str(volumes["models"] / "checkpoints" / "tiny-sd"))
    for name in sorted(generator_sampler_names()):
        assert backend.pipelines.scheduler_for(name) is not None, name


def failure(backend: DiffusersBackend, output_dir: Path, graph: Graph | None) -> ExecutionError:
    with pytest.raises(ExecutionError) as caught:
        run(backend, output_dir, type="workflow", workflow=graph)
    assert not list(output_dir.glob("*.png")) if output_dir.exists() else True
    return caught.value


def test_unrunnable_workflows_fail_with_a_code_and_write_nothing(
    backend: DiffusersBackend, volumes: dict[str, Path]
) -> None:
    base = adapter_graph(txt2img_request(count=1))
    unsupported = {**base, "99": {"class_type": "ControlNetApply", "inputs": {}}}
    error = failure(backend, job_dir(volumes, "bad-1"), unsupported)
    assert error.code == "INVALID_WORKFLOW" and "ControlNetApply" in error.message

    missing_checkpoint = {
        **base,
        node(base, "CheckpointLoaderSimple"): {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "nope"},
        },
    }
    assert failure(backend, job_dir(volumes, "bad-2"), missing_checkpoint).code == "MODEL_NOT_FOUND"

    assert failure(backend, job_dir(volumes, "bad-3"), None).code == "INVALID_WORKFLOW"

    # A link in the inputs folder that leads out of the outputs volume is refused.
    secret = volumes["root"] / "secret.png"
    Image.new("RGB", (16, 16)).save(secret)
    (volumes["outputs"] / "inputs" / "escape.png").symlink_to(secret)
    request = GenerationRequest(type=GenerationType.IMG2IMG, prompt="p", image="/x/e.png", steps=1)
    escaping = adapter_graph(request, uploaded={"/x/e.png": "escape.png"})
    error = failure(backend, job_dir(volumes, "bad-4"), escaping)
    assert error.code == "INVALID_WORKFLOW" and "outside" in error.message

    missing_image = adapter_graph(request, uploaded={"/x/e.png": "absent.png"})
    assert failure(backend, job_dir(volumes, "bad-5"), missing_image).code == "INPUT_NOT_FOUND"


def test_the_inputs_folder_is_on_the_volume_of_the_jobs_folder() -> None:
    assert inputs_root(Path("/data/outputs/generations/ns/job-1")) == Path("/data/outputs/inputs")
    assert inputs_root(Path("/tmp/elsewhere")) == Path("/tmp/elsewhere/inputs")


def test_the_configured_inputs_folder_is_where_load_image_names_resolve(
    volumes: dict[str, Path], tmp_path: Path
) -> None:
    """The operator's ``inputsDir`` wins; without it the folder is found from the job's folder."""
    request = GenerationRequest(type=GenerationType.IMG2IMG, prompt="p", image="/x/red.png", steps=2)
    graph = adapter_graph(request, uploaded={"/x/red.png": "red.png [input]"})
    workflow = GenerationRequest(type=GenerationType.WORKFLOW, workflow=graph)
    staged = tmp_path / "staged-inputs"
    configured = plan(workflow, job_dir(volumes, "wf-in"), str(volumes["models"]), str(staged))
    assert configured.request.image == str(staged / "red.png")
    derived = plan(workflow, job_dir(volumes, "wf-in"), str(volumes["models"]))
    assert derived.request.image == str(volumes["outputs"] / "inputs" / "red.png")
