"""The kohya sd-scripts adapter, driven by a fake process replaying output recorded from sd-scripts."""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from pathlib import Path

import pytest

from kubepilot_api.trainingrun import Hyperparameters, KohyaProfile, ToolSettings, TrainerKind
from kubepilot_api.workers.progress import PendingAction, WorkState
from kubepilot_workers.trainer.adapters.base import STOP_GRACE_ENV, AdapterConfigError
from kubepilot_workers.trainer.adapters.kohya import KohyaAdapter
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


def test_kohya_config_files_follow_the_profile_the_dataset_folders_and_the_tool_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBEPILOT_TRAINER_COMMAND", raising=False)
    monkeypatch.setenv("KOHYA_DIR", "/opt/sd-scripts")
    monkeypatch.setenv("KUBEPILOT_GPU_COUNT", "2")
    overrides = {"optimizer_type": "Prodigy", "max_grad_norm": 1.0}
    tool = ToolSettings(profile=KohyaProfile.QUICK_TEST, config=overrides)
    hyper = Hyperparameters(samplePrompts=["a photo of demo"], sampleEverySteps=50, seed=7)
    config = trainer_config(tmp_path, TrainerKind.KOHYA, tool=tool, hyperparameters=hyper)
    adapter = KohyaAdapter(config, ProgressTracker(Path(config.outputDir)))

    plan = adapter.prepare()

    dataset_toml, training_toml, prompts = plan.files
    dataset = tomllib.loads(dataset_toml.read_text())
    assert dataset["general"]["caption_extension"] == ".txt"
    [entry] = dataset["datasets"]
    assert entry["resolution"] == 1024 and entry["batch_size"] == 1
    # Folders with an explicit repeat count keep it (a 1_ folder would get the profile's repeats).
    assert [(Path(s["image_dir"]).name, s["num_repeats"]) for s in entry["subsets"]] == [
        ("10_demo", 10),
        ("2_style", 2),
    ]
    training = tomllib.loads(training_toml.read_text())
    # TrainPilot's quick_test on SDXL: rank 32/16 (+ conv), 12 epochs at most, fp16, 2x accumulation;
    # 600 steps clamped to 12 epochs of ceil((3x10 + 2x2) / 1 / 2) = 17 updates: 204.
    assert (training["network_dim"], training["network_alpha"]) == (32, 16)
    assert training["network_args"] == ["conv_dim=32", "conv_alpha=16"]
    assert (training["max_train_epochs"], training["max_train_steps"]) == (12, 204)
    assert training["mixed_precision"] == "fp16" and training["gradient_accumulation_steps"] == 2
    assert (training["unet_lr"], training["text_encoder_lr"]) == (2.5e-4, 2e-5)
    assert training["optimizer_type"] == "Prodigy" and training["max_grad_norm"] == 1.0
    assert training["pretrained_model_name_or_path"] == config.baseModelPath
    assert training["output_dir"] == config.outputDir and training["output_name"] == "demo"
    assert training["dataset_config"] == str(dataset_toml)
    assert training["sample_prompts"] == str(prompts) and prompts.read_text() == "a photo of demo\n"
    assert training["sample_every_n_steps"] == 50 and training["seed"] == 7
    assert plan.argv == [
        "accelerate",
        "launch",
        "--num_cpu_threads_per_process",
        "2",
        "--num_processes",
        "2",
        "/opt/sd-scripts/sdxl_train_network.py",
        "--config_file",
        str(training_toml),
    ]


def test_kohya_run_reports_progress_checkpoints_samples_and_the_final_lora(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "argv.json"
    # Lines 50 ms apart so the run lasts long enough for progress reports before the final one.
    use_fake_tool(monkeypatch, "kohya", "kohya/sdxl_lora_success.log", record, "--delay", "0.05")
    hyper = Hyperparameters(samplePrompts=["a photo of demo"], sampleEverySteps=150)
    config = trainer_config(tmp_path, TrainerKind.KOHYA, hyperparameters=hyper)

    run = start_run(config, intake, tmp_path)
    assert run.join() == 0

    final = run.final
    assert final.state is WorkState.SUCCEEDED and final.exitCode == 0
    progress = final.progress
    assert progress is not None
    assert (progress.step, progress.maxSteps, progress.percent) == (200, 200, 100)
    assert (progress.epoch, progress.maxEpochs) == (1, 2)
    assert progress.loss == pytest.approx(0.0812) and progress.stepsPerSecond == pytest.approx(1.9)
    assert [(c.path, c.step) for c in final.checkpoints] == [
        ("run1/demo-000001.safetensors", 100),
        ("run1/demo.safetensors", 200),
    ]
    assert final.samples is not None and final.samples.count == 1
    assert final.samples.latest == "run1/sample/demo_000150_00_20241102091620.png"
    [output] = final.outputs
    lora = Path(config.outputDir) / "demo.safetensors"
    assert output.path == "run1/demo.safetensors"
    assert output.sha256 == hashlib.sha256(lora.read_bytes()).hexdigest()
    assert output.baseModel == config.baseModelPath and output.dataset == config.datasetDir
    running = [r for r in run.reports if r.state is WorkState.RUNNING and r.progress is not None]
    assert running, "progress must reach the intake while the tool runs"
    assert json.loads(run.termination.read_text())["state"] == "Succeeded"
    recorded = json.loads(record.read_text())
    training_toml = Path(config.outputDir) / "_config" / "training.toml"
    assert recorded["argv"][-2:] == ["--config_file", str(training_toml)]
    log = (Path(config.outputDir) / "_logs" / "train.log").read_text()
    assert "total optimization steps / 学習ステップ数: 200" in log and "accelerate launch" in log


def test_kohya_cuda_out_of_memory_fails_the_run_with_out_of_memory(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_tool(monkeypatch, "kohya", "kohya/sdxl_lora_cuda_oom.log", tmp_path / "argv.json")
    run = start_run(trainer_config(tmp_path, TrainerKind.KOHYA), intake, tmp_path)
    assert run.join() == 1

    final = run.final
    assert final.state is WorkState.FAILED and final.exitCode == 1
    assert final.error is not None and final.error.code == "OUT_OF_MEMORY"
    assert "CUDA out of memory" in final.error.message
    assert json.loads(run.termination.read_text())["error"]["code"] == "OUT_OF_MEMORY"


def test_kohya_refuses_save_backup_and_sample_and_stops_with_sigint(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_tool(monkeypatch, "kohya", "kohya/sdxl_lora_long_run.log", tmp_path / "argv.json")
    config = trainer_config(tmp_path, TrainerKind.KOHYA)
    run = start_run(config, intake, tmp_path)
    wait_for(lambda: any(r.progress and r.progress.step == 120 for r in run.reports), what="first progress")
    for name in ("save", "backup", "sample"):
        intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name=name, nonce=f"n-{name}"))
    wait_for(lambda: len(run.acks()) == 3, what="three acks")
    for name in ("save", "backup", "sample"):
        ok, message = run.acks()[f"n-{name}"]
        assert not ok and "not supported by kohya sd-scripts" in message

    intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name="stop", nonce="n-stop"))
    assert run.join() == 0

    final = run.final
    assert final.state is WorkState.STOPPED and final.exitCode == 130
    ok, message = run.acks()["n-stop"]
    assert ok and "SIGINT" in message
    assert "KeyboardInterrupt" in (Path(config.outputDir) / "_logs" / "train.log").read_text()


def test_kohya_stop_escalates_to_sigterm_when_the_tool_ignores_sigint(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = "kohya/sdxl_lora_long_run.log"
    use_fake_tool(monkeypatch, "kohya", fixture, tmp_path / "a.json", "--ignore-sigint")
    monkeypatch.setenv(STOP_GRACE_ENV, "0.5")
    run = start_run(trainer_config(tmp_path, TrainerKind.KOHYA), intake, tmp_path)
    wait_for(lambda: any(r.progress for r in run.reports), what="first progress")
    started = time.monotonic()
    intake.request_action(NAMESPACE, PLURAL, "run1", PendingAction(name="stop", nonce="n-stop"))

    assert run.join() == 0
    assert run.final.state is WorkState.STOPPED and run.final.exitCode == -15
    assert time.monotonic() - started < 10


def test_a_missing_dataset_fails_before_anything_is_launched(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "argv.json"
    use_fake_tool(monkeypatch, "kohya", "kohya/sdxl_lora_success.log", record)
    config = trainer_config(tmp_path, TrainerKind.KOHYA)
    config = config.model_copy(update={"datasetDir": str(tmp_path / "nope")})
    run = start_run(config, intake, tmp_path)
    assert run.join() == 2
    assert run.final.error is not None and run.final.error.code == "INVALID_SPEC"
    assert "does not exist" in run.final.error.message
    assert not record.exists()


def test_a_launcher_that_cannot_start_fails_the_run_with_a_clear_message(
    intake: ContractIntake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEPILOT_TRAINER_COMMAND", str(tmp_path / "no-such-launcher"))
    run = start_run(trainer_config(tmp_path, TrainerKind.KOHYA), intake, tmp_path)
    assert run.join() == 1
    error = run.final.error
    assert error is not None and error.code == "TRAINING_FAILED" and "could not start" in error.message


def test_kohya_pods_of_a_multi_pod_run_are_launched_by_the_real_accelerate_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our ``accelerate launch`` flags, run by accelerate itself (CPU), a probe in place of the script."""
    install_rank_probe(monkeypatch, tmp_path / "sd-scripts", "train_network.py", "KOHYA_DIR", "29573")
    plans = []
    for index in ("0", "1"):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", index)
        pod = tmp_path / f"pod{index}"
        pod.mkdir()
        config = trainer_config(pod, TrainerKind.KOHYA, base_model="v1-5.safetensors")
        plan = KohyaAdapter(
            config.model_copy(update={"workers": 2}), ProgressTracker(Path(config.outputDir))
        ).prepare()
        assert plan.argv[plan.argv.index("--machine_rank") + 1] == index
        plans.append((plan.argv, plan.cwd))
    probes = run_launchers(plans, "accelerate")
    assert probes == two_ranks("29573")


def test_a_multi_pod_kohya_run_without_its_rank_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.setenv("MASTER_ADDR", "run1-0.run1")
    config = trainer_config(tmp_path, TrainerKind.KOHYA).model_copy(update={"workers": 2})
    with pytest.raises(AdapterConfigError, match="JOB_COMPLETION_INDEX"):
        KohyaAdapter(config, ProgressTracker(Path(config.outputDir))).prepare()
