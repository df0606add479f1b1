"""The diffusion-pipe adapter, driven by a fake process replaying output recorded from diffusion-pipe."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from kubepilot_api.trainingrun import Hyperparameters, ToolSettings, TrainerKind
from kubepilot_api.workers.progress import PendingAction, WorkState
from kubepilot_workers.trainer.adapters.base import AdapterConfigError
from kubepilot_workers.trainer.adapters.diffusion_pipe import DiffusionPipeAdapter
from kubepilot_workers.trainer.adapters.process import LaunchPlan
from kubepilot_workers.trainer.adapters.progress import ProgressTracker
from tests.workers.fixtures.adapter_harness import (
    NAMESPACE,
    PLURAL,
    install_rank_probe,
    run_launchers,
    start_run,
    trainer_config,
    two_ranks,
    use_fake_tool,
    wait_for,
)
from tests.workers.intake import ContractIntake

TOOL = ToolSettings(
    config={"epochs": 3, "model": {"type": "sdxl", "dtype": "float16"}, "optimizer": {"lr": 5e-5}},
    datasetConfig={"resolutions": [1024], "num_ar_buckets": 9},
)


def test_diffusion_pipe_config_files_merge_the_tool_settings_over_our_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEPILOT_TRAINER_COMMAND", raising=False)
    monkeypatch.setenv("DIFFUSION_PIPE_DIR", "/opt/diffusion-pipe")
    monkeypatch.setenv("KUBEPILOT_GPU_COUNT", "2")
    hyper = Hyperparameters(rank=24, batchSize=2, gradientAccumulationSteps=4)
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE, tool=TOOL, hyperparameters=hyper)
    adapter = DiffusionPipeAdapter(config, ProgressTracker(Path(config.outputDir)))

    plan = adapter.prepare()

    dataset_toml, training_toml = plan.files
    training = tomllib.loads(training_toml.read_text())
    assert training["output_dir"] == str(Path(config.outputDir) / "runs")
    assert training["dataset"] == str(dataset_toml)
    assert training["epochs"] == 3 and training["save_every_n_epochs"] == 2
    assert training["micro_batch_size_per_gpu"] == 2 and training["gradient_accumulation_steps"] == 4
    assert training["model"] == {"type": "sdxl", "checkpoint_path": config.baseModelPath, "dtype": "float16"}
    assert training["adapter"] == {"type": "lora", "rank": 24, "dtype": "bfloat16"}
    assert training["optimizer"]["type"] == "adamw_optimi" and training["optimizer"]["lr"] == 5e-5
    dataset = tomllib.loads(dataset_toml.read_text())
    assert dataset["resolutions"] == [1024] and dataset["num_ar_buckets"] == 9 and dataset["enable_ar_bucket"]
    assert [(Path(d["path"]).name, d["num_repeats"]) for d in dataset["directory"]] == [
        ("10_demo", 10),
        ("2_style", 2),
    ]
    assert plan.argv == [
        "deepspeed",
        "--num_gpus=2",
        "/opt/diffusion-pipe/train.py",
        "--deepspeed",
        "--config",
        str(training_toml),
    ]


def test_diffusion_pipe_resumes_a_named_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEPILOT_TRAINER_COMMAND", raising=False)
    resume = tmp_path / "outputs" / "run1" / "runs" / "20250210_14-02-09"
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE, resume_from=str(resume))
    plan = DiffusionPipeAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()
    assert plan.argv[-2:] == ["--resume_from_checkpoint", "20250210_14-02-09"]


def test_diffusion_pipe_run_reports_steps_epochs_saves_and_the_final_lora(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "argv.json"
    use_fake_tool(monkeypatch, "diffusion-pipe", "diffusion-pipe/sdxl_lora_success.log", record)
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE, tool=TOOL)

    run = start_run(config, intake, tmp_path)
    assert run.join() == 0

    final = run.final
    assert final.state is WorkState.SUCCEEDED
    progress = final.progress
    assert progress is not None
    assert (progress.step, progress.maxSteps, progress.percent) == (30, 30, 100)
    assert (progress.epoch, progress.maxEpochs) == (2, 3)
    assert progress.loss == pytest.approx(0.1031)
    assert progress.stepsPerSecond == pytest.approx(1 / 2.865, rel=1e-3)
    [run_dir] = (Path(config.outputDir) / "runs").iterdir()
    prefix = f"run1/runs/{run_dir.name}"
    assert [(c.path, c.step) for c in final.checkpoints] == [
        (f"{prefix}/epoch2", 20),
        (f"{prefix}/global_step30", 30),
        (f"{prefix}/epoch3", 30),
    ]
    assert [o.path for o in final.outputs] == [f"{prefix}/epoch3/adapter_model.safetensors"]
    assert json.loads(record.read_text())["argv"][:2] == ["deepspeed", "--num_gpus=1"]


def test_diffusion_pipe_save_and_backup_use_its_signal_file_and_stop_uses_save_quit(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_tool(monkeypatch, "diffusion-pipe", "diffusion-pipe/sdxl_lora_long_run.log", tmp_path / "a.json")
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE, tool=TOOL)
    run = start_run(config, intake, tmp_path)
    wait_for(lambda: any(r.progress and r.progress.step == 2 for r in run.reports), what="step 2")

    intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name="sample", nonce="n-sample"))
    intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name="save", nonce="n-save"))
    wait_for(lambda: len(run.acks()) == 2, what="two acks")
    assert run.acks()["n-sample"][0] is False and "no samples" in run.acks()["n-sample"][1]
    assert run.acks()["n-save"][0] is True
    wait_for(
        lambda: any(c.path.endswith("global_step2") for r in run.reports for c in r.checkpoints), what="save"
    )

    intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name="stop", nonce="n-stop"))
    assert run.join() == 0
    final = run.final
    assert final.state is WorkState.STOPPED and final.exitCode == 0
    assert "save_quit" not in {p.name for p in (Path(config.outputDir) / "runs").rglob("*")}
    log = (Path(config.outputDir) / "_logs" / "train.log").read_text()
    assert log.count("Saving model checkpoint") == 2 and "Manually quitting" in log


def test_diffusion_pipe_traceback_fails_the_run_with_training_failed(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_tool(monkeypatch, "diffusion-pipe", "diffusion-pipe/missing_model.log", tmp_path / "a.json")
    run = start_run(trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE), intake, tmp_path)
    assert run.join() == 1
    error = run.final.error
    assert error is not None and error.code == "TRAINING_FAILED"
    assert error.message.startswith("FileNotFoundError: [Errno 2] No such file or directory")
    assert run.final.exitCode == 1


def _two_pod_plan(tmp_path: Path, index: str, monkeypatch: pytest.MonkeyPatch) -> LaunchPlan:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE).model_copy(update={"workers": 2})
    return DiffusionPipeAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()


def test_diffusion_pipe_pods_of_a_multi_pod_run_launch_without_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEPILOT_TRAINER_COMMAND", raising=False)
    monkeypatch.setenv("KUBEPILOT_GPU_COUNT", "4")
    monkeypatch.setenv("MASTER_ADDR", "run1-0.run1")
    monkeypatch.delenv("MASTER_PORT", raising=False)

    plan = _two_pod_plan(tmp_path, "1", monkeypatch)

    hostfile = plan.files[-1]
    assert hostfile.read_text() == "node-0 slots=4\nnode-1 slots=4\n"
    assert plan.argv[:7] == [
        "deepspeed",
        "--num_gpus=4",
        f"--hostfile={hostfile}",
        "--no_ssh",
        "--node_rank=1",
        "--master_addr=run1-0.run1",
        "--master_port=29500",
    ]
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    config = trainer_config(tmp_path, TrainerKind.DIFFUSION_PIPE).model_copy(update={"workers": 2})
    with pytest.raises(AdapterConfigError, match="JOB_COMPLETION_INDEX"):
        DiffusionPipeAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()


def test_the_real_deepspeed_launcher_numbers_the_ranks_of_two_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our launcher flags, run by DeepSpeed's own launcher (CPU) with a probe in place of train.py."""
    install_rank_probe(monkeypatch, tmp_path / "diffusion-pipe", "train.py", "DIFFUSION_PIPE_DIR", "29561")
    plans = []
    for index in ("0", "1"):
        pod = tmp_path / f"pod{index}"
        pod.mkdir()
        plan = _two_pod_plan(pod, index, monkeypatch)
        plans.append((plan.argv, plan.cwd))
    probes = run_launchers(plans, "deepspeed")
    assert probes == two_ranks("29561")
