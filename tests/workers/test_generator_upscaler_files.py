"""The generator's upscaler lookup: configured names, and model files inside the models volume only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kubepilot_workers.executor.backend import ExecutionError
from kubepilot_workers.generator.upscale import UpscalerCache
from kubepilot_workers.tinymodels import save_tiny_upscaler


def test_a_file_inside_the_models_root_loads_and_one_outside_does_not(tmp_path: Path) -> None:
    root = tmp_path / "models"
    inside = save_tiny_upscaler(root / "upscale_models" / "x2.safetensors", scale=2)
    outside = save_tiny_upscaler(tmp_path / "elsewhere" / "x2.safetensors", scale=2)
    (root / "upscale_models" / "link.safetensors").symlink_to(outside)
    cache = UpscalerCache({}, torch.device("cpu"), torch.float32, root=str(root))
    assert cache.get(str(inside)).scale == 2
    for refused in (str(outside), str(root / "upscale_models" / "link.safetensors"), str(root / ".." / "x")):
        with pytest.raises(ExecutionError) as error:
            cache.get(refused)
        assert error.value.code == "MODEL_NOT_FOUND"


def test_without_a_root_only_configured_names_load(tmp_path: Path) -> None:
    file = save_tiny_upscaler(tmp_path / "x2.safetensors", scale=2)
    cache = UpscalerCache({"Tiny": str(file)}, torch.device("cpu"), torch.float32)
    assert cache.get("Tiny").scale == 2
    with pytest.raises(ExecutionError, match="known: Tiny"):
        cache.get(str(file))
