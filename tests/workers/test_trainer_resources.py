"""The trainer's own resource figures in its reports (read by OneTrainer's system endpoints)."""

from __future__ import annotations

import os

import pytest
import torch

from kubepilot_api.workers.progress import PROCESS_METRICS, WorkState
from kubepilot_workers.trainer.progress import ProgressTracker
from kubepilot_workers.trainer.resources import ResourceProbe


def test_the_probe_reads_this_process_and_no_gpu_without_cuda() -> None:
    probe = ResourceProbe()
    sum(i * i for i in range(200_000))  # some CPU time between the two reads
    figures = probe.metrics()
    assert sorted(figures) == sorted(f"process.{name}" for name in PROCESS_METRICS)
    assert figures["process.pid"] == os.getpid()
    assert figures["process.memory_rss_bytes"] > 10_000_000  # this interpreter, torch loaded
    assert 0 < figures["process.memory_percent"] < 100
    assert figures["process.num_threads"] >= 1
    assert figures["process.cpu_percent"] >= 0  # over a short interval psutil may read above 100 x CPUs


def test_reports_carry_the_figures_beside_loss_and_learning_rate() -> None:
    tracker = ProgressTracker(max_steps=10, steps_per_epoch=5, probe=ResourceProbe())
    tracker.record_step(1, 0.5, 1e-4)
    metrics = tracker.report(WorkState.RUNNING).metrics
    assert metrics["loss"] == 0.5 and metrics["learning_rate"] == 1e-4
    assert metrics["process.pid"] == os.getpid()
    assert ProgressTracker(max_steps=10, steps_per_epoch=5).report(WorkState.RUNNING).metrics == {}


@pytest.mark.gpu
def test_on_a_gpu_the_allocators_figures_are_reported_per_device() -> None:
    """Runs in scripts/test-gpu.sh (CI has no GPU): what PyTorch's allocator holds, as reported."""
    held = torch.ones(64, 1024, 1024, device="cuda:0")  # 256 MiB of float32
    figures = ResourceProbe().metrics()
    assert figures["gpu.0.memory_allocated_bytes"] >= held.numel() * held.element_size()
    assert figures["gpu.0.memory_reserved_bytes"] >= figures["gpu.0.memory_allocated_bytes"]
    assert figures["gpu.0.memory_total_bytes"] == torch.cuda.get_device_properties(0).total_memory
