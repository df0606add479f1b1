"""sd.cpp Studio's WebSocket (``/ws``) on a real uvicorn with a real WebSocket client, and the
generation deletes, over the devcluster.

No operator runs here: the tests write a job's status the way the operator does
(``patch_status``), which is what the watch turns into bus events; the operator path itself is
covered by ``test_sdcpp_studio_e2e.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from tests.gateway.conftest import stack_settings
from tests.operator.harness import Storage

GJ = resource_for("GenerationJob")
MODELS = [{"id": "tiny-sd", "path": "diffusers/tiny-sd"}]
JsonObject = dict[str, Any]


def context(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, compat: str
) -> GatewayContext:
    profile = {"models": MODELS, "compat": compat}
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


async def serve(ctx: GatewayContext) -> tuple[uvicorn.Server, asyncio.Task[None], socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, sock


async def next_of(ws: ClientConnection, event: str, within: float = 10) -> JsonObject:
    """The next message of type ``event`` (others skipped)."""
    async with asyncio.timeout(within):
        while True:
            message: JsonObject = json.loads(await ws.recv())
            if message.get("type") == event:
                return message


async def session(
    ctx: GatewayContext, compat: str
) -> AsyncIterator[tuple[httpx.AsyncClient, ClientConnection, list[JsonObject]]]:
    server, task, sock = await serve(ctx)
    port = sock.getsockname()[1]
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
            connect(f"ws://127.0.0.1:{port}/ws") as ws,
        ):
            greeting = [json.loads(await ws.recv())] if compat == "product" else []
            await ws.send(json.dumps({"type": "subscribe", "channel": "queue"}))
            await ws.send(json.dumps({"type": "subscribe", "channel": "generations"}))
            await ws.send(json.dumps({"type": "ping"}))
            acks = [json.loads(await ws.recv()) for _ in range(3 if compat == "product" else 1)]
            yield http, ws, greeting + acks
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture(params=["document", "product"])
async def live(
    request: pytest.FixtureRequest,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
) -> AsyncIterator[tuple[str, httpx.AsyncClient, ClientConnection, list[JsonObject]]]:
    compat = str(request.param)
    async for http, ws, first in session(context(kube, cache, store, namespace, storage, compat), compat):
        yield compat, http, ws, first


async def test_a_jobs_life_reaches_the_subscribed_channels(
    live: tuple[str, httpx.AsyncClient, ClientConnection, list[JsonObject]], store: CrStore, namespace: str
) -> None:
    compat, http, ws, first = live
    if compat == "product":
        assert first[0]["type"] == "connected" and first[0]["channels"] == ["queue", "generations", "models"]
        assert [(m["type"], m.get("channel")) for m in first[1:]] == [
            ("subscribed", "queue"),
            ("subscribed", "generations"),
            ("pong", None),
        ]
    else:
        assert [m["type"] for m in first] == ["pong"]
    answer = await http.post("/api/queue/generate", json={"prompt": "a cat", "model": "tiny-sd"})
    job_id = answer.json()["job_id"]
    created = await next_of(ws, "job_created" if compat == "product" else "job_updated")
    assert created["data"]["id"] == job_id and created["data"]["status"] == "pending"

    progress = {"step": 1, "totalSteps": 4, "percent": 25, "lastUpdatedTime": "2026-01-01T00:00:00Z"}
    await store.patch_status(GJ, job_id, {"phase": "Processing", "progress": progress})
    updated = await next_of(ws, "job_updated")
    assert (updated["data"]["status"], updated["data"]["progress"]) == ("processing", 0.25)
    output = {"index": 0, "path": f"generations/{namespace}/{job_id}/0.png", "width": 64, "height": 64}
    await store.patch_status(GJ, job_id, {"phase": "Completed", "outputs": [output]})
    completed = await next_of(ws, "job_completed")
    assert completed["data"]["status"] == "completed"
    generation = await next_of(ws, "generation_complete" if compat == "product" else "generation_completed")
    if compat == "product":
        assert generation["channel"] == "generations" and generation["data"]["imageCount"] == 1
    else:
        assert set(generation) == {"type", "data"} and generation["data"]["image_count"] == 1


async def test_a_failed_job_is_announced_as_job_failed(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    async for http, ws, _ in session(context(kube, cache, store, namespace, storage, "document"), "document"):
        answer = await http.post("/api/queue/generate", json={"prompt": "a cat", "model": "tiny-sd"})
        job_id = answer.json()["job_id"]
        await store.patch_status(GJ, job_id, {"phase": "Failed", "error": {"code": "X", "message": "boom"}})
        failed = await next_of(ws, "job_failed")
        assert (failed["data"]["id"], failed["data"]["error"]) == (job_id, "boom")


async def test_deleting_generations_removes_the_objects_and_the_files_when_asked(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    ctx = context(kube, cache, store, namespace, storage, "document")
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sd.test") as http:
        made = []
        for _ in range(3):
            answer = await http.post("/api/queue/generate", json={"prompt": "x", "model": "tiny-sd"})
            made.append(answer.json()["job_id"])
        files = []
        for job_id in made[:2]:
            path = storage.outputs / "generations" / namespace / job_id / "0.png"
            path.parent.mkdir(parents=True)
            path.write_bytes(b"\x89PNG")
            files.append(path)
            output = {"index": 0, "path": str(path.relative_to(storage.outputs)), "width": 64, "height": 64}
            await store.patch_status(GJ, job_id, {"phase": "Completed", "outputs": [output]})

        assert (await http.delete(f"/api/generations/{made[0]}")).json() == {"success": True}
        assert not files[0].exists() and cache.get(GJ, made[0], namespace) is None
        assert (await http.delete(f"/api/generations/{made[0]}")).status_code == 404
        # The pending job stays queued; the finished one goes, its file kept (delete_files=false).
        assert (await http.delete("/api/generations")).json() == {"success": True, "deleted": 1}
        assert files[1].exists() and cache.get(GJ, made[1], namespace) is None
        assert cache.get(GJ, made[2], namespace) is not None
        # delete_files=true takes the files of every finished generation too.
        left = {"index": 0, "path": str(files[1].relative_to(storage.outputs)), "width": 64, "height": 64}
        await store.patch_status(GJ, made[2], {"phase": "Completed", "outputs": [left]})
        answer = await http.delete("/api/generations", params={"delete_files": "true"})
        assert answer.json() == {"success": True, "deleted": 1}
        assert not files[1].exists() and cache.get(GJ, made[2], namespace) is None
