"""Helpers for the built-in trainer's tests: a tiny base model, tiny datasets, trainer configs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from kubepilot_api.workers.config import TrainerConfig

TOKEN = "trainer-token"
NAMESPACE = "ns"
PLURAL = "trainingruns"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny Stable Diffusion folder (built once per session by the tinymodels module)."""
    from kubepilot_workers.tinymodels import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.getbasetemp() / "tiny-sd")


def make_dataset(root: Path, layout: dict[str, list[tuple[int, int]]], *, captions: bool = True) -> Path:
    """Folders of solid-colour PNGs: ``{"2_cat": [(64, 64), (96, 64)]}``; captions name folder and index."""
    root.mkdir(parents=True, exist_ok=True)
    for folder, sizes in layout.items():
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        for index, (width, height) in enumerate(sizes):
            colour = ((index * 70) % 256, (len(folder) * 40) % 256, (200 - index * 30) % 256)
            image = Image.new("RGB", (width, height), colour)
            # A diagonal stripe so the images are not flat: the model has something to fit.
            for offset in range(min(width, height)):
                image.putpixel((offset, offset), (255, 255, 255))
            image.save(target / f"img{index}.png")
            if captions:
                (target / f"img{index}.txt").write_text(f"{folder} picture {index}")
    return root


def trainer_config(
    model: Path,
    dataset: Path,
    output: Path,
    *,
    name: str = "tr1",
    deepspeed: bool = False,
    zero_stage: int = 2,
    offload: bool = False,
    **hyper: Any,
) -> TrainerConfig:
    """A TrainerConfig for the built-in trainer with small, fast hyper-parameters."""
    hyperparameters: dict[str, Any] = {
        "resolution": 64,
        "maxSteps": 4,
        "rank": 4,
        "alpha": 4,
        "learningRate": 1e-3,
    }
    hyperparameters.update(hyper)
    body: dict[str, Any] = {
        "workload": {"kind": "TrainingRun", "namespace": NAMESPACE, "name": name},
        "trainer": "kubepilot-lora",
        "baseModelPath": str(model),
        "datasetDir": str(dataset),
        "outputDir": str(output / name),
        "outputName": name,
        "hyperparameters": hyperparameters,
    }
    if deepspeed:
        body["deepspeed"] = {
            "enabled": True,
            "zeroStage": zero_stage,
            "offloadOptimizer": offload,
            "offloadParameters": offload and zero_stage == 3,
        }
    return TrainerConfig.model_validate(body)


def write_config(config: TrainerConfig, path: Path) -> Path:
    path.write_text(json.dumps(config.to_dict()))
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until ``predicate`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")
