"""Generator throughput: our DiffusersBackend against a raw diffusers call on the same pipeline.

Both sides run txt2img on the very same loaded pipeline object, interleaved (alternating which goes
first), after a warm-up:

- raw: ``pipeline(prompt, ...)`` with no callback, PIL output, nothing written;
- ours, incl. PNG: ``DiffusersBackend.run`` end to end (pipeline cache lookup, scheduler set-up,
  per-step callback with progress + cancellation check, PNG with text chunks + metadata JSON written);
- ours, excl. PNG: the same minus the measured time of writing that image's PNG and JSON.

it/s = denoising steps / wall time of the whole call (text encoding and VAE decoding included on
both sides). Reports medians. Usage::

    python bench/generator_bench.py [--steps 20] [--size 64] [--repeats 5] [--device auto]
    python bench/generator_bench.py --sd15-random --size 512 --steps 20   # SD-1.5-sized UNet, GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from kubepilot_api.workers.config import GenerationRequest, GeneratorConfig, Workload
from kubepilot_workers.executor.backend import JobContext
from kubepilot_workers.generator.backend import DiffusersBackend
from kubepilot_workers.generator.outputs import ImageParameters, write_image
from kubepilot_workers.generator.pipelines import PipelineKind
from kubepilot_workers.tinymodels import save_random_sd15, save_tiny_sd


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _raw(backend: DiffusersBackend, model: str, request: GenerationRequest, seed: int) -> float:
    pipeline = backend.pipelines.get(model, PipelineKind.TXT2IMG)
    pipeline.scheduler = backend.pipelines.scheduler_for("")
    started = time.perf_counter()
    pipeline(
        prompt=request.prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.cfgScale,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pil",
    )
    _sync(backend.device)
    return time.perf_counter() - started


def _ours(
    backend: DiffusersBackend, request: GenerationRequest, output_dir: Path, seed: int
) -> tuple[float, float]:
    """(wall seconds of the whole job, seconds of writing its PNG + JSON once more)."""
    job = request.model_copy(update={"seed": seed})
    context = JobContext(
        job_id="bench", request=job, output_dir=output_dir, report_progress=lambda progress: None
    )
    started = time.perf_counter()
    outputs = backend.run(context)
    _sync(backend.device)
    wall = time.perf_counter() - started
    from PIL import Image

    with Image.open(outputs[0].path) as image:
        image.load()
        parameters = ImageParameters(
            job_id="bench", type="txt2img", index=0, seed=seed, model="m", prompt="p"
        )
        write_started = time.perf_counter()
        write_image(image, output_dir / "rewrite", parameters)
        png_seconds = time.perf_counter() - write_started
    return wall, png_seconds


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    """Build or reuse the model, run the interleaved measurements, return the figures."""
    root = Path(arguments.model_dir)
    if arguments.sd15_random:
        build_started = time.perf_counter()
        model = save_random_sd15(root / "random-sd15-fp16")
        print(f"random SD-1.5 model ready in {time.perf_counter() - build_started:.1f}s", file=sys.stderr)
    else:
        model = save_tiny_sd(root / "tiny-sd")
    config = GeneratorConfig(
        workload=Workload(kind="GenerationJob", namespace="bench", name="bench"),
        mode="oneshot",
        modelPath=str(model),
        outputsDir=tempfile.mkdtemp(prefix="generator-bench-"),
        device=arguments.device,
        dtype=arguments.dtype,
    )
    backend = DiffusersBackend(config)
    load_started = time.perf_counter()
    backend.load_default()
    load_seconds = time.perf_counter() - load_started
    request = GenerationRequest(
        type="txt2img",
        prompt="a lighthouse at dusk",
        width=arguments.size,
        height=arguments.size,
        steps=arguments.steps,
    )
    output_dir = Path(config.outputsDir)
    _raw(backend, str(model), request, 0)
    _ours(backend, request, output_dir, 0)
    raw_times: list[float] = []
    ours_times: list[float] = []
    png_times: list[float] = []
    for repeat in range(arguments.repeats):
        # Alternate which side goes first, so neither profits from running second (caches, clocks).
        if repeat % 2:
            raw_times.append(_raw(backend, str(model), request, repeat))
        wall, png = _ours(backend, request, output_dir, repeat)
        ours_times.append(wall)
        png_times.append(png)
        if not repeat % 2:
            raw_times.append(_raw(backend, str(model), request, repeat))
    raw = statistics.median(raw_times)
    ours = statistics.median(ours_times)
    png = statistics.median(png_times)
    steps = arguments.steps
    return {
        "model": "random-sd15" if arguments.sd15_random else "tiny-sd",
        "device": str(backend.device),
        "device_name": torch.cuda.get_device_name(backend.device) if backend.device.type == "cuda" else "cpu",
        "dtype": str(backend.dtype).removeprefix("torch."),
        "size": arguments.size,
        "steps": steps,
        "repeats": arguments.repeats,
        "load_seconds": round(load_seconds, 3),
        "raw_it_s": round(steps / raw, 3),
        "ours_incl_png_it_s": round(steps / ours, 3),
        "ours_excl_png_it_s": round(steps / max(ours - png, 1e-9), 3),
        "png_write_ms": round(png * 1000, 2),
        "ratio_incl_png": round(raw / ours, 3),
        "ratio_excl_png": round(raw / max(ours - png, 1e-9), 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print a summary (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="image width and height (multiple of 8)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--sd15-random", action="store_true", help="SD-1.5-sized UNet with random weights")
    parser.add_argument("--model-dir", default=str(Path(tempfile.gettempdir()) / "kubepilot-bench-models"))
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args(argv)
    figures = run(arguments)
    print(
        f"{figures['model']} {figures['size']}x{figures['size']} {figures['steps']} steps on "
        f"{figures['device_name']} ({figures['dtype']}):\n"
        f"  raw diffusers      {figures['raw_it_s']:.2f} it/s\n"
        f"  ours incl. PNG     {figures['ours_incl_png_it_s']:.2f} it/s"
        f"  ratio {figures['ratio_incl_png']:.3f}\n"
        f"  ours excl. PNG     {figures['ours_excl_png_it_s']:.2f} it/s"
        f"  ratio {figures['ratio_excl_png']:.3f}"
        f"  (PNG+JSON write {figures['png_write_ms']:.1f} ms)"
    )
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
