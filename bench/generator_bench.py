"""Generator throughput: our DiffusersBackend against a raw diffusers loop on the same pipeline.

Every side makes ``--count`` txt2img images (seeds ``seed + i``) on the very same loaded pipeline
object, interleaved (rotating which goes first), after a warm-up:

- raw: ``pipeline(prompt, ...)`` per image with no callback, PIL output, nothing written;
- raw + writes: the same, writing each image's PNG + JSON (``write_image``) right after it, on the
  same thread (what a naive loop, and our backend before its background writer, does);
- ours: ``DiffusersBackend.run`` end to end (pipeline cache lookup, scheduler set-up, per-step callback
  with progress + cancellation check, PNG with text chunks + metadata JSON written on the background
  writer thread while the next image is denoised; ``run`` returns once every file is on disk).

it/s = denoising steps of all images / wall time of the whole job (text encoding and VAE decoding
included on every side). Ratios are ours it/s / raw it/s:

- incl. writing: ours end to end against raw, which writes nothing;
- excl. writing: ours minus one image's write time (the last image's write cannot overlap with
  anything; earlier writes should hide behind denoising) against raw;
- vs. raw + writes: ours against the loop that writes on the critical path.

Reports medians. Usage::

    python bench/generator_bench.py [--steps 20] [--size 64] [--count 4] [--repeats 5] [--device auto]
    python bench/generator_bench.py --device cpu --threads 1 --steps 10   # tiny model, shared CPU
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


def _raw(
    backend: DiffusersBackend, model: str, request: GenerationRequest, seed: int, output_dir: Path | None
) -> tuple[float, float]:
    """(wall seconds for ``request.count`` images, seconds of those spent writing; 0 without output_dir)."""
    pipeline = backend.pipelines.get(model, PipelineKind.TXT2IMG)
    pipeline.scheduler = backend.pipelines.scheduler_for("")
    writing = 0.0
    started = time.perf_counter()
    for index in range(request.count):
        image = pipeline(
            prompt=request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=request.cfgScale,
            width=request.width,
            height=request.height,
            generator=torch.Generator("cpu").manual_seed(seed + index),
            output_type="pil",
        ).images[0]
        if output_dir is not None:
            write_started = time.perf_counter()
            parameters = ImageParameters(
                job_id="bench", type="txt2img", index=index, seed=seed + index, model="m", prompt="p"
            )
            write_image(image, output_dir, parameters)
            writing += time.perf_counter() - write_started
    _sync(backend.device)
    return time.perf_counter() - started, writing


def _ours(backend: DiffusersBackend, request: GenerationRequest, output_dir: Path, seed: int) -> float:
    """Wall seconds of the whole job, files written."""
    job = request.model_copy(update={"seed": seed})
    context = JobContext(
        job_id="bench", request=job, output_dir=output_dir, report_progress=lambda progress: None
    )
    started = time.perf_counter()
    backend.run(context)
    _sync(backend.device)
    return time.perf_counter() - started


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
        count=arguments.count,
    )
    output_dir = Path(config.outputsDir)
    _raw(backend, str(model), request, 0, output_dir / "raw")
    _ours(backend, request, output_dir / "ours", 0)
    raw_times: list[float] = []
    raw_write_times: list[float] = []
    write_times: list[float] = []
    ours_times: list[float] = []
    for repeat in range(arguments.repeats):
        # Rotate which side goes first, so none profits from its position (caches, clocks).
        for side in [(repeat + offset) % 3 for offset in range(3)]:
            if side == 0:
                raw_times.append(_raw(backend, str(model), request, repeat, None)[0])
            elif side == 1:
                wall, writing = _raw(backend, str(model), request, repeat, output_dir / "raw")
                raw_write_times.append(wall)
                write_times.append(writing / request.count)
            else:
                ours_times.append(_ours(backend, request, output_dir / "ours", repeat))
    raw_s = statistics.median(raw_times)
    raw_write_s = statistics.median(raw_write_times)
    ours_s = statistics.median(ours_times)
    write_s = statistics.median(write_times)
    total_steps = arguments.steps * arguments.count
    return {
        "model": "random-sd15" if arguments.sd15_random else "tiny-sd",
        "device": str(backend.device),
        "device_name": torch.cuda.get_device_name(backend.device) if backend.device.type == "cuda" else "cpu",
        "dtype": str(backend.dtype).removeprefix("torch."),
        "size": arguments.size,
        "steps": arguments.steps,
        "count": arguments.count,
        "repeats": arguments.repeats,
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_seconds, 3),
        "raw_it_s": round(total_steps / raw_s, 3),
        "raw_write_it_s": round(total_steps / raw_write_s, 3),
        "ours_it_s": round(total_steps / ours_s, 3),
        "write_ms_per_image": round(write_s * 1000, 2),
        "ratio_incl_writing": round(raw_s / ours_s, 3),
        "ratio_excl_writing": round(raw_s / max(ours_s - write_s, 1e-9), 3),
        "ratio_vs_raw_write": round(raw_write_s / ours_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print a summary (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64, help="image width and height (multiple of 8)")
    parser.add_argument("--count", type=int, default=4, help="images per job (1-10)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 on a shared CPU"
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--sd15-random", action="store_true", help="SD-1.5-sized UNet with random weights")
    parser.add_argument("--model-dir", default=str(Path(tempfile.gettempdir()) / "kubepilot-bench-models"))
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args(argv)
    if arguments.threads > 0:
        torch.set_num_threads(arguments.threads)
    figures = run(arguments)
    print(
        f"{figures['model']} {figures['size']}x{figures['size']} {figures['steps']} steps x "
        f"{figures['count']} images on {figures['device_name']} ({figures['dtype']}):\n"
        f"  raw diffusers           {figures['raw_it_s']:.2f} it/s\n"
        f"  raw + serial writes     {figures['raw_write_it_s']:.2f} it/s"
        f"  (PNG+JSON write {figures['write_ms_per_image']:.1f} ms/image)\n"
        f"  ours, incl. writing     {figures['ours_it_s']:.2f} it/s"
        f"  ratio {figures['ratio_incl_writing']:.3f} vs raw, "
        f"{figures['ratio_vs_raw_write']:.3f} vs raw + serial writes\n"
        f"  ours, excl. writing     ratio {figures['ratio_excl_writing']:.3f} vs raw"
        " (ours minus one image's write)"
    )
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
