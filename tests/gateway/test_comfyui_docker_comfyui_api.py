"""The dashboard's ComfyUI endpoints (health, execute, queue, history, clear queue, interrupt)
against the devcluster, without the operator.

Real API server, cache and CR store, real HTTP (httpx over ASGI). No operator runs here, so the
GenerationJobs an execute creates stay as the gateway wrote them; a test plays the operator's part
by patching their status (phase, queue position, outputs) and a ServiceInstance's status, which is
exactly what these endpoints read. The operator's side is in ``test_comfyui_docker_comfyui_e2e.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.comfyui_docker import comfyui as cf
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.profiles.comfyui_docker.workflows import txt2img_graph
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
GJ = resource_for("GenerationJob")
SI = resource_for("ServiceInstance")
GRAPH = txt2img_graph("tiny.safetensors", 64, 2, 7.0)
CUSTOM_GRAPH = {
    **GRAPH,
    "10": {"class_type": "WanVideoSampler", "inputs": {"model": ["4", 0]}},
    "11": {"class_type": "AnimateDiffLoader", "inputs": {}},
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> GatewayContext:
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"comfyui-docker": {"maxQueueSize": 3, "executionTtlSeconds": 600}}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings=profile)
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
        yield client


async def execute(http: httpx.AsyncClient, graph: Any = GRAPH, **extra: Any) -> JsonObject:
    answer = await http.post("/api/comfyui/execute", json={"workflow": graph, **extra})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def set_status(store: CrStore, prompt_id: str, **status: Any) -> None:
    await store.patch_status(GJ, cf.job_name(prompt_id), status)


def error_of(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, str(answer.json()["error"]["code"])


async def test_execute_creates_workflow_jobs_numbered_by_their_place_in_the_queue(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore
) -> None:
    first = await execute(http)
    assert first["status"] == "queued" and first["number"] == 1
    assert str(uuid.UUID(first["prompt_id"])) == first["prompt_id"]
    job = ctx.cache.get(GJ, cf.job_name(first["prompt_id"]))
    assert job is not None
    assert job["metadata"]["labels"] == {
        "kubepilot.io/profile": "comfyui-docker",
        cf.LABEL_PROMPT_ID: first["prompt_id"],
    }
    spec = job["spec"]
    assert (spec["type"], spec["workflow"], spec["priority"], spec["ttlSecondsAfterFinished"]) == (
        "workflow",
        GRAPH,
        0,
        600,
    )
    assert "serviceRef" not in spec  # no ComfyUI service: the diffusers generator runs it

    # A graph sent as JSON text is the same graph; a higher priority goes before the first one.
    urgent = await execute(http, graph=json.dumps(GRAPH), priority=5)
    assert urgent["number"] == 1
    queue = (await http.get("/api/comfyui/queue")).json()
    assert queue == {
        "queue_running": [],
        "queue_pending": [
            {"prompt_id": urgent["prompt_id"], "number": 1},
            {"prompt_id": first["prompt_id"], "number": 2},
        ],
    }

    await set_status(store, first["prompt_id"], phase="Processing", queuePosition=0, startedAt=now())
    queue = (await http.get("/api/comfyui/queue")).json()
    assert queue["queue_running"] == [{"prompt_id": first["prompt_id"], "number": 1}]
    assert queue["queue_pending"] == [{"prompt_id": urgent["prompt_id"], "number": 2}]
    health = (await http.get("/api/comfyui/health")).json()
    assert health == {
        "status": "healthy",
        "version": "kubepilot-diffusers",
        "queue": {"pending": 1, "running": 1},
        "backend": "diffusers",
    }

    third = await execute(http)
    assert third["number"] == 3
    full = await http.post("/api/comfyui/execute", json={"workflow": GRAPH})
    assert error_of(full) == (507, "QUEUE_FULL")
    assert full.json()["error"]["details"] == {"queue_size": 3, "max_queue_size": 3}
    # A finished job leaves the queue and makes room.
    await set_status(store, first["prompt_id"], phase="Completed", queuePosition=-1, completedAt=now())
    assert (await execute(http))["number"] == 3


async def test_execute_refuses_what_cannot_run_with_the_seeds_codes(
    http: httpx.AsyncClient, ctx: GatewayContext
) -> None:
    unsupported = await http.post("/api/comfyui/execute", json={"workflow": CUSTOM_GRAPH})
    assert error_of(unsupported) == (400, "INVALID_WORKFLOW")
    details = unsupported.json()["error"]["details"]
    assert details["unsupported_node_types"] == ["AnimateDiffLoader", "WanVideoSampler"]
    assert "KSampler" in details["supported_node_types"]
    assert "AnimateDiffLoader" in unsupported.json()["error"]["message"]

    bad_graphs: list[Any] = [
        {},
        [1, 2],
        {"nodes": [], "links": []},  # the UI format
        {"1": {"inputs": {}}},
        {"1": {"class_type": "KSampler", "inputs": {"model": ["9", 0]}}},  # a link to nowhere
        "{not json",
    ]
    for graph in bad_graphs:
        answer = await http.post("/api/comfyui/execute", json={"workflow": graph})
        assert error_of(answer) == (400, "INVALID_WORKFLOW"), graph
    missing = await http.post("/api/comfyui/execute", json={"priority": 1})
    assert error_of(missing) == (400, "INVALID_WORKFLOW")
    # Node types the generator knows, in a shape its translator refuses (a sampler diffusers lacks).
    sampler = {**GRAPH["3"]["inputs"], "sampler_name": "dpm_adaptive"}
    odd_sampler = {**GRAPH, "3": {"class_type": "KSampler", "inputs": sampler}}
    untranslatable = await http.post("/api/comfyui/execute", json={"workflow": odd_sampler})
    assert error_of(untranslatable) == (400, "INVALID_WORKFLOW")
    assert "dpm_adaptive" in untranslatable.json()["error"]["message"]
    assert untranslatable.json()["error"]["details"]["unsupported_node_types"] == []
    for priority in ("high", 1000, True, 1.5):
        answer = await http.post("/api/comfyui/execute", json={"workflow": GRAPH, "priority": priority})
        assert error_of(answer) == (400, "INVALID_REQUEST"), priority
    not_json = await http.post(
        "/api/comfyui/execute", content=b"{", headers={"content-type": "application/json"}
    )
    assert error_of(not_json) == (400, "INVALID_REQUEST")
    assert ctx.cache.list(GJ) == []
    assert (await http.get("/api/comfyui/queue")).json() == {"queue_running": [], "queue_pending": []}


async def test_a_comfyui_service_takes_every_graph_and_its_state_is_the_health(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore
) -> None:
    await store.create(SI, {"metadata": {"name": "comfy"}, "spec": {"serviceType": "comfyui"}})
    down = await http.get("/api/comfyui/health")
    assert error_of(down) == (503, "COMFYUI_UNAVAILABLE")
    assert down.json()["error"]["details"] == {"service": "comfy", "phase": "Stopped"}
    # Stopped is not down for good: the execution waits for (and starts) the service.
    queued = await execute(http, graph=CUSTOM_GRAPH, priority=2)
    job = ctx.cache.get(GJ, cf.job_name(queued["prompt_id"]))
    assert job is not None
    assert (job["spec"]["serviceRef"], job["spec"]["autoStartService"], job["spec"]["priority"]) == (
        {"name": "comfy"},
        True,
        2,
    )

    await store.patch_status(
        SI, "comfy", {"phase": "Running", "ready": True, "version": {"installed": "0.3.10"}}
    )
    health = (await http.get("/api/comfyui/health")).json()
    assert health == {
        "status": "healthy",
        "version": "0.3.10",
        "queue": {"pending": 1, "running": 0},
        "backend": "comfyui",
    }
    await store.patch_status(SI, "comfy", {"phase": "Error", "ready": False})
    refused = await http.post("/api/comfyui/execute", json={"workflow": GRAPH})
    assert error_of(refused) == (503, "COMFYUI_UNAVAILABLE")
    status = (await http.get("/api/system/status")).json()
    assert status["services"]["comfyui"] == "error"


async def test_clear_queue_cancels_pending_jobs_and_interrupt_the_running_one(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore
) -> None:
    ids = [(await execute(http))["prompt_id"] for _ in range(3)]
    await set_status(store, ids[0], phase="Processing", queuePosition=0, startedAt=now())
    assert error_of(await http.delete("/api/comfyui/queue", params={"type": "some"})) == (
        400,
        "INVALID_REQUEST",
    )

    cleared = await http.delete("/api/comfyui/queue")
    assert cleared.json() == {"cleared": 2, "status": "success"}

    def spec(prompt_id: str) -> JsonObject:
        job = ctx.cache.get(GJ, cf.job_name(prompt_id))
        assert job is not None
        return dict(job["spec"])

    assert [(spec(p).get("cancel", False), spec(p).get("cancelReason")) for p in ids] == [
        (False, "UserCancelled"),
        (True, "QueueCleared"),
        (True, "QueueCleared"),
    ]
    # Already cancelled (the operator has not acted yet): not cleared twice.
    assert (await http.delete("/api/comfyui/queue", params={"type": "pending"})).json()["cleared"] == 0

    interrupted = await http.post("/api/comfyui/interrupt")
    assert interrupted.json() == {"status": "interrupted", "prompt_ids": [ids[0]]}
    assert (spec(ids[0])["cancel"], spec(ids[0])["cancelReason"]) == (True, "Interrupted")
    nothing = await http.post("/api/comfyui/interrupt")
    assert nothing.json() == {"status": "interrupted", "prompt_ids": []}

    fresh = (await execute(http))["prompt_id"]
    await set_status(store, fresh, phase="Processing", queuePosition=0, startedAt=now())
    assert (await http.delete("/api/comfyui/queue", params={"type": "all"})).json()["cleared"] == 1
    assert spec(fresh)["cancelReason"] == "QueueCleared"


async def test_history_renders_outputs_as_comfyui_image_records(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore, tmp_path: Path
) -> None:
    done, failed, waiting = [(await execute(http))["prompt_id"] for _ in range(3)]
    folder = f"generations/ns/{cf.job_name(done)[:20]}"
    outputs = [
        {"index": 1, "path": f"{folder}/00001.png", "width": 64, "height": 64},
        {"index": 0, "path": str(tmp_path / folder / "00000.png"), "width": 64, "height": 64},
    ]
    progress = {"step": 2, "totalSteps": 2, "percent": 100, "lastUpdatedTime": now()}
    await set_status(store, done, phase="Processing", startedAt="2026-02-15T10:30:00Z")
    await set_status(
        store, done, phase="Completed", completedAt="2026-02-15T10:30:15Z", outputs=outputs, progress=progress
    )
    await set_status(
        store,
        failed,
        phase="Failed",
        completedAt="2026-02-15T10:31:00Z",
        error={"code": "INVALID_WORKFLOW", "message": "no SaveImage node"},
    )

    entry = (await http.get(f"/api/comfyui/history/{done}")).json()
    assert entry == {
        "prompt_id": done,
        "status": "completed",
        "outputs": {
            "images": [
                {"filename": "00000.png", "subfolder": folder, "type": "output"},
                {"filename": "00001.png", "subfolder": folder, "type": "output"},
            ]
        },
        "started": "2026-02-15T10:30:00Z",
        "completed": "2026-02-15T10:30:15Z",
        "backend": "diffusers",
    }
    failure = (await http.get(f"/api/comfyui/history/{failed}")).json()
    assert (failure["status"], failure["error"]) == (
        "failed",
        {"code": "INVALID_WORKFLOW", "message": "no SaveImage node"},
    )
    pending = (await http.get(f"/api/comfyui/history/{waiting}")).json()
    assert (pending["status"], pending["outputs"], pending["completed"]) == ("pending", {"images": []}, None)

    listed = (await http.get("/api/comfyui/history")).json()
    assert [row["prompt_id"] for row in listed["history"]] == [failed, done] and listed["total"] == 2
    assert [
        row["prompt_id"] for row in (await http.get("/api/comfyui/history?max_items=1")).json()["history"]
    ] == [failed]
    for unknown in (str(uuid.uuid4()), "not-a-prompt", "ABC.def"):
        assert error_of(await http.get(f"/api/comfyui/history/{unknown}")) == (404, "PROMPT_NOT_FOUND")
    # A GenerationJob of another profile is not a prompt of this one.
    other = str(uuid.uuid4())
    await store.create(
        GJ, {"metadata": {"name": cf.job_name(other)}, "spec": {"type": "workflow", "workflow": GRAPH}}
    )
    assert error_of(await http.get(f"/api/comfyui/history/{other}")) == (404, "PROMPT_NOT_FOUND")
    assert len((await http.get("/api/comfyui/queue")).json()["queue_pending"]) == 1


async def test_with_auth_on_every_comfyui_route_refuses_a_missing_token(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> None:
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"comfyui-docker": {"enableAuth": True}}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings=profile)
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    prompt = str(uuid.uuid4())
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as http:
        for method, path in (
            ("GET", "/api/comfyui/health"),
            ("POST", "/api/comfyui/execute"),
            ("GET", "/api/comfyui/queue"),
            ("DELETE", "/api/comfyui/queue"),
            ("POST", "/api/comfyui/interrupt"),
            ("GET", "/api/comfyui/history"),
            ("GET", f"/api/comfyui/history/{prompt}"),
        ):
            answer = await http.request(method, path, json={"workflow": GRAPH} if method == "POST" else None)
            assert error_of(answer) == (401, "UNAUTHORIZED"), path
            assert answer.headers["X-RateLimit-Remaining"] and answer.headers["X-API-Version"] == "1.0.0"
    assert ctx.cache.list(GJ) == []
