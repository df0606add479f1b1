"""Pieces of the trainer adapters: the TOML writer, the tqdm parser, failure classification, and
SIGTERM to the adapter process (pod deletion) becoming a graceful stop of the tool."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kubepilot_api.trainingrun import ToolSettings, TrainerKind
from kubepilot_api.workers.env import REPORT_URL_ENV, TERMINATION_MESSAGE_ENV, TOKEN_FILE_ENV
from kubepilot_api.workers.progress import WorkState
from kubepilot_workers.trainer.adapters import toml_writer
from kubepilot_workers.trainer.adapters.progress import classify_failure, parse_tqdm
from tests.workers.fixtures.adapter_harness import (
    FAKE_TRAINER,
    FIXTURES,
    NAMESPACE,
    PLURAL,
    TOKEN,
    trainer_config,
    wait_for,
)
from tests.workers.intake import ContractIntake


def test_toml_writer_output_reads_back_identically() -> None:
    document = {
        "output_dir": 'C:\\runs\\"quoted"\n',
        "epochs": 3,
        "lr": 1e-4,
        "flag": False,
        "betas": [0.9, 0.99],
        "model": {"type": "sdxl", "nested": {"deep": "yes"}},
        "datasets": [
            {"resolution": 1024, "subsets": [{"image_dir": "/d/10_a", "num_repeats": 10}, {"x": 1}]}
        ],
        "weird key": "ünïcode",
    }
    assert tomllib.loads(toml_writer.dumps(document)) == document


@pytest.mark.parametrize("value", [None, math.nan, [{"a": 1}, 2], object()])
def test_toml_writer_refuses_values_toml_cannot_hold(value: object) -> None:
    with pytest.raises(toml_writer.TomlError):
        toml_writer.dumps({"key": value})


def test_tqdm_lines_of_each_tool_parse() -> None:
    kohya = parse_tqdm("steps:  12%|█▏        | 120/1000 [01:02<07:40,  1.91it/s, avr_loss=0.0812]")
    assert kohya is not None
    assert (kohya.desc, kohya.n, kohya.total, kohya.remaining_seconds) == ("steps", 120, 1000, 460)
    assert kohya.iterations_per_second == pytest.approx(1.91) and kohya.postfix == {"avr_loss": "0.0812"}
    slow = parse_tqdm("step:  40%|████      | 2/5 [1:00:03<1:30:00,  2.50s/it, loss=0.1, smooth loss=0.2]")
    assert (
        slow is not None
        and slow.remaining_seconds == 5400
        and slow.iterations_per_second == pytest.approx(0.4)
    )
    assert slow.postfix == {"loss": "0.1", "smooth loss": "0.2"}
    start = parse_tqdm("steps:   0%|          | 0/200 [00:00<?, ?it/s]")
    assert start is not None and start.remaining_seconds == -1 and start.iterations_per_second == 0
    assert parse_tqdm("epoch 2/10") is None and parse_tqdm("steps: 12 loss: 0.1 iter time (s): 1.0") is None


def test_failures_are_classified_from_the_last_lines() -> None:
    oom = classify_failure(["Traceback ...", "torch.cuda.OutOfMemoryError: CUDA out of memory.", "x"], 1)
    assert oom.code == "OUT_OF_MEMORY"
    error = classify_failure(["Traceback (most recent call last):", "ValueError: bad resolution", "bye"], 1)
    assert error.code == "TRAINING_FAILED" and error.message == "ValueError: bad resolution (exit code 1)"
    quiet = classify_failure(["nothing useful"], -9)
    assert quiet.code == "TRAINING_FAILED" and "-9" in quiet.message


def test_sigterm_to_the_adapter_process_stops_the_tool_gracefully(
    intake: ContractIntake, tmp_path: Path
) -> None:
    tool = ToolSettings(config={"epochs": 3})
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE, tool=tool)
    config_file = tmp_path / "trainer.json"
    config_file.write_text(config.model_dump_json())
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    fixture = FIXTURES / "diffusion-pipe" / "sdxl_lora_long_run.log"
    fake = f"{sys.executable} {FAKE_TRAINER} --tool diffusion-pipe --fixture {fixture} --"
    env = {
        **os.environ,
        REPORT_URL_ENV: intake.register(NAMESPACE, PLURAL, "run1", TOKEN),
        TOKEN_FILE_ENV: str(token_file),
        TERMINATION_MESSAGE_ENV: str(tmp_path / "termination"),
        "KUBEPILOT_TRAINER_COMMAND": fake,
        "FAKE_HOLD_SECONDS": "20",
    }
    driver = (
        "import sys\n"
        "from kubepilot_api.workers.config import TrainerConfig, load_config\n"
        "from kubepilot_workers.reporting import Reporter\n"
        "from kubepilot_workers.trainer.adapters import run\n"
        "sys.exit(run(load_config(TrainerConfig, sys.argv[1]), Reporter.from_env(interval=0.05)))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", driver, str(config_file)], env=env)
    try:
        reports = intake.workload(NAMESPACE, PLURAL, "run1").reports
        wait_for(
            lambda: any(r.state is WorkState.RUNNING for r in reports), what="progress from the subprocess"
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    final = intake.workload(NAMESPACE, PLURAL, "run1").reports[-1]
    assert final.final and final.state is WorkState.STOPPED
    assert json.loads((tmp_path / "termination").read_text())["state"] == "Stopped"
    log = (Path(config.outputDir) / "_logs" / "train.log").read_text()
    assert "Manually quitting" in log, "the stop went through diffusion-pipe's save_quit signal file"
