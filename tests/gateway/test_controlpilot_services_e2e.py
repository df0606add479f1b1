"""ControlPilot's service endpoints end to end: POST /api/services/copilot/start → ServiceInstance →
the real operator → Deployment → a pod running the real copilot sidecar → RUNNING in /api/services
→ /api/copilot/* answered by that sidecar → the pod's log → stop → STOPPED.

Everything is real; only the Copilot CLI itself is absent (it needs GitHub credentials and the
network), so the sidecar honestly answers chat with its own 503, which the gateway passes on.
The operator's copilot catalog entry gets a workspace folder under the test's temporary folder,
so the sidecar's links do not land in the host's /workspace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.controlpilot import create_app
from tests.gateway.conftest import stack_settings
from tests.operator.harness import OperatorProcess, Storage

JsonObject = dict[str, Any]


@pytest.fixture(scope="module")
def copilot_operator(
    devcluster: DevCluster, crds: None, storage: Storage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    workspace = tmp_path_factory.mktemp("workspace")
    volumes = [
        arg
        for variable in ("KUBEPILOT_MODELS_DIR", "KUBEPILOT_DATASETS_DIR", "KUBEPILOT_OUTPUTS_DIR")
        for arg in ("--volume", f"$({variable})")
    ]
    copilot = {
        "image": "kubepilot/copilot:0.1.0",
        "command": ["python", "-m", "kubepilot_workers.copilot", "--host", "$(POD_IP)", "--port", "7879"],
        "args": ["--workspace", str(workspace), *volumes],
        "ports": [{"name": "http", "port": 7879}],
        "readinessPath": "/health",
    }
    process = OperatorProcess(
        devcluster, storage, tmp_path_factory.mktemp("operator"), extra={"services": {"copilot": copilot}}
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def http(
    copilot_operator: OperatorProcess,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = stack_settings(namespace, storage)
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp", timeout=30) as session:
        yield session


async def service(http: httpx.AsyncClient, name: str) -> JsonObject:
    response = await http.get("/api/services")
    assert response.status_code == 200
    return next(item for item in response.json() if item["name"] == name)


async def until_state(http: httpx.AsyncClient, name: str, state: str, within: float) -> list[str]:
    """Poll /api/services as ControlPilot's UI does; the states seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        current = (await service(http, name))["state"]
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == state:
            return seen
        await asyncio.sleep(0.3)
    log = (await http.get(f"/api/services/{name}/log", params={"lines": 40})).json()
    raise AssertionError(f"{name} never reached {state}; seen {seen}; log: {log}")


async def test_a_service_started_through_controlpilot_runs_answers_and_stops(http: httpx.AsyncClient) -> None:
    assert (await service(http, "copilot"))["state"] == "STOPPED"
    started = await http.post("/api/services/copilot/start")
    assert started.status_code == 200 and started.json() == {"status": "ok"}
    seen = await until_state(http, "copilot", "RUNNING", within=90)
    assert seen[-1] == "RUNNING" and (await service(http, "copilot"))["running"] is True

    status = await http.get("/api/copilot/status")
    assert status.status_code == 200
    body = status.json()
    assert body["sidecar_reachable"] is True, body
    assert body["copilot_in_path"] is False and body["port"] == 7879, "the real sidecar's own answer"
    chat = await http.post("/api/copilot/chat", json={"prompt": "hello"})
    assert chat.status_code == 503 and chat.json() == {"detail": "copilot CLI not found in PATH"}

    log = await http.get("/api/services/copilot/log", params={"lines": 50})
    assert log.status_code == 200 and log.json()["log"].strip(), "the sidecar pod's own log lines"

    stopped = await http.post("/api/services/copilot/stop")
    assert stopped.status_code == 200
    await until_state(http, "copilot", "STOPPED", within=60)
    assert (await http.get("/api/copilot/status")).json()["sidecar_reachable"] is False
