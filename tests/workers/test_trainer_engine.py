"""Engine settings (precision, DeepSpeed config) and the progress arithmetic of the built-in trainer."""

from __future__ import annotations

import time

import pytest
import torch

from kubepilot_api.trainingrun import DeepSpeedConfig, Hyperparameters, MixedPrecision
from kubepilot_api.workers.progress import WorkState
from kubepilot_workers.trainer.engine import EngineConfigError, autocast_dtype, deepspeed_config
from kubepilot_workers.trainer.progress import ProgressTracker


def test_fp16_is_refused_without_cuda_and_bf16_autocasts_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    with pytest.raises(EngineConfigError, match="fp16 needs a CUDA device"):
        autocast_dtype(MixedPrecision.FP16, cpu)
    assert autocast_dtype(MixedPrecision.BF16, cpu) is torch.bfloat16
    assert autocast_dtype(MixedPrecision.NO, cpu) is None


def test_the_deepspeed_config_follows_the_zero_settings() -> None:
    hp = Hyperparameters(batchSize=2, gradientAccumulationSteps=3, mixedPrecision=MixedPrecision.BF16)
    config = deepspeed_config(hp, DeepSpeedConfig(enabled=True, zeroStage=3, offloadOptimizer=True,
                                                  offloadParameters=True), world_size=4)  # fmt: skip
    assert config["train_batch_size"] == 2 * 3 * 4 and config["gradient_accumulation_steps"] == 3
    assert config["zero_optimization"] == {
        "stage": 3,
        "offload_optimizer": {"device": "cpu"},
        "offload_param": {"device": "cpu"},
    }
    assert config["bf16"] == {"enabled": True} and config["zero_force_ds_cpu_optimizer"] is False
    with pytest.raises(EngineConfigError, match="offloadParameters needs zeroStage 3"):
        deepspeed_config(hp, DeepSpeedConfig(enabled=True, zeroStage=2, offloadParameters=True), world_size=1)


def test_progress_reports_epoch_percent_smoothed_loss_and_eta() -> None:
    tracker = ProgressTracker(max_steps=10, steps_per_epoch=4)
    tracker.record_step(1, 2.0, 1e-4)
    time.sleep(0.05)
    tracker.record_step(3, 1.0, 5e-5)
    progress = tracker.progress()
    assert (progress.step, progress.epoch, progress.epochStep, progress.maxEpochs) == (3, 0, 3, 3)
    assert progress.percent == 30 and progress.loss == pytest.approx(0.9 * 2.0 + 0.1 * 1.0)
    assert progress.stepsPerSecond > 0 and progress.etaSeconds >= 0
    tracker.record_step(10, float("nan"), 1e-5)
    done = tracker.report(WorkState.SUCCEEDED).progress
    assert done is not None and (done.epoch, done.epochStep, done.percent) == (2, 2, 100)
    assert done.loss == pytest.approx(1.9), "a non-finite loss never poisons the smoothed value"
