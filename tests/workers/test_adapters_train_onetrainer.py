"""The OneTrainer adapter and its shim, run against a stand-in OneTrainer checkout (fixtures/onetrainer)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kubepilot_api.trainingrun import Hyperparameters, ToolSettings, TrainerKind
from kubepilot_api.workers.progress import PendingAction, WorkState
from kubepilot_workers.trainer.adapters.onetrainer import SHIM, OneTrainerAdapter
from kubepilot_workers.trainer.adapters.onetrainer_shim import WholeLineStream
from kubepilot_workers.trainer.adapters.progress import ProgressTracker
from tests.workers.fixtures.adapter_harness import (
    FIXTURES,
    NAMESPACE,
    ONETRAINER_ROOT,
    PLURAL,
    start_run,
    trainer_config,
    wait_for,
)
from tests.workers.intake import ContractIntake

TOOL = ToolSettings(
    config={
        "epochs": 2,
        "model_type": "STABLE_DIFFUSION_XL_10_BASE",
        "training_method": "LORA",
        "concepts": [{"path": "/somewhere/else"}],
    }
)


@pytest.fixture
def onetrainer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the adapter at the stand-in checkout; the real shim runs it with this Python."""
    monkeypatch.delenv("KUBEPILOT_TRAINER_COMMAND", raising=False)
    monkeypatch.setenv("ONETRAINER_DIR", str(ONETRAINER_ROOT))
    monkeypatch.setenv("ONETRAINER_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_ONETRAINER_FIXTURE", str(FIXTURES / "onetrainer" / "sdxl_lora_run.log"))
    monkeypatch.setenv("FAKE_HOLD_SECONDS", "0")


def test_onetrainer_config_keeps_the_tool_settings_and_sets_our_paths_and_concepts(
    tmp_path: Path, onetrainer: None
) -> None:
    hyper = Hyperparameters(samplePrompts=["a photo of demo"], resolution=1024)
    config = trainer_config(tmp_path, TrainerKind.ONETRAINER, tool=TOOL, hyperparameters=hyper)
    plan = OneTrainerAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()

    config_file, concepts_file, samples_file = plan.files
    written = json.loads(config_file.read_text())
    output = Path(config.outputDir)
    assert written["epochs"] == 2 and written["model_type"] == "STABLE_DIFFUSION_XL_10_BASE"
    assert "concepts" not in written, "the dataset, not an inline concept list, decides what is trained"
    assert written["workspace_dir"] == str(output / "workspace")
    assert written["base_model_name"] == config.baseModelPath
    assert written["output_model_destination"] == str(output / "demo.safetensors")
    assert written["concept_file_name"] == str(concepts_file)
    assert written["sample_definition_file_name"] == str(samples_file)
    concepts = json.loads(concepts_file.read_text())
    assert {c["__version"] for c in concepts} == {1}, "ConceptConfig format 1 (balancing)"
    assert [(c["name"], c["balancing"], c["balancing_strategy"]) for c in concepts] == [
        ("demo", 10.0, "REPEATS"),
        ("style", 2.0, "REPEATS"),
    ]
    [sample] = json.loads(samples_file.read_text())
    assert sample["prompt"] == "a photo of demo" and sample["width"] == 1024
    assert plan.argv[:2] == [sys.executable, str(SHIM)]
    assert plan.argv[2:] == [
        "--onetrainer-dir",
        str(ONETRAINER_ROOT),
        "--config-path",
        str(config_file),
        "--commands-file",
        str(output / "_control" / "onetrainer-commands.jsonl"),
    ]


def test_onetrainer_preset_is_read_from_its_training_presets(
    tmp_path: Path, onetrainer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "OneTrainer"
    (root / "training_presets").mkdir(parents=True)
    (root / "training_presets" / "#sdxl 1.0 LoRA.json").write_text(json.dumps({"epochs": 7, "batch_size": 4}))
    monkeypatch.setenv("ONETRAINER_DIR", str(root))
    config = trainer_config(tmp_path, TrainerKind.ONETRAINER, tool=ToolSettings(configName="#sdxl 1.0 LoRA"))
    plan = OneTrainerAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()
    written = json.loads(plan.files[0].read_text())
    assert (written["epochs"], written["batch_size"]) == (7, 4)


def test_onetrainer_run_reports_progress_and_the_final_model(
    intake: ContractIntake, tmp_path: Path, onetrainer: None
) -> None:
    config = trainer_config(tmp_path, TrainerKind.ONETRAINER, tool=TOOL)
    run = start_run(config, intake, tmp_path)
    assert run.join() == 0

    final = run.final
    assert final.state is WorkState.SUCCEEDED
    progress = final.progress
    assert progress is not None
    assert (progress.step, progress.maxSteps, progress.epoch, progress.maxEpochs) == (8, 8, 1, 2)
    assert progress.loss == pytest.approx(0.102)
    [output] = final.outputs
    assert output.path == "run1/demo.safetensors" and len(output.sha256) == 64
    assert final.checkpoints == [], "the final model is an output, not a checkpoint"


def test_onetrainer_carries_save_backup_samples_and_stop_through_the_shim(
    intake: ContractIntake, tmp_path: Path, onetrainer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_HOLD_SECONDS", "20")
    config = trainer_config(tmp_path, TrainerKind.ONETRAINER, tool=TOOL)
    run = start_run(config, intake, tmp_path)
    wait_for(lambda: any(r.progress and r.progress.step == 5 for r in run.reports), what="step 5")

    actions = [
        PendingAction(name="save", nonce="n-save"),
        PendingAction(name="backup", nonce="n-backup"),
        PendingAction(name="sample", nonce="n-sample"),
        PendingAction(
            name="sample", nonce="n-custom", params={"prompt": "a red car", "seed": 3, "steps": 10}
        ),
        PendingAction(name="sample", nonce="n-bad", params={"prompt": "x", "sampler": "euler"}),
        PendingAction(name="pause", nonce="n-pause"),
    ]
    for action in actions:
        intake.request_action(NAMESPACE, PLURAL, "run1", action)
    wait_for(lambda: len(run.acks()) == len(actions), what="all acks")
    acks = run.acks()
    assert all(acks[n][0] for n in ("n-save", "n-backup", "n-sample", "n-custom")), acks
    assert not acks["n-bad"][0] and "sampler" in acks["n-bad"][1]
    assert not acks["n-pause"][0] and "not supported" in acks["n-pause"][1]
    wait_for(lambda: len(run.reports[-1].checkpoints) == 2, what="save and backup checkpoints")
    wait_for(lambda: run.reports[-1].samples is not None, what="samples")

    intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name="stop", nonce="n-stop"))
    assert run.join() == 0
    final = run.final
    assert final.state is WorkState.STOPPED and acks_ok(run.acks(), "n-stop")
    paths = sorted(c.path for c in final.checkpoints)
    assert paths[0].startswith("run1/workspace/backup/") and paths[0].endswith("-backup-5-1-1")
    assert paths[1].startswith("run1/workspace/save/") and paths[1].endswith("-save-5-1-1.safetensors")
    assert {c.step for c in final.checkpoints} == {5}
    assert final.samples is not None and final.samples.count >= 1
    assert [o.path for o in final.outputs] == ["run1/demo.safetensors"], "OneTrainer saves on stop"
    commands = (Path(config.outputDir) / "_control" / "onetrainer-commands.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in commands] == [
        "save",
        "backup",
        "sample",
        "sample",
        "stop",
    ]


def acks_ok(acks: dict[str, tuple[bool, str]], nonce: str) -> bool:
    return acks[nonce][0]


@pytest.mark.parametrize(("given", "loaded"), [(None, 12), (9, 9)])
def test_the_shim_takes_a_config_without_a_version_as_the_installed_format(
    tmp_path: Path, onetrainer: None, given: int | None, loaded: int
) -> None:
    config = trainer_config(tmp_path, TrainerKind.ONETRAINER, tool=TOOL)
    plan = OneTrainerAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()
    config_file = plan.files[0]
    document = json.loads(config_file.read_text())
    assert "__version" not in document, "the adapter passes the user's config on as written"
    if given is not None:
        config_file.write_text(json.dumps(document | {"__version": given}))

    result = subprocess.run(plan.argv, cwd=plan.cwd, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr[-2000:]
    assert f"fake TrainConfig loaded format {loaded}" in result.stdout
    assert ("[kubepilot] config has no __version" in result.stdout) is (given is None)


class SlowSink:
    """A stream whose writes yield the processor, the way a pipe under load does."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        time.sleep(0)
        self.text += text
        return len(text)

    def flush(self) -> None:
        time.sleep(0)


def test_the_shim_writes_whole_lines_when_the_trainer_and_the_poller_print_at_once() -> None:
    """The trainer's "Saving ..." and the poller's "[kubepilot] ..." never share a line."""
    sink = SlowSink()
    out, err = WholeLineStream(sink), WholeLineStream(sink)
    lines = {f"{who} line {n}" for who in ("trainer", "poller", "bar") for n in range(300)}

    def write(who: str, stream: WholeLineStream, end: str) -> None:
        for n in range(300):
            print(f"{who} line {n}", end=end, file=stream, flush=True)

    threads = [
        threading.Thread(target=write, args=("trainer", out, "\n")),
        threading.Thread(target=write, args=("poller", out, "\n")),
        threading.Thread(target=write, args=("bar", err, "\r")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = [line for line in re.split(r"[\r\n]", sink.text) if line]
    assert sorted(written) == sorted(lines)
