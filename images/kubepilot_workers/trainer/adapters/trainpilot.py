"""TrainPilot's profiles for kohya sd-scripts: quick_test, regular and high_quality.

TrainPilot (LoRA Pilot's kohya wrapper, the dashboard's ``/api/trainpilot/start``) copies a base TOML,
sets the chosen profile's values in it, adapts the step target to the dataset and launches
``sdxl_train_network.py``. This module reproduces that decision, as LoRA Pilot publishes it in
``apps/TrainPilot/trainpilot.sh``, ``helpers.sh`` and ``newlora.toml``, and in its TrainPilot guide:

- per profile (SDXL): a step target (600 / 1,200 / 2,400), an epoch ceiling (12 / 25 / 45), LoRA and
  conv rank and alpha (32/16, 48/24, 64/32), network dropout 0.05, batch and gradient accumulation
  (1x2, 2x2, 4x1), token length (200 / 225 / 225), learning rate 2.5e-4 for the network and 2e-5 /
  3e-5 / 3e-5 for the text encoders, fp16 for quick_test and bf16 (``full_bf16``) otherwise;
- a dataset of more than 80 images gets a third more steps;
- repeats follow the dataset's size tier (quick_test 1; regular 4 / 2 / 1; high_quality 8 / 6 / 3 / 1
  for up to 30, up to 60, up to 150 and more images), capped at 6;
- the step target is clamped to the epoch ceiling: ``max_epochs * ceil(ceil(images * repeats / batch)
  / accumulation)``;
- everything else comes from the base TOML (AdamW with betas 0.9/0.99 and weight decay 0.01, cosine with
  two restarts, 100 warm-up steps, min-SNR gamma 5, noise offset 0.02, gradient clipping 0.8, caption
  dropout 0.1, flips, an epoch-wise save, SDPA attention, a non-half VAE).

Where we differ, on purpose:

- TrainPilot writes the text-encoder rate as ``learning_rate_te``/``_te1``/``_te2``, the option names of
  sd-scripts' full fine-tuning scripts; ``train_network.py`` reads ``text_encoder_lr``, so that is where
  the value goes (and ``unet_lr`` gets the network rate).
- TrainPilot sets ``conv_dim``/``conv_alpha`` as top-level keys, which ``train_network.py`` does not
  read; ``networks.lora`` takes them from ``network_args``, where we put them.
- TrainPilot trains one ``1_name`` folder and renames it ``{repeats}_name``. We train every ``N_name``
  folder of the dataset: folders named ``1_...`` (no repeats chosen) get the profile's repeats, folders
  with an explicit count keep it, and the clamp counts each folder with its own repeats.
- TrainPilot's script is SDXL-only. For SD 1.x base models the TrainPilot guide gives 600 / 1,200 /
  2,400 steps, ranks 16 / 32 / 64, batch 1, fp16, U-Net only, 512 pixels; what it leaves open (epoch
  ceiling, accumulation, rates, alpha = rank / 2) is taken from the SDXL profile of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubepilot_api.trainingrun import KohyaProfile
from kubepilot_workers.trainer.adapters.base import Subset

MAX_REPEATS = 6
"""TrainPilot's ``MAX_REPEATS_CAP``."""
BIG_DATASET_IMAGES = 80
"""More images than this and the step target grows by a third."""


@dataclass(frozen=True)
class ProfileSettings:
    """One profile's values for one model family."""

    max_train_steps: int
    max_train_epochs: int
    network_dim: int
    network_alpha: int
    conv_dim: int | None
    conv_alpha: int | None
    train_batch_size: int
    gradient_accumulation_steps: int
    max_token_length: int
    learning_rate: float
    text_encoder_lr: float
    precision: str
    resolution: int
    unet_only: bool


SDXL_PROFILES: dict[KohyaProfile, ProfileSettings] = {
    KohyaProfile.QUICK_TEST: ProfileSettings(
        max_train_steps=600,
        max_train_epochs=12,
        network_dim=32,
        network_alpha=16,
        conv_dim=32,
        conv_alpha=16,
        train_batch_size=1,
        gradient_accumulation_steps=2,
        max_token_length=200,
        learning_rate=2.5e-4,
        text_encoder_lr=2e-5,
        precision="fp16",
        resolution=1024,
        unet_only=False,
    ),
    KohyaProfile.REGULAR: ProfileSettings(
        max_train_steps=1200,
        max_train_epochs=25,
        network_dim=48,
        network_alpha=24,
        conv_dim=48,
        conv_alpha=24,
        train_batch_size=2,
        gradient_accumulation_steps=2,
        max_token_length=225,
        learning_rate=2.5e-4,
        text_encoder_lr=3e-5,
        precision="bf16",
        resolution=1024,
        unet_only=False,
    ),
    KohyaProfile.HIGH_QUALITY: ProfileSettings(
        max_train_steps=2400,
        max_train_epochs=45,
        network_dim=64,
        network_alpha=32,
        conv_dim=64,
        conv_alpha=32,
        train_batch_size=4,
        gradient_accumulation_steps=1,
        max_token_length=225,
        learning_rate=2.5e-4,
        text_encoder_lr=3e-5,
        precision="bf16",
        resolution=1024,
        unet_only=False,
    ),
}

SD1_RANKS = {KohyaProfile.QUICK_TEST: 16, KohyaProfile.REGULAR: 32, KohyaProfile.HIGH_QUALITY: 64}

SD1_PROFILES: dict[KohyaProfile, ProfileSettings] = {
    profile: ProfileSettings(
        max_train_steps=sdxl.max_train_steps,
        max_train_epochs=sdxl.max_train_epochs,
        network_dim=SD1_RANKS[profile],
        network_alpha=SD1_RANKS[profile] // 2,
        conv_dim=None,
        conv_alpha=None,
        train_batch_size=1,
        gradient_accumulation_steps=sdxl.gradient_accumulation_steps,
        max_token_length=sdxl.max_token_length,
        learning_rate=sdxl.learning_rate,
        text_encoder_lr=sdxl.text_encoder_lr,
        precision="fp16",
        resolution=512,
        unet_only=True,
    )
    for profile, sdxl in SDXL_PROFILES.items()
}

BASE_SETTINGS: dict[str, Any] = {
    "network_module": "networks.lora",
    "network_dropout": 0.05,
    "optimizer_type": "AdamW",
    "optimizer_args": ["betas=(0.9,0.99)", "eps=1e-8", "weight_decay=0.01"],
    "lr_scheduler": "cosine_with_restarts",
    "lr_scheduler_num_cycles": 2,
    "lr_warmup_steps": 100,
    "min_snr_gamma": 5.0,
    "noise_offset": 0.02,
    "adaptive_noise_scale": 0.3,
    "max_grad_norm": 0.8,
    "caption_dropout_rate": 0.1,
    "caption_dropout_every_n_epochs": 1,
    "save_every_n_epochs": 1,
    "save_last_n_epochs": 15,
    "save_precision": "bf16",
    "gradient_checkpointing": True,
    "no_half_vae": True,
    "sdpa": True,
    "xformers": False,
    "mem_eff_attn": False,
    "persistent_data_loader_workers": True,
    "max_data_loader_n_workers": 4,
}
"""What TrainPilot's base TOML sets and no profile changes (paths, names and logging are ours)."""


def profile_settings(profile: KohyaProfile, sdxl: bool) -> ProfileSettings:
    """The profile's values for the base model's family."""
    return (SDXL_PROFILES if sdxl else SD1_PROFILES)[profile]


def size_tier_repeats(profile: KohyaProfile, images: int) -> int:
    """Repeats for a dataset of ``images`` pictures (TrainPilot's size tiers), at most :data:`MAX_REPEATS`."""
    if profile is KohyaProfile.QUICK_TEST:
        repeats = 1
    elif profile is KohyaProfile.REGULAR:
        repeats = 4 if images <= 30 else 2 if images <= 60 else 1
    else:
        repeats = 8 if images <= 30 else 6 if images <= 60 else 3 if images <= 150 else 1
    return min(repeats, MAX_REPEATS)


@dataclass(frozen=True)
class StepPlan:
    """Repeats per subset and the step target after TrainPilot's adjustments."""

    repeats: list[int]
    max_train_steps: int


def plan_steps(settings: ProfileSettings, profile: KohyaProfile, subsets: list[Subset]) -> StepPlan:
    """Repeats and ``max_train_steps`` for these subsets (see the module docstring)."""
    images = sum(subset.images for subset in subsets)
    profile_repeats = size_tier_repeats(profile, images)
    repeats = [profile_repeats if subset.repeats == 1 else subset.repeats for subset in subsets]
    steps = settings.max_train_steps
    if images > BIG_DATASET_IMAGES:
        steps += steps // 3
    samples_per_epoch = sum(s.images * r for s, r in zip(subsets, repeats, strict=True))
    batches = -(-samples_per_epoch // settings.train_batch_size)
    updates_per_epoch = max(1, -(-batches // settings.gradient_accumulation_steps))
    return StepPlan(repeats, min(steps, settings.max_train_epochs * updates_per_epoch))


def training_settings(settings: ProfileSettings) -> dict[str, Any]:
    """The training-TOML keys a profile sets (the dataset TOML takes batch size and resolution)."""
    values: dict[str, Any] = {
        **BASE_SETTINGS,
        "network_dim": settings.network_dim,
        "network_alpha": settings.network_alpha,
        "network_train_unet_only": settings.unet_only,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "max_token_length": settings.max_token_length,
        "learning_rate": settings.learning_rate,
        "unet_lr": settings.learning_rate,
        "max_train_epochs": settings.max_train_epochs,
        "mixed_precision": settings.precision,
        "full_bf16": settings.precision == "bf16",
    }
    if not settings.unet_only:
        values["text_encoder_lr"] = settings.text_encoder_lr
    if settings.conv_dim is not None:
        # LoRA on the 3x3 convolutions too (LoCon), through networks.lora's network_args.
        values["network_args"] = [f"conv_dim={settings.conv_dim}", f"conv_alpha={settings.conv_alpha}"]
    return values
