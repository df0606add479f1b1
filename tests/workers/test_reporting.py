"""The worker-side reporter against a contract-exact intake."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from kubepilot_api.common import now
from kubepilot_api.modelpull import DownloadProgress
from kubepilot_api.workers.progress import DownloadReport, PendingAction, WorkState
from kubepilot_workers.reporting import Reporter
from tests.workers.intake import ContractIntake


def _report(done: int) -> DownloadReport:
    progress = DownloadProgress(bytesDone=done, bytesTotal=100, lastUpdatedTime=now())
    return DownloadReport(sequence=0, time=now(), state=WorkState.RUNNING, progress=progress)


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_updates_are_coalesced_and_the_final_report_is_sent_and_written(
    intake: ContractIntake, tmp_path: Path
) -> None:
    url = intake.register("ns", "modelpulls", "m1", "secret-token")
    termination = tmp_path / "termination-log"
    reporter = Reporter(url, "secret-token", termination_path=termination, interval=0.2)
    for done in range(50):
        reporter.update(_report(done))
    _wait_for(lambda: reporter.sent >= 1)
    final = reporter.finish(_report(100).model_copy(update={"state": WorkState.SUCCEEDED}))

    received = intake.workload("ns", "modelpulls", "m1").reports
    assert len(received) < 50, "updates in a burst must be coalesced"
    assert received[-1].final and received[-1].state is WorkState.SUCCEEDED
    assert [r.sequence for r in received] == sorted(r.sequence for r in received)
    written = json.loads(termination.read_text())
    assert written["final"] is True and written["sequence"] == final.sequence


def test_a_wrong_token_is_refused_and_never_fails_the_work(intake: ContractIntake, tmp_path: Path) -> None:
    url = intake.register("ns", "modelpulls", "m2", "right")
    reporter = Reporter(url, "wrong", termination_path=tmp_path / "t", interval=0.05)
    reporter.update(_report(1))
    _wait_for(lambda: reporter.failed >= 1)
    reporter.finish(_report(2))
    workload = intake.workload("ns", "modelpulls", "m2")
    assert workload.reports == [] and 401 in workload.refused
    assert json.loads((tmp_path / "t").read_text())["final"] is True


def test_pending_actions_are_delivered_once_and_acknowledged(intake: ContractIntake) -> None:
    url = intake.register("ns", "trainingruns", "t1", "tok")
    intake.request_action("ns", "trainingruns", "t1", PendingAction(name="save", nonce="n1"))
    reporter = Reporter(url, "tok", interval=0.05)
    reporter.update(_report(1))
    _wait_for(lambda: reporter.sent >= 1)
    actions = reporter.take_actions()
    assert [(a.name, a.nonce) for a in actions] == [("save", "n1")]
    reporter.ack("save", "n1")
    reporter.update(_report(2))
    _wait_for(lambda: not intake.workload("ns", "trainingruns", "t1").pending)
    assert reporter.take_actions() == []
    reporter.close()


def test_without_an_intake_reports_are_logged_when_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubepilot_workers.reporting")
    reporter = Reporter(None, None, termination_path=tmp_path / "t", interval=0.05, log_without_intake=True)
    reporter.update(_report(42))
    _wait_for(lambda: any("progress:" in r.getMessage() for r in caplog.records))
    reporter.finish(_report(100))
    line = next(r.getMessage() for r in caplog.records if "progress:" in r.getMessage())
    logged = json.loads(line.split("progress: ", 1)[1])
    assert logged["progress"]["bytesDone"] == 42 and logged["state"] == "Running"
    assert json.loads((tmp_path / "t").read_text())["final"] is True


def test_a_silent_reporter_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kubepilot_workers.reporting")
    reporter = Reporter(None, None, interval=0.05)
    reporter.update(_report(1))
    time.sleep(0.2)
    reporter.finish(_report(2))
    assert not [r for r in caplog.records if "progress:" in r.getMessage()]
