"""``python -m kubepilot_workers.trainer`` as a real subprocess against the contract intake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kubepilot_api.workers.env import CONFIG_ENV, REPORT_URL_ENV, TERMINATION_MESSAGE_ENV, TOKEN_FILE_ENV
from kubepilot_api.workers.progress import TrainingReport, WorkState
from kubepilot_workers.reporting import Reporter
from kubepilot_workers.trainer.checkpoints import read_state
from kubepilot_workers.trainer.distributed import DistributedInfo
from kubepilot_workers.trainer.loop import LoraTrainer
from kubepilot_workers.trainer.model import file_sha256
from tests.workers._trainer_tiny import (
    NAMESPACE,
    PLURAL,
    TOKEN,
    make_dataset,
    tiny_model,
    trainer_config,
    wait_for,
    write_config,
)
from tests.workers.intake import ContractIntake

__all__ = ["tiny_model"]

ROOT = Path(__file__).resolve().parents[2]


def _environment(tmp_path: Path, url: str, config: Path) -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {key: value for key, value in os.environ.items() if key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    env.update({
        CONFIG_ENV: str(config),
        REPORT_URL_ENV: url,
        TOKEN_FILE_ENV: str(token_file),
        TERMINATION_MESSAGE_ENV: str(tmp_path / "termination-log"),
        "OMP_NUM_THREADS": "2",
    })  # fmt: skip
    return env


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubepilot_workers.trainer"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@pytest.mark.parametrize(("zero_stage", "offload"), [(2, False), (3, True)], ids=["zero2", "zero3-offload"])
def test_the_cli_trains_under_deepspeed_zero_and_ends_succeeded(
    intake: ContractIntake, tiny_model: Path, tmp_path: Path, zero_stage: int, offload: bool
) -> None:
    dataset = make_dataset(tmp_path / "ds", {"2_a": [(64, 64), (96, 64)]})
    config = trainer_config(
        tiny_model, dataset, tmp_path / "out", name="ds", deepspeed=True, zero_stage=zero_stage,
        offload=offload, maxSteps=3, saveEverySteps=2, gradientAccumulationSteps=2,
    )  # fmt: skip
    url = intake.register(NAMESPACE, PLURAL, "ds", TOKEN)
    process = _start(_environment(tmp_path, url, write_config(config, tmp_path / "config.json")))
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]

    reports = intake.workload(NAMESPACE, PLURAL, "ds").reports
    assert reports[0].state in {WorkState.STARTING, WorkState.RUNNING}
    final = reports[-1]
    assert isinstance(final, TrainingReport) and final.final and final.state is WorkState.SUCCEEDED
    assert final.progress is not None and final.progress.step == 3 and final.progress.loss is not None
    assert final.outputs[0].path == "ds/ds.safetensors"
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert termination["state"] == "Succeeded" and termination["final"] is True
    folder, state = read_state(tmp_path / "out" / "ds" / "checkpoints" / "step-00000002")
    assert state.engine == "deepspeed" and (folder / "deepspeed").is_dir()
    assert TOKEN not in output, "the token is never logged"


def test_sigterm_stops_the_cli_in_bf16_after_saving_a_checkpoint(
    intake: ContractIntake, tiny_model: Path, tmp_path: Path
) -> None:
    dataset = make_dataset(tmp_path / "ds", {"1_a": [(64, 64)]})
    config = trainer_config(
        tiny_model, dataset, tmp_path / "out", name="sig", maxSteps=100_000, mixedPrecision="bf16"
    )
    url = intake.register(NAMESPACE, PLURAL, "sig", TOKEN)
    process = _start(_environment(tmp_path, url, write_config(config, tmp_path / "config.json")))
    try:

        def trained_a_step() -> bool:
            return any(
                isinstance(r, TrainingReport) and r.progress is not None and r.progress.step >= 1
                for r in intake.workload(NAMESPACE, PLURAL, "sig").reports
            )

        wait_for(trained_a_step, 120, "a training step reported")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output[-3000:]
    final = intake.workload(NAMESPACE, PLURAL, "sig").reports[-1]
    assert (
        isinstance(final, TrainingReport) and final.state is WorkState.STOPPED and final.progress is not None
    )
    step = final.progress.step
    assert (
        tmp_path / "out" / "sig" / "checkpoints" / f"step-{step:08d}" / f"sig-step{step:08d}.safetensors"
    ).is_file()
    assert json.loads((tmp_path / "termination-log").read_text())["state"] == "Stopped"


def test_a_bad_config_fails_with_a_clear_error_and_a_termination_message(
    intake: ContractIntake, tmp_path: Path
) -> None:
    url = intake.register(NAMESPACE, PLURAL, "bad", TOKEN)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"trainer": "kubepilot-lora", "outputName": "x"}))
    process = _start(_environment(tmp_path, url, config))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "Traceback" not in output
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert termination["state"] == "Failed" and termination["error"]["code"] == "CONFIG_INVALID"
    assert intake.workload(NAMESPACE, PLURAL, "bad").reports[-1].state is WorkState.FAILED


def test_a_missing_dataset_fails_the_run_with_dataset_invalid(
    intake: ContractIntake, tiny_model: Path, tmp_path: Path
) -> None:
    config = trainer_config(tiny_model, tmp_path / "no-such-dataset", tmp_path / "out", name="nods")
    url = intake.register(NAMESPACE, PLURAL, "nods", TOKEN)
    process = _start(_environment(tmp_path, url, write_config(config, tmp_path / "config.json")))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in output
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert (
        termination["error"]["code"] == "DATASET_INVALID"
        and "does not exist" in termination["error"]["message"]
    )


def _files(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder`` with its mtime and sha256."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, file_sha256(path))
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_a_rerun_of_a_finished_run_ends_at_once_as_succeeded_with_the_same_outputs(
    intake: ContractIntake, tiny_model: Path, tmp_path: Path
) -> None:
    dataset = make_dataset(tmp_path / "ds", {"2_a": [(64, 64), (96, 64)]})
    config = trainer_config(tiny_model, dataset, tmp_path / "out", name="done", maxSteps=4, saveEverySteps=2)
    one_process = DistributedInfo(rank=0, local_rank=0, world_size=1)
    first = LoraTrainer(config, Reporter(None, None), one_process).run()
    assert first.state is WorkState.SUCCEEDED
    output_dir = Path(config.outputDir)
    before = _files(output_dir)

    # The Job's pod run again: same config, same output folder, a checkpoint at step 2 in it.
    url = intake.register(NAMESPACE, PLURAL, "done", TOKEN)
    process = _start(_environment(tmp_path, url, write_config(config, tmp_path / "config.json")))
    output, _ = process.communicate(timeout=60)

    assert process.returncode == 0, output[-3000:]
    assert _files(output_dir) == before, "no file written or touched: the final LoRA keeps bytes and mtime"
    [report] = intake.workload(NAMESPACE, PLURAL, "done").reports  # no Starting: nothing was loaded
    assert isinstance(report, TrainingReport) and report.final and report.state is WorkState.SUCCEEDED
    assert report.outputs == first.outputs and report.outputs[0].path == "done/done.safetensors"
    assert report.progress is not None and report.progress.step == 4 and report.progress.percent == 100
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert (
        termination["state"] == "Succeeded" and termination["outputs"][0]["sha256"] == first.outputs[0].sha256
    )
