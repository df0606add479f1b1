"""The generator program as real subprocesses: one-shot against the intake, and server mode over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_api.workers.env import CONFIG_ENV, REPORT_URL_ENV, TERMINATION_MESSAGE_ENV, TOKEN_FILE_ENV
from kubepilot_api.workers.progress import GenerationReport, PendingAction, ServiceReport, WorkState
from kubepilot_workers.generator.outputs import read_parameters
from kubepilot_workers.tinymodels import save_tiny_sd
from tests.workers.intake import ContractIntake

PROCESS_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sd(tmp_path_factory.getbasetemp() / "tiny-models" / "tiny-sd")


def _wait_for(predicate: Callable[[], bool], timeout: float = PROCESS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _pod_env(tmp_path: Path, config: dict[str, Any], url: str, token: str) -> dict[str, str]:
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    token_path = tmp_path / "token"
    token_path.write_text(token + "\n")
    return {
        **os.environ,
        CONFIG_ENV: str(config_path),
        REPORT_URL_ENV: url,
        TOKEN_FILE_ENV: str(token_path),
        TERMINATION_MESSAGE_ENV: str(tmp_path / "termination-log"),
        "OMP_NUM_THREADS": "1",  # tiny models: threads only add overhead on a shared test machine
    }


def _generator(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubepilot_workers.generator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def _oneshot_config(tiny_sd: Path, tmp_path: Path, **request: Any) -> dict[str, Any]:
    return {
        "workload": {"kind": "GenerationJob", "namespace": "ns", "name": "gj", "uid": "uid-1"},
        "mode": "oneshot",
        "modelPath": str(tiny_sd),
        "outputsDir": str(tmp_path / "outputs"),
        "device": "cpu",
        "request": {"type": "txt2img", "prompt": "a lighthouse", "width": 32, "height": 32, **request},
    }


def test_oneshot_reports_each_step_and_ends_with_the_final_report(
    tiny_sd: Path, intake: ContractIntake, tmp_path: Path
) -> None:
    url = intake.register("ns", "generationjobs", "gj", "tok-1")
    config = _oneshot_config(tiny_sd, tmp_path, steps=3, count=2, seed=11)
    result = _generator(_pod_env(tmp_path, config, url, "tok-1"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tok-1" not in result.stderr, "the token must never be logged"

    reports = intake.workload("ns", "generationjobs", "gj").reports
    final = reports[-1]
    assert isinstance(final, GenerationReport)
    assert final.final and final.state is WorkState.SUCCEEDED
    assert [(o.width, o.height, o.seed) for o in final.outputs] == [(32, 32, 11), (32, 32, 12)]
    assert final.progress is not None and final.progress.imagesDone == 2 and final.progress.percent == 100
    assert final.timings is not None and final.timings.loadSeconds > 0
    running = [r for r in reports[:-1] if isinstance(r, GenerationReport) and r.state is WorkState.RUNNING]
    assert running and all(r.progress is not None for r in running)
    for output in final.outputs:
        assert Path(output.path).parent == tmp_path / "outputs"
        assert read_parameters(output.path)[1]["seed"] == output.seed

    termination = json.loads((tmp_path / "termination-log").read_text())
    assert termination["state"] == "Succeeded" and termination["final"] is True


def test_oneshot_cancel_action_interrupts_the_job(
    tiny_sd: Path, intake: ContractIntake, tmp_path: Path
) -> None:
    url = intake.register("ns", "generationjobs", "gj", "tok-2")
    intake.request_action("ns", "generationjobs", "gj", PendingAction(name="cancel", nonce="c-1"))
    config = _oneshot_config(tiny_sd, tmp_path, steps=200, count=10)
    result = _generator(_pod_env(tmp_path, config, url, "tok-2"))

    assert result.returncode == 3, result.stderr[-2000:]
    workload = intake.workload("ns", "generationjobs", "gj")
    assert workload.reports[-1].state is WorkState.CANCELLED
    assert workload.pending == [], "the cancel action must be acknowledged"
    assert not list((tmp_path / "outputs").glob("*.png"))


def test_an_invalid_config_fails_with_a_clear_final_report(intake: ContractIntake, tmp_path: Path) -> None:
    url = intake.register("ns", "generationjobs", "gj", "tok-3")
    result = _generator(_pod_env(tmp_path, {"mode": "oneshot"}, url, "tok-3"))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    final = intake.workload("ns", "generationjobs", "gj").reports[-1]
    assert (
        final.state is WorkState.FAILED and final.error is not None and final.error.code == "INVALID_CONFIG"
    )
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert termination["error"]["code"] == "INVALID_CONFIG"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_config(tiny_sd: Path, tmp_path: Path, port: int) -> dict[str, Any]:
    return {
        "workload": {"kind": "ServiceInstance", "namespace": "ns", "name": "svc"},
        "mode": "server",
        "modelPath": str(tiny_sd),
        "outputsDir": str(tmp_path / "outputs"),
        "host": "127.0.0.1",
        "port": port,
        "device": "cpu",
    }


def _start_server(env: dict[str, str], client: httpx.Client) -> subprocess.Popen[bytes]:
    """The server as in its pod; returns once its health says ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kubepilot_workers.generator", "--config", env[CONFIG_ENV]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def healthy() -> bool:
        assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
        try:
            return bool(client.get("/v1/health").json()["ready"])
        except httpx.HTTPError:
            return False

    try:
        _wait_for(healthy)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


@pytest.fixture
def server(tiny_sd: Path, tmp_path: Path) -> Iterator[httpx.Client]:
    port = _free_port()
    env = _pod_env(tmp_path, _server_config(tiny_sd, tmp_path, port), "", "unused")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    process = _start_server(env, client)
    try:
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def test_server_mode_runs_queued_jobs_reports_to_the_intake_and_interrupts_on_cancel(
    server: httpx.Client, tiny_sd: Path, intake: ContractIntake, tmp_path: Path
) -> None:
    health = server.get("/v1/health").json()
    assert health["backend"] == "kubepilot-generator" and health["model"] == str(tiny_sd)
    url = intake.register("ns", "generationjobs", "long", "tok-long")
    quick_url = intake.register("ns", "generationjobs", "quick", "tok-quick")

    def submit(job_id: str, steps: int, report: dict[str, str]) -> httpx.Response:
        request = {
            "type": "txt2img",
            "prompt": "a boat",
            "width": 32,
            "height": 32,
            "steps": steps,
            "seed": 3,
        }
        body = {"jobId": job_id, "request": request, "outputDir": str(tmp_path / job_id), "report": report}
        return server.post("/v1/jobs", json=body)

    assert submit("long", 500, {"url": url, "token": "tok-long"}).status_code == 202
    assert submit("quick", 2, {"url": quick_url, "token": "tok-quick"}).status_code == 202
    _wait_for(lambda: server.get("/v1/jobs/long").json()["state"] == "Running")
    assert server.get("/v1/jobs/quick").json()["queuePosition"] == 1
    long_reports = intake.workload("ns", "generationjobs", "long").reports

    def long_job_stepped() -> bool:
        return any(
            isinstance(r, GenerationReport) and r.progress and r.progress.step >= 1 for r in long_reports
        )

    _wait_for(long_job_stepped)

    assert server.post("/v1/jobs/long/cancel").status_code == 200
    _wait_for(lambda: server.get("/v1/jobs/quick").json()["state"] == "Succeeded")
    assert server.get("/v1/jobs/long").json()["state"] == "Cancelled"

    quick_reports = intake.workload("ns", "generationjobs", "quick").reports
    _wait_for(lambda: bool(quick_reports) and quick_reports[-1].final)
    final = quick_reports[-1]
    assert isinstance(final, GenerationReport) and final.state is WorkState.SUCCEEDED
    assert final.outputs[0].path == str(tmp_path / "quick" / "image-000.png")
    assert Path(final.outputs[0].path).is_file()
    _wait_for(lambda: long_reports[-1].final)
    assert long_reports[-1].state is WorkState.CANCELLED


def test_server_mode_stopped_by_sigterm_sends_a_final_report_and_writes_the_termination_message(
    tiny_sd: Path, intake: ContractIntake, tmp_path: Path
) -> None:
    url = intake.register("ns", "serviceinstances", "svc", "tok-svc")
    port = _free_port()
    env = _pod_env(tmp_path, _server_config(tiny_sd, tmp_path, port), url, "tok-svc")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        process = _start_server(env, client)
    try:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 143, stderr.decode()[-2000:]
    termination = json.loads((tmp_path / "termination-log").read_text())
    assert termination["kind"] == "ServiceInstance"
    assert termination["state"] == "Stopped" and termination["final"] is True
    assert "SIGTERM" in termination["message"]
    final = intake.workload("ns", "serviceinstances", "svc").reports[-1]
    assert isinstance(final, ServiceReport) and final.final and final.state is WorkState.STOPPED
    assert b"tok-svc" not in stderr, "the token must never be logged"
