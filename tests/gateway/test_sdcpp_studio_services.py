"""sd.cpp Studio's model start / stop as ServiceInstances, ``running`` from them, and the WebSocket's
``model_status_changed`` from their phase changes, over the devcluster (real HTTP, a real uvicorn
and WebSocket client, real CRs).

No operator runs here: the tests write a ServiceInstance's phase the way the operator does
(``patch_status``); that is what the watch turns into the bus events the WebSocket translates.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from kubepilot_gateway.profiles.sdcpp_studio.services import service_name
from tests.gateway.conftest import stack_settings
from tests.gateway.test_sdcpp_studio_ws import next_of, serve
from tests.operator.harness import Storage

SI = resource_for("ServiceInstance")
GJ = resource_for("GenerationJob")
JsonObject = dict[str, Any]
MODELS = [
    {"id": "tiny-sd", "name": "Tiny SD", "path": "diffusers/tiny-sd", "port": 1400, "exec_mode": "server"},
    {
        "id": "Flux Q4",
        "path": "sdcpp/flux-q4.gguf",
        "backend": "sdcpp",
        "mode": "preload",
        "exec_mode": "server",
    },
    {"id": "remote", "path": "remote", "exec_mode": "api"},
]


def context(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, compat: str
) -> GatewayContext:
    profile = {"models": MODELS, "compat": compat}
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context(kube, cache, store, namespace, storage, "document"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sd.test"
    ) as session:
        yield session


async def test_start_and_stop_drive_one_service_instance_per_model(
    http: httpx.AsyncClient, cache: ClusterCache, store: CrStore, namespace: str
) -> None:
    started = await http.post("/api/models/tiny-sd/start")
    assert started.json() == {"success": True, "status": "starting", "port": 1400}
    name = service_name("tiny-sd")
    si = cache.get(SI, name, namespace)
    assert si is not None
    assert (si["spec"]["serviceType"], si["spec"]["models"], si["spec"]["running"]) == (
        "kubepilot-generator",
        ["diffusers/tiny-sd"],
        True,
    )
    assert (await http.get("/api/models/tiny-sd/status")).json() == {
        "id": "tiny-sd",
        "status": "starting",
        "port": 1400,
    }
    again = await http.post("/api/models/tiny-sd/start")
    assert (again.status_code, again.json()) == (409, {"error": "Model is already running"})
    assert (await http.get("/api/models/running")).json() == []

    await store.patch_status(SI, name, {"phase": "Running", "ready": True})
    assert (await http.get("/api/models/running")).json() == [
        {"id": "tiny-sd", "name": "Tiny SD", "port": 1400, "status": "running"}
    ]
    assert (await http.get("/api/models/tiny-sd")).json()["status"] == "running"

    assert (await http.post("/api/models/tiny-sd/stop")).json() == {"success": True, "status": "stopped"}
    si = cache.get(SI, name, namespace)
    assert si is not None and si["spec"]["running"] is False
    assert (await http.get("/api/models/tiny-sd/status")).json()["status"] == "stopping"
    await store.patch_status(SI, name, {"phase": "Stopped", "ready": False})
    stopped = await http.post("/api/models/tiny-sd/stop")
    assert (stopped.status_code, stopped.json()) == (400, {"error": "Model is not running"})
    assert (await http.post("/api/models/tiny-sd/start")).status_code == 200  # the same object, running again
    si = cache.get(SI, name, namespace)
    assert si is not None and si["spec"]["running"] is True


async def test_an_sdcpp_backed_model_gets_an_sdcpp_server_and_api_models_do_not_start(
    http: httpx.AsyncClient, cache: ClusterCache, namespace: str
) -> None:
    assert (await http.post("/api/models/Flux Q4/start")).status_code == 200
    si = cache.get(SI, service_name("Flux Q4"), namespace)
    assert si is not None
    assert si["spec"]["serviceType"] == "sdcpp-server" and si["spec"]["autostart"] is True
    assert si["spec"]["sdcpp"] == {
        "id": "Flux Q4",
        "path": "sdcpp/flux-q4.gguf",
        "execMode": "server",
        "mode": "preload",
    }
    remote = await http.post("/api/models/remote/start")
    assert remote.status_code == 400 and remote.json()["error"].startswith("Model uses an external API")
    assert (await http.post("/api/models/nope/start")).status_code == 404
    assert (await http.post("/api/models/nope/stop")).json() == {"error": "Model not found"}


async def test_product_mode_answers_the_products_start_and_running_shapes(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    app = create_app(context(kube, cache, store, namespace, storage, "product"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sd.test") as http:
        started = (await http.post("/api/models/tiny-sd/start")).json()
        assert started == {
            "success": True,
            "modelId": "tiny-sd",
            "status": "starting",
            "pid": None,
            "message": "Model tiny-sd is starting",
        }
        available = {"type": "Available", "status": "True", "reason": "Ready", "message": "serving"}
        available["lastTransitionTime"] = "2026-01-01T00:00:00Z"
        await store.patch_status(SI, service_name("tiny-sd"), {"phase": "Running", "conditions": [available]})
        assert (await http.get("/api/models/running")).json() == {
            "count": 1,
            "models": [
                {
                    "id": "tiny-sd",
                    "name": "Tiny SD",
                    "pid": None,
                    "port": 1400,
                    "execMode": "server",
                    "startedAt": 1767225600000,
                    "api": None,
                }
            ],
        }
        stopped = (await http.post("/api/models/tiny-sd/stop")).json()
        assert stopped["status"] == "stopped" and stopped["message"] == "Model tiny-sd has been stopped"


@pytest.mark.parametrize("compat", ["document", "product"])
async def test_model_status_changes_reach_the_models_channel(
    compat: str, kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    server, task, sock = await serve(context(kube, cache, store, namespace, storage, compat))
    port = sock.getsockname()[1]
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
            connect(f"ws://127.0.0.1:{port}/ws") as ws,
        ):
            await ws.send(json.dumps({"type": "subscribe", "channel": "models"}))
            await ws.send(json.dumps({"type": "ping"}))
            await next_of(ws, "pong")  # the subscription is in place

            def data(message: JsonObject) -> tuple[Any, ...]:
                payload = message["data"]
                if compat == "product":
                    assert message["channel"] == "models"
                    return payload["modelId"], payload["status"], payload["port"]
                return payload["id"], payload["status"], payload["port"]

            await http.post("/api/models/tiny-sd/start")
            assert data(await next_of(ws, "model_status_changed")) == ("tiny-sd", "starting", 1400)
            await store.patch_status(SI, service_name("tiny-sd"), {"phase": "Running", "ready": True})
            assert data(await next_of(ws, "model_status_changed")) == ("tiny-sd", "running", 1400)
            await http.post("/api/models/tiny-sd/stop")
            assert data(await next_of(ws, "model_status_changed")) == ("tiny-sd", "stopping", 1400)
            await store.patch_status(SI, service_name("tiny-sd"), {"phase": "Stopped", "ready": False})
            assert data(await next_of(ws, "model_status_changed")) == ("tiny-sd", "stopped", 1400)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_the_application_log_merges_the_gateways_actions_and_the_jobs_conditions(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    job_id = (await http.post("/api/queue/generate", json={"prompt": "a cat", "model": "tiny-sd"})).json()[
        "job_id"
    ]
    await http.delete(f"/api/queue/{job_id}")
    assert (await http.post("/api/queue/generate", json={"model": "tiny-sd"})).status_code == 400
    await http.post("/api/models/tiny-sd/start")
    cancelled = {
        "type": "Cancelled",
        "status": "True",
        "reason": "UserCancelled",
        "message": "cancelled before it started",
        "lastTransitionTime": "2099-01-01T00:00:00Z",  # the newest line
    }
    await store.patch_status(GJ, job_id, {"phase": "Cancelled", "conditions": [cancelled]})

    logs = (await http.get("/api/logs")).json()["logs"]
    assert [(line["module"], line["level"]) for line in logs] == [
        ("queueProcessor", "info"),
        ("queueProcessor", "info"),
        ("routes", "warn"),
        ("modelManager", "info"),
        ("queueProcessor", "info"),
    ]
    assert logs[0]["message"] == f"Job {job_id} queued: generate (tiny-sd)"
    assert logs[1]["message"] == f"Job {job_id} cancelled (UserCancelled)"
    assert logs[2]["message"] == "POST /api/queue/generate refused: Missing required field: prompt"
    assert logs[4] == {
        "timestamp": "2099-01-01T00:00:00.000Z",
        "level": "info",
        "message": f"Job {job_id}: Cancelled: cancelled before it started",
        "module": "queueProcessor",
    }
    assert all(line["timestamp"].endswith("Z") for line in logs)
    assert (await http.get("/api/api/logs", params={"limit": 2})).json()["logs"] == logs[-2:]
    per_job = (await http.get(f"/api/generations/{job_id}/logs", params={"limit": 1})).json()["logs"]
    assert [line["message"] for line in per_job] == ["Cancelled: cancelled before it started"]
