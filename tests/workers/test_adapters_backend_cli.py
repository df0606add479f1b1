"""The adapter program end to end: a real process serving the executor API in front of ComfyUI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubepilot_api.generationjob import GenerationType
from kubepilot_api.workers.config import AdapterConfig, GenerationRequest, Workload
from kubepilot_api.workers.env import CONFIG_ENV, REPORT_URL_ENV, TERMINATION_MESSAGE_ENV, TOKEN_FILE_ENV
from kubepilot_api.workers.executor import HEALTH_PATH, JOBS_PATH, ExecutorJob, ExecutorSubmit, ReportTarget
from kubepilot_api.workers.progress import WorkState
from kubepilot_workers.adapters.cli import main
from tests.workers.fakebackends import FakeComfyUI, wait_for
from tests.workers.intake import ContractIntake


@pytest.fixture
def comfy(tmp_path: Path) -> Iterator[FakeComfyUI]:
    server = FakeComfyUI(tmp_path / "comfy")
    server.start()
    yield server
    server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).json().get("ready") is True
    except (httpx.HTTPError, ValueError):
        return False


def test_the_adapter_process_runs_jobs_on_comfyui_and_reports_to_their_intake(
    comfy: FakeComfyUI, intake: ContractIntake, tmp_path: Path
) -> None:
    port = _free_port()
    config = AdapterConfig(
        workload=Workload(kind="ServiceInstance", namespace="ns", name="comfy"),
        backend="comfyui",
        backendUrl=comfy.url,
        host="127.0.0.1",
        port=port,
        outputsDir=str(tmp_path / "outputs"),
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json())
    termination = tmp_path / "termination-log"
    env = {
        **os.environ,
        CONFIG_ENV: str(config_file),
        TERMINATION_MESSAGE_ENV: str(termination),
        TOKEN_FILE_ENV: str(tmp_path / "no-token"),
    }
    env.pop(REPORT_URL_ENV, None)
    process = subprocess.Popen([sys.executable, "-m", "kubepilot_workers.adapters"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base + HEALTH_PATH), timeout=30)
        report_url = intake.register("ns", "generationjobs", "gj1", "job-token")
        submit = ExecutorSubmit(
            jobId="uid-1",
            request=GenerationRequest(
                type=GenerationType.TXT2IMG, modelPath="/models/checkpoints/sd15/tiny.safetensors", steps=3
            ),
            outputDir=str(tmp_path / "outputs" / "gj1"),
            report=ReportTarget(url=report_url, token="job-token"),
        )
        answer = httpx.post(base + JOBS_PATH, json=submit.to_dict(), timeout=5.0)
        assert answer.status_code == 202

        def finished() -> bool:
            job = ExecutorJob.model_validate_json(httpx.get(f"{base}{JOBS_PATH}/uid-1", timeout=5.0).content)
            return job.state.value in {"Succeeded", "Failed", "Cancelled"}

        wait_for(finished, timeout=30)
        job = ExecutorJob.model_validate_json(httpx.get(f"{base}{JOBS_PATH}/uid-1", timeout=5.0).content)
        assert job.state.value == "Succeeded" and len(job.outputs) == 1
        assert Path(job.outputs[0].path).is_file()
        reports = intake.workload("ns", "generationjobs", "gj1").reports
        wait_for(lambda: bool(reports) and reports[-1].final)
        assert reports[-1].state is WorkState.SUCCEEDED
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=20)
    assert exit_code == 0
    assert json.loads(termination.read_text())["state"] == "Stopped"


def test_a_bad_config_fails_with_a_clear_termination_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    termination = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_MESSAGE_ENV, str(termination))
    monkeypatch.setenv(TOKEN_FILE_ENV, str(tmp_path / "no-token"))
    monkeypatch.delenv(REPORT_URL_ENV, raising=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"backend": "invokeai", "backendUrl": "http://127.0.0.1:1"}))

    assert main(["--config", str(config)]) == 2
    written = json.loads(termination.read_text())
    assert written["state"] == "Failed" and written["error"]["code"] == "CONFIG_INVALID"
    assert "backend" in written["error"]["message"] and "workload" in written["error"]["message"]

    assert main(["--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the config file" in json.loads(termination.read_text())["message"]
