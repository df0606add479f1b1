"""The example worker configs in ``examples/workers`` and the tiny-model CLI the run-book relies on.

docs/workers.md tells a reviewer to run every worker on these files; a config that no longer
validates against its model, or a ``tinymodels`` command that no longer works, breaks the run-book.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kubepilot_api.common import KubeModel
from kubepilot_api.workers.config import (
    AdapterConfig,
    DownloaderConfig,
    GeneratorConfig,
    NodeAgentConfig,
    TrainerConfig,
    load_config,
)
from kubepilot_workers import tinymodels

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "workers"
DEMO_ROOT = "/tmp/kubepilot-demo/"

# The file-name prefix says which worker (and so which config model) an example is for.
MODELS: dict[str, type[KubeModel]] = {
    "downloader": DownloaderConfig,
    "trainer": TrainerConfig,
    "generator": GeneratorConfig,
    "adapter": AdapterConfig,
    "node-agent": NodeAgentConfig,
}
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def _model_for(path: Path) -> type[KubeModel]:
    matches = [model for prefix, model in MODELS.items() if path.stem.startswith(prefix)]
    assert len(matches) == 1, f"{path.name}: name must start with one of {sorted(MODELS)}"
    return matches[0]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _printed_path(stdout: str) -> Path:
    """The path the CLI prints last (libraries such as DeepSpeed may log to stdout before it)."""
    return Path(stdout.strip().splitlines()[-1])


def test_every_worker_has_an_example() -> None:
    covered = {prefix for prefix in MODELS for path in EXAMPLE_FILES if path.stem.startswith(prefix)}
    assert covered == set(MODELS)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_example_validates_against_its_model(path: Path) -> None:
    model = _model_for(path)
    config = load_config(model, path)
    # Extra keys would be silently accepted by some models: the file must round-trip exactly.
    raw = json.loads(path.read_text())
    dumped = config.model_dump(mode="json", exclude_unset=True)
    assert dumped == raw
    workload = raw.get("workload")
    if workload is not None:
        expected_kind = {
            TrainerConfig: "TrainingRun",
            DownloaderConfig: "ModelPull",
            AdapterConfig: "ServiceInstance",
        }.get(model)
        if expected_kind is not None:
            assert workload["kind"] == expected_kind
    # Absolute paths point into the demo tree the run-book creates, never at a real system path.
    for value in _strings(raw):
        if value.startswith("/") and value not in {"/"}:
            assert value.startswith(DEMO_ROOT) or value == "/tmp", f"{path.name}: {value}"


def test_generator_examples_cover_both_modes() -> None:
    modes = {load_config(GeneratorConfig, path).mode.value for path in EXAMPLES.glob("generator-*.json")}
    assert modes == {"oneshot", "server"}


def test_tinymodels_help_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubepilot_workers.tinymodels", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("sd", "sd-inpaint", "upscaler"):
        assert command in result.stdout


def test_tinymodels_rejects_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tinymodels.main(["sdxl", "/nowhere"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_tinymodels_sd_builds_a_pipeline_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "tiny-sd"
    assert tinymodels.main(["sd", str(target)]) == 0
    assert _printed_path(capsys.readouterr().out) == target.resolve()
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for weights in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (target / weights).stat().st_size > 0
    # A second call leaves the complete folder alone and still prints it.
    before = (target / "unet/diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert tinymodels.main(["sd", str(target)]) == 0
    assert _printed_path(capsys.readouterr().out) == target.resolve()
    assert (target / "unet/diffusion_pytorch_model.safetensors").stat().st_mtime_ns == before
