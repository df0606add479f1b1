"""The in-pod action agent: pending actions from the intake become trainer calls and acks."""

from __future__ import annotations

from typing import Any

from kubepilot_api.common import now
from kubepilot_api.workers.progress import PendingAction, TrainingReport, WorkState
from kubepilot_workers.reporting import Reporter
from kubepilot_workers.trainer.agent import ActionAgent
from kubepilot_workers.trainer.control import ActionFailed
from tests.workers._trainer_tiny import NAMESPACE, PLURAL, TOKEN, wait_for
from tests.workers.intake import ContractIntake


class RecordingTrainer:
    """A TrainerControl that records calls; ``sample`` refuses a prompt of 'refuse', 'crash' raises."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def save(self) -> str:
        self.calls.append(("save", {}))
        return "saved at step 3"

    def backup(self) -> str:
        self.calls.append(("backup", {}))
        return "backup at step 3"

    def sample(self, params: dict[str, Any]) -> str:
        self.calls.append(("sample", params))
        if params.get("prompt") == "refuse":
            raise ActionFailed("prompt refused")
        if params.get("prompt") == "crash":
            raise RuntimeError("renderer exploded")
        return "1 sample"

    def stop(self) -> str:
        self.calls.append(("stop", {}))
        return "stopping"


def _report() -> TrainingReport:
    return TrainingReport(sequence=0, time=now(), state=WorkState.RUNNING)


def _acks(intake: ContractIntake, name: str) -> dict[str, tuple[str, bool, str]]:
    acks = [ack for report in intake.workload(NAMESPACE, PLURAL, name).reports for ack in report.acks]
    return {ack.nonce: (ack.name, ack.ok, ack.message) for ack in acks}


def test_each_action_is_carried_out_once_and_acknowledged(intake: ContractIntake) -> None:
    url = intake.register(NAMESPACE, PLURAL, "a1", TOKEN)
    for name, nonce, params in [
        ("save", "n1", {}),
        ("backup", "n2", {}),
        ("sample", "n3", {"prompt": "a red cube", "seed": 7}),
        ("stop", "n4", {}),
    ]:
        intake.request_action(NAMESPACE, PLURAL, "a1", PendingAction(name=name, nonce=nonce, params=params))
    reporter = Reporter(url, TOKEN, interval=0.05)
    trainer = RecordingTrainer()
    agent = ActionAgent(reporter, trainer)
    reporter.update(_report())
    wait_for(lambda: reporter.sent >= 1, 10, "first push")
    assert agent.poll() == 4
    reporter.update(_report())
    wait_for(lambda: not intake.workload(NAMESPACE, PLURAL, "a1").pending, 10, "acks delivered")
    reporter.update(_report())
    wait_for(lambda: reporter.sent >= 3, 10, "a later push")
    assert agent.poll() == 0, "an acknowledged action is never carried out twice"
    reporter.close()

    assert [call[0] for call in trainer.calls] == ["save", "backup", "sample", "stop"]
    assert trainer.calls[2][1] == {"prompt": "a red cube", "seed": 7}
    acks = _acks(intake, "a1")
    assert acks["n1"] == ("save", True, "saved at step 3")
    assert acks["n3"] == ("sample", True, "1 sample")
    assert acks["n4"] == ("stop", True, "stopping")


def test_unknown_refused_and_crashing_actions_are_acknowledged_as_failed(intake: ContractIntake) -> None:
    url = intake.register(NAMESPACE, PLURAL, "a2", TOKEN)
    for name, nonce, params in [
        ("pause", "u1", {}),
        ("sample", "u2", {"prompt": "refuse"}),
        ("sample", "u3", {"prompt": "crash"}),
    ]:
        intake.request_action(NAMESPACE, PLURAL, "a2", PendingAction(name=name, nonce=nonce, params=params))
    reporter = Reporter(url, TOKEN, interval=0.05)
    agent = ActionAgent(reporter, RecordingTrainer())
    agent.start(interval=0.02)
    reporter.update(_report())
    wait_for(lambda: len(agent.handled) == 3, 10, "actions handled on the agent's thread")
    reporter.update(_report())
    wait_for(lambda: not intake.workload(NAMESPACE, PLURAL, "a2").pending, 10, "acks delivered")
    agent.stop_polling()
    reporter.close()

    acks = _acks(intake, "a2")
    assert acks["u1"][1] is False and "unknown action 'pause'" in acks["u1"][2]
    assert acks["u2"] == ("sample", False, "prompt refused")
    assert acks["u3"][1] is False and "renderer exploded" in acks["u3"][2]
