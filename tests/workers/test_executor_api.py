"""The executor API over real HTTP (uvicorn on a free loopback port) with a gated backend.

The backend here is a real ExecutorBackend (it writes real PNGs); each job waits at a gate the test
opens, so queue order, positions and interruption can be observed deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from kubepilot_api.common import now
from kubepilot_api.generationjob import GenerationProgress, OutputImage
from kubepilot_api.workers.progress import GenerationReport, WorkState
from kubepilot_workers.executor.app import BackgroundServer, create_app
from kubepilot_workers.executor.backend import Cancelled, ExecutionError, JobContext
from tests.workers.intake import ContractIntake

GATE_TIMEOUT = 10.0


class GatedBackend:
    """Runs each job in three steps, then waits for the test to open the job's gate."""

    name = "gated-test"

    def __init__(self) -> None:
        self.ready = True
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def gate(self, job_id: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(job_id, threading.Event())

    def health(self) -> tuple[bool, str]:
        return self.ready, "gated-model"

    def run(self, context: JobContext) -> list[OutputImage]:
        with self._lock:
            self.started.append(context.job_id)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return self._run(context)
        finally:
            with self._lock:
                self.active -= 1

    def _run(self, context: JobContext) -> list[OutputImage]:
        for step in range(1, 4):
            context.report_progress(
                GenerationProgress(
                    step=step, totalSteps=3, imagesTotal=1, percent=step * 33, lastUpdatedTime=now()
                )
            )
        gate = self.gate(context.job_id)
        deadline = time.monotonic() + GATE_TIMEOUT
        while not gate.wait(0.01):
            if context.cancelled.is_set():
                raise Cancelled("interrupted")
            if time.monotonic() > deadline:
                raise ExecutionError("TEST_TIMEOUT", "gate never opened")
        if context.request.prompt == "fail":
            raise ExecutionError("MODEL_NOT_FOUND", "no such model")
        if context.request.prompt == "crash":
            raise RuntimeError("backend bug")
        context.output_dir.mkdir(parents=True, exist_ok=True)
        path = context.output_dir / "image-000.png"
        Image.new("RGB", (16, 8), "red").save(path)
        return [OutputImage(index=0, path=str(path), width=16, height=8, seed=1)]


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend()


@pytest.fixture
def client(backend: GatedBackend) -> Iterator[httpx.Client]:
    with (
        BackgroundServer(create_app(backend)) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        yield http
    for gate in backend.gates.values():
        gate.set()


def _submit(client: httpx.Client, tmp_path: Path, job_id: str, **extra: Any) -> httpx.Response:
    request = {"type": "txt2img", "prompt": extra.pop("prompt", "a cat"), "width": 16, "height": 8}
    body = {"jobId": job_id, "request": request, "outputDir": str(tmp_path / job_id), **extra}
    return client.post("/v1/jobs", json=body)


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_jobs_run_one_at_a_time_by_priority_then_arrival(
    client: httpx.Client, backend: GatedBackend, tmp_path: Path
) -> None:
    assert _submit(client, tmp_path, "first").status_code == 202
    _wait_for(lambda: backend.started == ["first"])
    assert _submit(client, tmp_path, "low", priority=0).status_code == 202
    assert _submit(client, tmp_path, "high", priority=5).status_code == 202

    positions = {job["jobId"]: (job["state"], job["queuePosition"]) for job in client.get("/v1/jobs").json()}
    assert positions == {"first": ("Running", 0), "high": ("Queued", 1), "low": ("Queued", 2)}
    health = client.get("/v1/health").json()
    assert health == {
        "ready": True,
        "backend": "gated-test",
        "model": "gated-model",
        "queued": 2,
        "running": 1,
    }

    for job_id in ("first", "low", "high"):
        backend.gate(job_id).set()
    _wait_for(lambda: all(_job(client, j)["state"] == "Succeeded" for j in ("first", "low", "high")))
    assert backend.started == ["first", "high", "low"]
    assert backend.max_active == 1
    finished = _job(client, "high")
    assert finished["queuePosition"] == -1
    assert finished["progress"]["step"] == 3
    assert finished["outputs"][0]["path"] == str(tmp_path / "high" / "image-000.png")


def test_cancel_of_a_queued_job_is_immediate_and_of_a_running_job_interrupts_it(
    client: httpx.Client, backend: GatedBackend, tmp_path: Path
) -> None:
    _submit(client, tmp_path, "running")
    _wait_for(lambda: backend.started == ["running"])
    _submit(client, tmp_path, "waiting")

    cancelled = client.post("/v1/jobs/waiting/cancel").json()
    assert (cancelled["state"], cancelled["queuePosition"]) == ("Cancelled", -1)

    client.post("/v1/jobs/running/cancel")
    _wait_for(lambda: _job(client, "running")["state"] == "Cancelled")
    assert backend.started == ["running"], "a job cancelled while queued must never start"
    assert client.get("/v1/health").json()["running"] == 0


def test_resubmitting_a_job_id_returns_the_existing_job(
    client: httpx.Client, backend: GatedBackend, tmp_path: Path
) -> None:
    first = _submit(client, tmp_path, "same")
    again = _submit(client, tmp_path, "same", priority=9)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["jobId"] == "same"
    backend.gate("same").set()
    _wait_for(lambda: _job(client, "same")["state"] == "Succeeded")
    assert _submit(client, tmp_path, "same").status_code == 200
    assert backend.started == ["same"]


def test_unknown_jobs_are_404_and_invalid_bodies_422(client: httpx.Client) -> None:
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.post("/v1/jobs/nope/cancel").status_code == 404
    assert client.post("/v1/jobs", json={"jobId": "x"}).status_code == 422
    bad_size = {"jobId": "x", "request": {"type": "txt2img", "width": 1}, "outputDir": "/tmp/x"}
    assert client.post("/v1/jobs", json=bad_size).status_code == 422
    assert (
        client.post("/v1/jobs", content=b"not json", headers={"Content-Type": "application/json"}).status_code
        == 422
    )
    assert client.get("/v1/jobs").json() == []


def test_a_backend_that_is_down_answers_503(
    client: httpx.Client, backend: GatedBackend, tmp_path: Path
) -> None:
    backend.ready = False
    assert _submit(client, tmp_path, "refused").status_code == 503
    assert client.get("/v1/health").json()["ready"] is False
    assert client.get("/v1/jobs/refused").status_code == 404


def test_failures_keep_their_code_and_a_crashing_backend_does_not_stop_the_queue(
    client: httpx.Client, backend: GatedBackend, tmp_path: Path
) -> None:
    for job_id, prompt in (("fails", "fail"), ("crashes", "crash"), ("works", "ok")):
        backend.gate(job_id).set()
        _submit(client, tmp_path, job_id, prompt=prompt)
    _wait_for(lambda: _job(client, "works")["state"] == "Succeeded")
    assert _job(client, "fails")["error"] == {"code": "MODEL_NOT_FOUND", "message": "no such model"}
    crashed = _job(client, "crashes")
    assert crashed["state"] == "Failed" and crashed["error"]["code"] == "INTERNAL_ERROR"


def test_progress_and_final_reports_are_pushed_to_each_jobs_intake(
    client: httpx.Client, backend: GatedBackend, intake: ContractIntake, tmp_path: Path
) -> None:
    url = intake.register("ns", "generationjobs", "gj1", "job-token")
    other_url = intake.register("ns", "generationjobs", "gj2", "other-token")
    _submit(client, tmp_path, "gj1", report={"url": url, "token": "job-token"})
    _submit(client, tmp_path, "gj2", report={"url": other_url, "token": "other-token"})
    reports = intake.workload("ns", "generationjobs", "gj1").reports
    _wait_for(lambda: any(r.state is WorkState.RUNNING for r in reports))
    client.post("/v1/jobs/gj2/cancel")
    backend.gate("gj1").set()
    _wait_for(lambda: bool(reports) and reports[-1].final)

    final = reports[-1]
    assert isinstance(final, GenerationReport)
    assert final.state is WorkState.SUCCEEDED and final.outputs[0].width == 16
    assert final.timings is not None and final.timings.runSeconds >= 0
    running = [r for r in reports if isinstance(r, GenerationReport) and r.state is WorkState.RUNNING]
    assert running[-1].progress is not None and running[-1].progress.totalSteps == 3

    other = intake.workload("ns", "generationjobs", "gj2").reports
    _wait_for(lambda: bool(other) and other[-1].final)
    assert other[-1].state is WorkState.CANCELLED
    assert intake.workload("ns", "generationjobs", "gj1").refused == []
