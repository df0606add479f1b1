"""The models and the worker contract behave as the operator and the workers rely on."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kubepilot_api import GenerationJob, ModelPull, kind_by_name
from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.workers.progress import (
    TERMINATION_MESSAGE_MAX_BYTES,
    DownloadReport,
    TrainingReport,
    WorkState,
    parse_report,
    report_path,
    termination_message,
)


def test_kinds_are_found_by_every_name_kubectl_accepts() -> None:
    for name in ("ModelPull", "modelpulls", "modelpull", "mp", "MP"):
        assert kind_by_name(name) is ModelPull
    with pytest.raises(KeyError):
        kind_by_name("pods")


def test_a_cr_round_trips_without_nulls_and_with_defaults() -> None:
    job = GenerationJob.model_validate(
        {
            "apiVersion": "kubepilot.io/v1alpha1",
            "kind": "GenerationJob",
            "metadata": {"name": "j"},
            "spec": {"type": "txt2img", "prompt": "cat"},
        }
    )
    body = job.to_dict()
    assert body["spec"]["width"] == 512 and body["spec"]["seed"] == -1
    assert "status" not in body and "inputs" not in body["spec"]
    assert GenerationJob.model_validate(body) == job


def test_unknown_fields_are_refused_by_the_models_too() -> None:
    with pytest.raises(ValidationError, match="extra"):
        GenerationJob.model_validate({"kind": "GenerationJob", "spec": {"type": "txt2img", "colour": "red"}})


def test_reports_are_told_apart_by_kind() -> None:
    report = TrainingReport(sequence=3, time=now(), state=WorkState.RUNNING)
    parsed = parse_report(report.model_dump_json())
    assert isinstance(parsed, TrainingReport) and parsed.sequence == 3
    with pytest.raises(ValidationError):
        parse_report(
            json.dumps({"kind": "Pod", "sequence": 1, "time": "2026-01-01T00:00:00Z", "state": "Running"})
        )


def test_the_termination_message_always_fits_and_keeps_state_and_error_code() -> None:
    huge = DownloadReport(
        sequence=9,
        time=now(),
        state=WorkState.FAILED,
        final=True,
        message="m" * 4_000,
        error=ErrorInfo(code="INSUFFICIENT_STORAGE", message="e" * 4_000),
    )
    text = termination_message(huge)
    assert len(text.encode()) <= TERMINATION_MESSAGE_MAX_BYTES
    data = json.loads(text)
    assert (
        data["state"] == "Failed"
        and data["error"]["code"] == "INSUFFICIENT_STORAGE"
        and data["final"] is True
    )


def test_report_paths_name_the_workload() -> None:
    assert report_path("team-a", "modelpulls", "sdxl") == "/v1/reports/team-a/modelpulls/sdxl"
