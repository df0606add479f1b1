"""Actions from the intake reach the running built-in trainer between steps and are acknowledged."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from kubepilot_api.workers.progress import PendingAction, ReportBase, TrainingReport, WorkState
from kubepilot_workers.generator.outputs import read_parameters
from kubepilot_workers.reporting import Reporter
from kubepilot_workers.trainer.checkpoints import read_state
from kubepilot_workers.trainer.distributed import DistributedInfo
from kubepilot_workers.trainer.loop import LoraTrainer
from tests.workers._trainer_tiny import (
    NAMESPACE,
    PLURAL,
    TOKEN,
    make_dataset,
    tiny_model,
    trainer_config,
    wait_for,
)
from tests.workers.intake import ContractIntake

__all__ = ["tiny_model"]


class RecordingReporter(Reporter):
    """The real reporter, also keeping every report the trainer hands it (pushes are coalesced)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.updates: list[ReportBase] = []

    def update(self, report: ReportBase) -> None:
        self.updates.append(report)
        super().update(report)


def test_save_backup_sample_and_stop_are_acted_on_and_acknowledged(
    intake: ContractIntake, tiny_model: Path, tmp_path: Path
) -> None:
    dataset = make_dataset(tmp_path / "ds", {"1_a": [(64, 64), (64, 80)]})
    config = trainer_config(
        tiny_model, dataset, tmp_path / "outputs", name="act", maxSteps=100_000, gradientAccumulationSteps=2
    )
    url = intake.register(NAMESPACE, PLURAL, "act", TOKEN)
    for action in (
        PendingAction(name="save", nonce="s1"),
        PendingAction(name="backup", nonce="b1"),
        PendingAction(
            name="sample", nonce="p1", params={"prompt": "a test", "steps": 2, "width": 32, "height": 32}
        ),
        PendingAction(name="sample", nonce="p2", params={"steps": "many"}),
    ):
        intake.request_action(NAMESPACE, PLURAL, "act", action)
    reporter = RecordingReporter(url, TOKEN, interval=0.05)
    trainer = LoraTrainer(config, reporter, DistributedInfo(rank=0, local_rank=0, world_size=1))
    result: list[TrainingReport] = []
    thread = threading.Thread(target=lambda: result.append(trainer.run()), daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: not intake.workload(NAMESPACE, PLURAL, "act").pending, 60, "first actions acknowledged"
        )
        intake.request_action(NAMESPACE, PLURAL, "act", PendingAction(name="stop", nonce="x1"))
        thread.join(timeout=60)
    finally:
        trainer.request_stop()
        thread.join(timeout=60)
    final = reporter.finish(result[0])
    wait_for(lambda: not intake.workload(NAMESPACE, PLURAL, "act").pending, 5, "stop acknowledged")

    acks = {
        ack.nonce: ack for report in intake.workload(NAMESPACE, PLURAL, "act").reports for ack in report.acks
    }
    assert acks["s1"].ok and "checkpoint at step" in acks["s1"].message
    assert acks["b1"].ok and "act/backups/step-" in acks["b1"].message
    assert acks["p1"].ok and "1 sample(s)" in acks["p1"].message
    assert not acks["p2"].ok and "steps must be an integer" in acks["p2"].message
    assert acks["x1"].ok and "stopping" in acks["x1"].message

    output = Path(config.outputDir)
    [sample] = sorted((output / "samples").glob("*.png"))
    assert sample.name.endswith("a-test.png")
    # Written by the generator's writer: the PNG says how it was made, a JSON file sits beside it.
    text, document = read_parameters(sample)
    assert text.startswith("a test") and document["type"] == "sample" and document["jobId"].startswith("act-")
    assert json.loads(sample.with_suffix(".json").read_text()) == document
    backups = list((output / "backups").iterdir())
    assert len(backups) == 1 and read_state(backups[0])[1].engine == "torch"

    assert final.state is WorkState.STOPPED and final.progress is not None
    stopped_at = final.progress.step
    assert 0 < stopped_at < 100_000 and final.checkpoints[-1].step == stopped_at
    folder, state = read_state(output / "checkpoints" / f"step-{stopped_at:08d}")
    assert state.step == stopped_at and (folder / f"act-step{stopped_at:08d}.safetensors").is_file()
    assert final.outputs[0].step == stopped_at and final.samples is not None and final.samples.count == 1
    # The custom sample's pass was reported image by image, then cleared.
    passes = [
        (r.sampling.kind, r.sampling.current, r.sampling.total)
        for r in reporter.updates
        if isinstance(r, TrainingReport) and r.sampling is not None
    ]
    assert passes == [("custom", 0, 1), ("custom", 1, 1)]
    assert final.sampling is None
