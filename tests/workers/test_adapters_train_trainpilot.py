"""TrainPilot's profiles as LoRA Pilot publishes them, and its dataset-size adjustments."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubepilot_api.trainingrun import KohyaProfile
from kubepilot_workers.trainer.adapters.base import Subset
from kubepilot_workers.trainer.adapters.trainpilot import (
    SD1_PROFILES,
    SDXL_PROFILES,
    plan_steps,
    size_tier_repeats,
    training_settings,
)

QUICK, REGULAR, HIGH = KohyaProfile.QUICK_TEST, KohyaProfile.REGULAR, KohyaProfile.HIGH_QUALITY


def _subset(images: int, repeats: int = 1) -> Subset:
    return Subset(Path(f"/data/{repeats}_x"), "x", repeats, images)


def test_sdxl_profiles_carry_trainpilots_published_values() -> None:
    table = {
        profile: (
            s.max_train_steps,
            s.max_train_epochs,
            s.network_dim,
            s.network_alpha,
            s.train_batch_size,
            s.gradient_accumulation_steps,
            s.max_token_length,
            s.text_encoder_lr,
            s.precision,
        )
        for profile, s in SDXL_PROFILES.items()
    }
    assert table == {
        QUICK: (600, 12, 32, 16, 1, 2, 200, 2e-5, "fp16"),
        REGULAR: (1200, 25, 48, 24, 2, 2, 225, 3e-5, "bf16"),
        HIGH: (2400, 45, 64, 32, 4, 1, 225, 3e-5, "bf16"),
    }
    assert {s.learning_rate for s in SDXL_PROFILES.values()} == {2.5e-4}


def test_sd1_profiles_follow_the_guide_ranks_batch_precision_and_unet_only() -> None:
    assert [(s.max_train_steps, s.network_dim, s.train_batch_size) for s in SD1_PROFILES.values()] == [
        (600, 16, 1),
        (1200, 32, 1),
        (2400, 64, 1),
    ]
    assert all(s.unet_only and s.precision == "fp16" and s.resolution == 512 for s in SD1_PROFILES.values())
    settings = training_settings(SD1_PROFILES[REGULAR])
    assert settings["network_train_unet_only"] is True and "text_encoder_lr" not in settings
    assert "network_args" not in settings, "no conv LoRA in the SD 1.x recipe"


@pytest.mark.parametrize(
    ("profile", "images", "repeats"),
    [
        (QUICK, 10, 1),
        (QUICK, 500, 1),
        (REGULAR, 30, 4),
        (REGULAR, 31, 2),
        (REGULAR, 61, 1),
        (HIGH, 30, 6),  # 8 for a tiny dataset, capped at 6
        (HIGH, 60, 6),
        (HIGH, 150, 3),
        (HIGH, 151, 1),
    ],
)
def test_repeats_follow_the_dataset_size_tier(profile: KohyaProfile, images: int, repeats: int) -> None:
    assert size_tier_repeats(profile, images) == repeats


def test_the_step_target_is_clamped_to_the_epoch_ceiling() -> None:
    # regular, 20 images in a 1_ folder: 4 repeats, 80 samples, 40 batches of 2, 20 updates a epoch;
    # 25 epochs allow 500 of the 1,200 steps.
    plan = plan_steps(SDXL_PROFILES[REGULAR], REGULAR, [_subset(20)])
    assert plan.repeats == [4] and plan.max_train_steps == 500


def test_a_big_dataset_gets_a_third_more_steps() -> None:
    # high_quality, 100 images: 3 repeats, 2,400 + 800 steps, the ceiling (45 x 75) is not reached.
    plan = plan_steps(SDXL_PROFILES[HIGH], HIGH, [_subset(100)])
    assert plan.repeats == [3] and plan.max_train_steps == 3200


def test_explicit_repeat_folders_keep_their_count_and_count_in_the_clamp() -> None:
    plan = plan_steps(SDXL_PROFILES[QUICK], QUICK, [_subset(3, repeats=10), _subset(2)])
    # 3 x 10 + 2 x 1 = 32 samples, 32 batches, 16 updates; 12 epochs allow 192 steps.
    assert plan.repeats == [10, 1] and plan.max_train_steps == 192
