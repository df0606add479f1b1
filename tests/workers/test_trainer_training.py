"""The built-in LoRA trainer in-process: training, checkpoints, LoRA files that load, resuming."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kubepilot_api.workers.config import LoraFile, TrainerConfig
from kubepilot_api.workers.progress import ReportBase, TrainingReport, WorkState
from kubepilot_workers.reporting import Reporter
from kubepilot_workers.trainer.checkpoints import ResumeError, read_state
from kubepilot_workers.trainer.completion import finished_report
from kubepilot_workers.trainer.distributed import DistributedInfo
from kubepilot_workers.trainer.engine import ENGINE_STATE_FILE
from kubepilot_workers.trainer.loop import LoraTrainer
from kubepilot_workers.trainer.model import file_sha256
from tests.workers._trainer_tiny import NAMESPACE, PLURAL, TOKEN, make_dataset, tiny_model, trainer_config
from tests.workers.intake import ContractIntake

__all__ = ["tiny_model"]

ONE_PROCESS = DistributedInfo(rank=0, local_rank=0, world_size=1)


@dataclass
class TrainedRun:
    config: TrainerConfig
    final: TrainingReport
    received: list[ReportBase]


@pytest.fixture(scope="module")
def trained(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedRun]:
    """Four steps with a checkpoint every two, reported to a contract intake."""
    root = tmp_path_factory.mktemp("trained")
    dataset = make_dataset(root / "ds", {"2_shapes": [(64, 64), (96, 64), (64, 96)]})
    config = trainer_config(
        tiny_model, dataset, root / "outputs", maxSteps=4, saveEverySteps=2, learningRate=5e-3,
        lrScheduler="linear", warmupSteps=1,
    )  # fmt: skip
    with ContractIntake() as intake:
        url = intake.register(NAMESPACE, PLURAL, "tr1", TOKEN)
        reporter = Reporter(url, TOKEN, interval=0.05)
        final = reporter.finish(LoraTrainer(config, reporter, ONE_PROCESS).run())
        yield TrainedRun(config, final, list(intake.workload(NAMESPACE, PLURAL, "tr1").reports))


def test_training_reports_steps_a_finite_loss_and_the_final_output_with_lineage(trained: TrainedRun) -> None:
    final = trained.final
    assert final.state is WorkState.SUCCEEDED and final.final
    assert final.progress is not None and final.progress.step == 4 and final.progress.percent == 100
    assert final.progress.loss is not None and math.isfinite(final.progress.loss)
    running_steps = [
        r.progress.step for r in trained.received if isinstance(r, TrainingReport) and r.progress
    ]
    assert running_steps == sorted(running_steps) and running_steps[-1] == 4
    assert trained.received[-1].final and trained.received[-1].state is WorkState.SUCCEEDED

    output_dir = Path(trained.config.outputDir)
    [output] = final.outputs
    assert output.path == "tr1/tr1.safetensors" and output.step == 4
    assert output.sha256 == file_sha256(output_dir / "tr1.safetensors")
    assert (output_dir / "tr1.safetensors").stat().st_mode & 0o777 == 0o644, "read by other pods"
    assert (output.baseModel, output.dataset) == (trained.config.baseModelPath, trained.config.datasetDir)


def test_a_checkpoint_is_written_every_save_every_steps(trained: TrainedRun) -> None:
    assert [(c.step, c.path) for c in trained.final.checkpoints] == [
        (2, "tr1/checkpoints/step-00000002/tr1-step00000002.safetensors")
    ]
    folder, state = read_state(Path(trained.config.outputDir) / "checkpoints" / "step-00000002")
    assert state.step == 2 and state.engine == "torch"
    assert (folder / "tr1-step00000002.safetensors").is_file() and (folder / ENGINE_STATE_FILE).is_file()


def _render(pipeline: Any) -> np.ndarray[Any, Any]:
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(1234)
    result = pipeline("2_shapes picture 0", num_inference_steps=2, width=32, height=32, generator=generator,
                      output_type="np")  # fmt: skip
    images: np.ndarray[Any, Any] = result.images
    return images


def test_the_saved_lora_loads_into_diffusers_and_changes_its_output(
    trained: TrainedRun, tiny_model: Path
) -> None:
    from diffusers import StableDiffusionPipeline

    lora = Path(trained.config.outputDir) / "tr1.safetensors"
    pipeline = StableDiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
        str(tiny_model), safety_checker=None, requires_safety_checker=False
    )
    plain = _render(pipeline)
    pipeline.load_lora_weights(str(lora.parent), weight_name=lora.name)
    with_lora = _render(pipeline)
    assert np.isfinite(with_lora).all()
    assert float(np.abs(with_lora - plain).max()) > 1e-4, "the trained LoRA must change the image"


def test_the_generator_applies_the_trained_lora(trained: TrainedRun, tiny_model: Path) -> None:
    from kubepilot_workers.generator.pipelines import applied_loras, load_base_pipeline

    pipeline = load_base_pipeline(str(tiny_model), torch.device("cpu"), torch.float32)
    plain = _render(pipeline)
    checkpoint = trained.final.checkpoints[0].path.removeprefix("tr1/")
    for lora in (
        Path(trained.config.outputDir) / "tr1.safetensors",
        Path(trained.config.outputDir) / checkpoint,
    ):
        with applied_loras(pipeline, [LoraFile(path=str(lora))]):
            changed = _render(pipeline)
        assert float(np.abs(changed - plain).max()) > 1e-4, f"{lora.name} must change the generator's image"
    assert np.allclose(_render(pipeline), plain), "the generator unloads the LoRA after the job"


def test_resume_continues_from_the_saved_step_with_its_weights_and_schedule(
    trained: TrainedRun, tmp_path: Path
) -> None:
    checkpoint = Path(trained.config.outputDir) / "checkpoints" / "step-00000002"
    config = trained.config.model_copy(
        update={"resumeFrom": str(checkpoint), "outputDir": str(tmp_path / "tr1")}
    )
    reporter = Reporter(None, None)
    trainer = LoraTrainer(config, reporter, ONE_PROCESS)
    assert trainer.step == 2
    saved = torch.load(checkpoint / ENGINE_STATE_FILE, weights_only=False)
    resumed = trainer.engine.lora_state()
    assert resumed.keys() == saved["lora"].keys()
    assert all(torch.equal(resumed[key], saved["lora"][key]) for key in resumed)
    assert trainer.engine.scheduler.last_epoch == 2  # type: ignore[attr-defined]
    final = trainer.run()
    assert final.state is WorkState.SUCCEEDED and final.progress is not None and final.progress.step == 4
    assert final.outputs[0].step == 4 and (tmp_path / "tr1" / "tr1.safetensors").is_file()


def test_resume_from_something_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="not a complete checkpoint"):
        read_state(tmp_path)
    (tmp_path / "trainer_state.json").write_text("{not json")
    with pytest.raises(ResumeError, match="unreadable"):
        read_state(tmp_path / "trainer_state.json")


def test_a_rerun_in_the_same_output_folder_resumes_from_its_newest_checkpoint(
    trained: TrainedRun, tmp_path: Path
) -> None:
    # As a pod restarted after a kill: same config, no resumeFrom, the earlier attempt's folder.
    output = tmp_path / "tr1"
    earlier = Path(trained.config.outputDir) / "checkpoints"
    shutil.copytree(earlier / "step-00000002", output / "checkpoints" / "step-00000002")
    # A folder cut short (no state file) and a newer one of another base model are passed over.
    (output / "checkpoints" / "step-00000006").mkdir()
    other = output / "checkpoints" / "step-00000008"
    shutil.copytree(earlier / "step-00000002", other)
    state = json.loads((other / "trainer_state.json").read_text())
    (other / "trainer_state.json").write_text(json.dumps(state | {"step": 8, "base_model": "/elsewhere"}))
    config = trained.config.model_copy(update={"outputDir": str(output)})

    trainer = LoraTrainer(config, Reporter(None, None), ONE_PROCESS)

    assert trainer.step == 2
    final = trainer.run()
    assert final.state is WorkState.SUCCEEDED and final.progress is not None and final.progress.step == 4


def test_a_finished_run_is_recognised_only_while_its_outputs_and_lineage_are_unchanged(
    trained: TrainedRun, tmp_path: Path
) -> None:
    again = finished_report(trained.config)
    assert again is not None and again.state is WorkState.SUCCEEDED
    assert again.outputs == trained.final.outputs and again.checkpoints == trained.final.checkpoints

    longer = trained.config.hyperparameters.model_copy(update={"maxSteps": 8})
    assert finished_report(trained.config.model_copy(update={"hyperparameters": longer})) is None, (
        "more steps asked for: train on"
    )
    copy = tmp_path / "tr1"
    shutil.copytree(Path(trained.config.outputDir), copy)
    moved = trained.config.model_copy(update={"outputDir": str(copy)})
    assert finished_report(moved) is not None
    (copy / "tr1.safetensors").write_bytes(b"not the trained LoRA")
    assert finished_report(moved) is None, "a changed output is made again"


def _recording_losses(trainer: LoraTrainer, *, stop_at: int | None = None) -> list[float]:
    """Record each optimizer step's loss; ask the trainer to stop after step ``stop_at``."""
    losses: list[float] = []
    optimizer_step = trainer._optimizer_step

    def recorded() -> torch.Tensor:
        loss = optimizer_step()
        losses.append(float(loss))
        if trainer.step == stop_at:
            trainer.request_stop()  # what SIGTERM or a stop action does
        return loss

    trainer._optimizer_step = recorded  # type: ignore[method-assign]
    return losses


def test_a_run_stopped_and_resumed_trains_exactly_as_an_uninterrupted_one(
    tiny_model: Path, tmp_path: Path
) -> None:
    # Two epochs of three steps (two micro-batches each): the stop at step 2 falls inside an epoch.
    dataset = make_dataset(tmp_path / "ds", {"2_shapes": [(64, 64), (96, 64), (64, 96)]})
    settings: dict[str, Any] = {
        "maxSteps": 6, "gradientAccumulationSteps": 2, "learningRate": 5e-3, "lrScheduler": "linear",
        "warmupSteps": 1,
    }  # fmt: skip
    whole_config = trainer_config(tiny_model, dataset, tmp_path / "whole", **settings)
    whole = LoraTrainer(whole_config, Reporter(None, None), ONE_PROCESS)
    whole_losses = _recording_losses(whole)
    assert whole.run().state is WorkState.SUCCEEDED

    parts_config = trainer_config(tiny_model, dataset, tmp_path / "parts", **settings)
    first = LoraTrainer(parts_config, Reporter(None, None), ONE_PROCESS)
    first_losses = _recording_losses(first, stop_at=2)
    stopped = first.run()
    assert stopped.state is WorkState.STOPPED and stopped.progress is not None and stopped.progress.step == 2
    # As the restarted pod: a new process state (the seed set again at start) and the same folder.
    second = LoraTrainer(parts_config, Reporter(None, None), ONE_PROCESS)
    assert second.step == 2
    second_losses = _recording_losses(second)
    assert second.run().state is WorkState.SUCCEEDED

    assert len(whole_losses) == 6 and first_losses + second_losses == whole_losses
    whole_lora = Path(whole_config.outputDir) / "tr1.safetensors"
    parts_lora = Path(parts_config.outputDir) / "tr1.safetensors"
    assert parts_lora.read_bytes() == whole_lora.read_bytes(), "the resumed run's LoRA is the same"
