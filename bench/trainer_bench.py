"""Per-step throughput of the built-in trainer's loop vs. a bare torch + peft loop, same model and data.

Both sides train the same tiny Stable Diffusion UNet LoRA (tinymodels) on the same cached latents and
caption embeddings (the trainer's own cache, filled before timing), with AdamW, a constant learning
rate and gradient clipping. The trainer's side is the whole ``LoraTrainer.run()``: action polling,
progress reports pushed to a real loopback intake, and the final LoRA file save. Rounds alternate
between the two so machine load hits both alike.

    .venv/bin/python bench/trainer_bench.py [--steps 20] [--rounds 3] [--resolution 64] [--batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler

from kubepilot_workers.reporting import Reporter
from kubepilot_workers.tinymodels import save_tiny_sd
from kubepilot_workers.trainer.batches import BatchStream, EncodedCache
from kubepilot_workers.trainer.dataset import scan_dataset
from kubepilot_workers.trainer.distributed import DistributedInfo, pick_device
from kubepilot_workers.trainer.loop import LoraTrainer
from kubepilot_workers.trainer.model import add_lora, load_components
from tests.workers._trainer_tiny import make_dataset, trainer_config
from tests.workers.intake import ContractIntake

ONE_PROCESS = DistributedInfo(rank=0, local_rank=0, world_size=1)


def fill_cache(stream: BatchStream, cache: EncodedCache, images: list[Any], micro_batches: int) -> None:
    for micro in range(micro_batches):
        epoch, bucket, members = stream.indices(micro)
        cache.batch(images, epoch, bucket, members)


def time_trainer(config: Any, intake: ContractIntake, round_index: int) -> float:
    """Seconds for ``LoraTrainer.run()`` once its encoder cache is warm."""
    name = f"bench{round_index}"
    url = intake.register("bench", "trainingruns", name, "bench-token")
    reporter = Reporter(url, "bench-token", interval=0.2)
    trainer = LoraTrainer(config, reporter, ONE_PROCESS)
    fill_cache(trainer.stream, trainer.cache, trainer.images, config.hyperparameters.maxSteps)
    start = time.perf_counter()
    final = trainer.run()
    elapsed = time.perf_counter() - start
    reporter.finish(final)
    assert final.progress is not None and final.progress.step == config.hyperparameters.maxSteps
    return elapsed


def time_raw_loop(config: Any, steps: int) -> float:
    """Seconds for ``steps`` steps of a bare diffusers/peft LoRA loop on the same cached tensors."""
    hp = config.hyperparameters
    torch.manual_seed(hp.seed)
    components = load_components(config.baseModelPath)
    device = pick_device(ONE_PROCESS)
    unet = components.unet.to(device)
    components.vae.to(device)
    components.text_encoder.to(device)
    parameters = add_lora(unet, hp.rank, hp.alpha)
    unet.train()
    images = scan_dataset(config.datasetDir)
    stream = BatchStream(images, hp.resolution, hp.bucketing, hp.batchSize, hp.seed, 0, 1)
    cache = EncodedCache(components.vae, components.text_encoder, components.tokenizer, device)
    fill_cache(stream, cache, images, steps)
    positions = [stream.indices(micro) for micro in range(steps)]
    optimizer = torch.optim.AdamW(parameters, lr=hp.learningRate)
    lr_schedule = get_scheduler("constant", optimizer)
    scheduler = components.noise_scheduler
    start = time.perf_counter()
    for epoch, bucket, members in positions:
        batch = cache.batch(images, epoch, bucket, members)
        noise = torch.randn_like(batch.latents)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (batch.latents.shape[0],), device=device
        )
        noisy = scheduler.add_noise(batch.latents, noise, timesteps)
        prediction = unet(noisy, timesteps, encoder_hidden_states=batch.text_embeddings).sample
        loss = F.mse_loss(prediction.float(), noise.float())
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as folder, ContractIntake() as intake:
        root = Path(folder)
        model = save_tiny_sd(root / "tiny-sd")
        side = args.resolution
        dataset = make_dataset(root / "ds", {"4_bench": [(side, side), (side + 16, side), (side, side + 16)]})
        config = trainer_config(
            model,
            dataset,
            root / "out",
            maxSteps=args.steps,
            resolution=args.resolution,
            batchSize=args.batch,
        )
        ours: list[float] = []
        raw: list[float] = []
        for round_index in range(args.rounds):
            ours.append(time_trainer(config, intake, round_index))
            raw.append(time_raw_loop(config, args.steps))
            print(
                f"round {round_index + 1}: trainer {args.steps / ours[-1]:.3f} steps/s, "
                f"raw loop {args.steps / raw[-1]:.3f} steps/s"
            )
    best_ours, best_raw = args.steps / min(ours), args.steps / min(raw)
    median_ours, median_raw = args.steps / statistics.median(ours), args.steps / statistics.median(raw)
    setting = f"resolution {args.resolution}, batch {args.batch}, {args.steps} steps x {args.rounds} rounds"
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, {device}, {setting}")
    best_ratio = best_ours / best_raw
    print(f"best:   trainer {best_ours:.3f} steps/s, raw {best_raw:.3f} steps/s, ratio {best_ratio:.3f}")
    ratio = median_ours / median_raw
    print(f"median: trainer {median_ours:.3f} steps/s, raw {median_raw:.3f} steps/s, ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
