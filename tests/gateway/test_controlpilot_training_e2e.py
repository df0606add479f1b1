"""TrainPilot end to end: POST /api/trainpilot/start → TrainingRun → the real operator → a trainer pod
→ progress in the status → /api/trainpilot/logs → stop → Stopped.

Everything is real except kohya sd-scripts itself, which needs a GPU and is not on PyPI: the
trainer pod runs our real kohya adapter (it writes TrainPilot's profile TOMLs and launches the
tool), and ``KUBEPILOT_TRAINER_COMMAND`` (set through the profile's ``runEnv`` setting, as an
admin sets ``KOHYA_DIR``) puts the workers' recorded-output stand-in (``tests/workers/fixtures/
fake_trainer.py``, replaying sd-scripts' own lines and honouring its SIGINT stop) where
``accelerate launch`` would run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from tests.gateway.conftest import stack_settings
from tests.operator.harness import OperatorProcess, Storage

pytestmark = pytest.mark.slow

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")
FIRST, SECOND = "controlpilot-trainpilot-1", "controlpilot-trainpilot-2"
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "workers" / "fixtures"


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> GatewayContext:
    fixture = FIXTURES / "kohya" / "sdxl_lora_long_run.log"
    stand_in = f"{sys.executable} {FIXTURES / 'fake_trainer.py'} --tool kohya --fixture {fixture} --"
    training = {
        "gpuCount": 0,
        "runEnv": {
            "KUBEPILOT_TRAINER_COMMAND": stand_in,
            "FAKE_HOLD_SECONDS": "120",
            "KUBEPILOT_STOP_GRACE_SECONDS": "10",
        },
    }
    settings = stack_settings(namespace, storage, profileSettings={"controlpilot": {"training": training}})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


async def wait_run(
    ctx: GatewayContext, name: str, check: Callable[[JsonObject], bool], what: str, within: float = 90
) -> JsonObject:
    """Until the cached run passes ``check``, woken by the watch's events (not by sleeping)."""
    deadline = time.monotonic() + within
    async with ctx.bus.subscribe(kinds=["TrainingRun"], namespace=ctx.store.namespace) as events:
        while True:
            run = ctx.cache.get(TR, name, ctx.store.namespace)
            if run is not None and check(run):
                return run
            left = deadline - time.monotonic()
            assert left > 0, f"{what} not reached in {within}s; status={(run or {}).get('status')}"
            try:
                await asyncio.wait_for(anext(events), timeout=min(left, 5))
            except TimeoutError:
                continue


def status(run: JsonObject) -> JsonObject:
    return dict(run.get("status") or {})


async def test_trainpilot_start_trains_reports_progress_and_logs_and_stops(
    operator: OperatorProcess, http: httpx.AsyncClient, ctx: GatewayContext, storage: Storage
) -> None:
    dataset = f"1_e2e_{uuid.uuid4().hex[:8]}"
    (storage.datasets / dataset).mkdir()
    (storage.datasets / dataset / "cat.png").write_bytes(b"png")
    (storage.datasets / dataset / "cat.txt").write_text("a cat")
    output = f"e2e-{uuid.uuid4().hex[:8]}"
    # TrainPilot's base model must be on the models volume (the run waits for it); the stand-in
    # trainer does not read it.
    base = storage.models / "checkpoints" / "sd_xl_base_1.0.safetensors"
    base.parent.mkdir(parents=True, exist_ok=True)
    base.touch()

    started = await http.post(
        "/api/trainpilot/start",
        json={"dataset_name": dataset, "output_name": output, "profile": "quick_test"},
    )
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "started" and isinstance(started.json()["pid"], int)

    def training(run: JsonObject) -> bool:
        progress = status(run).get("progress") or {}
        return status(run).get("phase") == "Running" and progress.get("step") == 120

    run = await wait_run(ctx, FIRST, training, "Running at step 120")
    assert status(run)["progress"]["maxSteps"] == 1000
    busy = await http.post("/api/trainpilot/start", json={"dataset_name": dataset})
    assert busy.json() == {"detail": "TrainPilot already running"}

    logs = (await http.get("/api/trainpilot/logs")).json()
    assert logs["running"] is True
    # The tool's output, from _logs/train.log on the outputs volume (the worker itself logs little).
    assert "epoch 1/10" in logs["lines"]
    assert any(line.startswith("$ ") and "sdxl_train_network.py" in line for line in logs["lines"])
    written = (storage.outputs / output / "_config" / "training.toml").read_text()
    assert "network_dim = 32" in written  # TrainPilot's quick_test profile, applied by the worker

    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "stopped"}
    run = await wait_run(ctx, FIRST, lambda r: status(r).get("phase") == "Stopped", "Stopped")
    assert (await http.get("/api/trainpilot/logs")).json()["running"] is False
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "noop"}

    # A finished run does not block the next start: the next one is the current run from now on.
    again = await http.post("/api/trainpilot/start", json={"dataset_name": dataset, "output_name": output})
    assert again.status_code == 200, again.text
    assert again.json()["pid"] != started.json()["pid"]
    await wait_run(ctx, SECOND, lambda r: status(r).get("phase") == "Running", "the second run Running")
    assert (await http.get("/api/trainpilot/logs")).json()["running"] is True
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "stopped"}
    await wait_run(ctx, SECOND, lambda r: status(r).get("phase") == "Stopped", "the second run Stopped")
    first = ctx.cache.get(TR, FIRST, ctx.store.namespace)
    assert first is not None and status(first)["phase"] == "Stopped"  # kept as history
