"""A preset installed end to end through the dashboard: REST install → one ModelPull (destination
``mixed``: the preset's files span the checkpoints and vae folders) → the real
operator → the real downloader as a pod → ``download_progress`` then ``download_complete`` on a
subscribed WebSocket (never on an unsubscribed one) → the preset reads installed → uninstall
removes its files; pause, resume and cancel of two others, and a third whose file the server does
not have failing with the WebSocket's ``error`` ``DOWNLOAD_FAILED``.

Everything is real (devcluster, operator, downloader, uvicorn, WebSockets) but the file server,
which is the local Hub fake (real HTTP on 127.0.0.1) because the network is not reachable here.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, KubeClient, resource_for
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from tests.operator.harness import OperatorProcess, Storage
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")
SIZE = 3_000_000


@pytest.fixture
async def base_url(stack_ctx: GatewayContext) -> AsyncIterator[str]:
    """The dashboard on a real uvicorn (WebSockets need a server); its http:// base URL."""
    ctx = stack_ctx
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


async def send(ws: ClientConnection, message: JsonObject) -> JsonObject:
    """Send ``message`` and return the server's answer to it (the next message of its kind)."""
    await ws.send(json.dumps(message))
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def download_messages(ws: ClientConnection, within: float) -> list[JsonObject]:
    """Messages until ``download_complete`` (or an error)."""
    seen: list[JsonObject] = []
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            seen.append(message)
            if message["type"] in ("download_complete", "error"):
                return seen


async def test_a_preset_installs_with_progress_on_the_websocket_and_uninstalls(
    operator: OperatorProcess,
    hub: HubFake,
    base_url: str,
    kube: KubeClient,
    namespace: str,
    storage: Storage,
    cache: ClusterCache,
) -> None:
    # A preset spanning type folders (a checkpoint and its VAE): one ModelPull of destination mixed.
    paths = [f"checkpoints/{namespace}/a.safetensors", f"vae/{namespace}/b.safetensors"]
    files = []
    for path in paths:
        url = hub.add_plain(f"{namespace}/{path}", FakeFile(data=bytes_of(namespace + path, SIZE)))
        files.append({"path": path, "url": url, "size_bytes": SIZE})
    preset = {
        "id": "E2E_TINY",
        "name": "Tiny",
        "category": "Image Generation",
        "type": "image",
        "files": files,
    }
    configmap = {"metadata": {"name": "comfyui-docker-presets"}, "data": {"presets": json.dumps([preset])}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **configmap}
    )
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    hub.throttle_bytes_per_second = 2_000_000  # slow enough to see progress between 0 and 100
    try:
        async with (
            httpx.AsyncClient(base_url=base_url) as http,
            connect(ws_url) as subscribed,
            connect(ws_url) as other,
        ):
            ack = await send(subscribed, {"type": "subscribe", "channels": ["downloads", "queue"]})
            assert ack == {"type": "subscribed", "channels": ["downloads", "queue"]}
            await send(other, {"type": "subscribe", "channels": ["downloads"]})
            assert await send(other, {"type": "unsubscribe", "channels": ["downloads"]}) == {
                "type": "unsubscribed",
                "channels": [],
            }
            bad = await send(other, {"type": "subscribe", "channels": ["nope"]})
            assert bad["type"] == "error" and bad["data"]["code"] == "INVALID_REQUEST"

            started = await http.post("/api/presets/E2E_TINY/install", json={})
            assert started.status_code == 200, started.text
            download_id = started.json()["download_id"]
            pull = cache.get(MP, dl.pull_name("E2E_TINY"))
            assert pull is not None and pull["spec"]["destination"]["modelType"] == "mixed"
            seen = await download_messages(subscribed, within=90)

            progress = [m["data"] for m in seen if m["type"] == "download_progress"]
            complete = seen[-1]
            assert complete["type"] == "download_complete", seen
            assert complete["data"]["download_id"] == download_id
            assert (complete["data"]["preset_id"], complete["data"]["status"]) == ("E2E_TINY", "success")
            assert isinstance(complete["data"]["time_taken_seconds"], int)
            assert progress and all(p["download_id"] == download_id for p in progress)
            assert any(0 < p["progress"] < 100 for p in progress), progress
            for p in progress:
                assert re.fullmatch(r"\d+ (MB|KB|B)/s", p["speed"]), p
                assert p["eta"] == "unknown" or re.fullmatch(r"(\d+h \d+m|\d+m \d+s|\d+s)", p["eta"]), p
                assert p["files"]["total"] == 2 and 0 <= p["files"]["completed"] <= 2
                assert p["current_file"] in (None, *paths), p  # with its type folder, as the seed's
            # The unsubscribed client got nothing: its next message is the answer to this one.
            assert (await send(other, {"type": "subscribe", "channels": ["system"]}))["type"] == "subscribed"

            status = (await http.get("/api/presets/E2E_TINY/status")).json()
            assert status["status"] == "installed" and status["progress"] == 100.0
            assert status["files"] == {"total": 2, "completed": 2, "failed": 0}
            detail = (await http.get("/api/presets/E2E_TINY")).json()
            assert detail["installed"] is True and detail["install_date"].endswith("Z")
            assert [f["installed"] for f in detail["files"]] == [True, True]
            listed = (await http.get("/api/presets", params={"installed": "true"})).json()
            assert [p["id"] for p in listed["presets"]] == ["E2E_TINY"]
            models = (await http.get("/api/models", params={"search": "safetensors"})).json()["models"]
            ours = [m for m in models if m["path"] in paths]
            assert [(m["path"], m["type"], m["preset"], m["size_bytes"]) for m in ours] == [
                (paths[0], "checkpoints", "E2E_TINY", SIZE),
                (paths[1], "vae", "E2E_TINY", SIZE),
            ]
            row = next(
                d for d in (await http.get("/api/downloads")).json()["downloads"] if d["id"] == download_id
            )
            assert (row["status"], row["progress"]) == ("completed", 100.0)
            again = await http.post("/api/presets/E2E_TINY/install")
            assert again.status_code == 409 and again.json()["error"]["code"] == "PRESET_ALREADY_INSTALLED"

            removed = await http.delete("/api/presets/E2E_TINY")
            assert removed.status_code == 200, removed.text
            assert removed.json() == {
                "status": "uninstalled",
                "preset_id": "E2E_TINY",
                "files_removed": 2,
                "space_freed_gb": 0.006,
            }
            assert not any((storage.models / path).exists() for path in paths)
            assert cache.get(MP, dl.pull_name("E2E_TINY")) is None
            assert (await http.get("/api/presets/E2E_TINY/status")).json()["status"] == "not_installed"
    finally:
        hub.throttle_bytes_per_second = 0


async def phase_reaches(cache: ClusterCache, name: str, phase: str, within: float) -> JsonObject:
    """The ModelPull once the operator reports ``phase`` (a poll of the cache with a deadline)."""
    async with asyncio.timeout(within):
        while True:
            pull = cache.get(MP, name)
            if pull is not None and (pull.get("status") or {}).get("phase") == phase:
                return pull
            await asyncio.sleep(0.05)


async def test_a_download_is_paused_resumed_and_another_cancelled(
    operator: OperatorProcess,
    hub: HubFake,
    base_url: str,
    kube: KubeClient,
    namespace: str,
    storage: Storage,
    cache: ClusterCache,
) -> None:
    presets = []
    # E2E_PAUSE spans two type folders (a mixed ModelPull), E2E_CANCEL has one (a loras ModelPull).
    for preset_id, folders in (("E2E_PAUSE", ("loras", "vae")), ("E2E_CANCEL", ("loras",))):
        files = []
        for folder in folders:
            name = f"{namespace}/{folder}/{preset_id}.safetensors"
            url = hub.add_plain(name, FakeFile(data=bytes_of(name, SIZE)))
            path = f"{folder}/{namespace}/{preset_id}.safetensors"
            files.append({"path": path, "url": url, "size_bytes": SIZE})
        presets.append({"id": preset_id, "name": preset_id, "files": files})
    # E2E_BROKEN's file is not on the server (404): its download fails.
    missing = {"path": f"vae/{namespace}/gone.safetensors", "url": f"{hub.base_url}/files/{namespace}/gone"}
    presets.append({"id": "E2E_BROKEN", "name": "Broken", "files": [missing]})
    configmap = {"metadata": {"name": "comfyui-docker-presets"}, "data": {"presets": json.dumps(presets)}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **configmap}
    )
    hub.throttle_bytes_per_second = 1_000_000
    try:
        async with httpx.AsyncClient(base_url=base_url) as http:
            paused_id = (await http.post("/api/presets/E2E_PAUSE/install")).json()["download_id"]
            cancel_id = (await http.post("/api/presets/E2E_CANCEL/install")).json()["download_id"]
            assert paused_id != cancel_id

            assert (await http.post(f"/api/downloads/{paused_id}/pause")).json()["status"] == "paused"
            await phase_reaches(cache, dl.pull_name("E2E_PAUSE"), "Paused", 60)
            assert (await http.get("/api/presets/E2E_PAUSE/status")).json()["status"] == "paused"

            cancelled = await http.delete(f"/api/downloads/{cancel_id}")
            assert cancelled.json() == {
                "status": "cancelled",
                "download_id": cancel_id,
                "files_removed": True,
            }
            await phase_reaches(cache, dl.pull_name("E2E_CANCEL"), "Cancelled", 60)
            assert not (storage.models / "loras" / namespace / "E2E_CANCEL.safetensors").exists()

            hub.throttle_bytes_per_second = 0
            resumed = await http.post(f"/api/downloads/{paused_id}/resume")
            assert resumed.json() == {"status": "downloading", "download_id": paused_id}
            await phase_reaches(cache, dl.pull_name("E2E_PAUSE"), "Completed", 90)
            status = (await http.get("/api/presets/E2E_PAUSE/status")).json()
            assert (status["status"], status["progress"]) == ("installed", 100.0)
            assert status["files"] == {"total": 2, "completed": 2, "failed": 0}
            assert (storage.models / "vae" / namespace / "E2E_PAUSE.safetensors").stat().st_size == SIZE
            rows = {
                row["id"]: row["status"] for row in (await http.get("/api/downloads")).json()["downloads"]
            }
            assert rows == {paused_id: "completed", cancel_id: "cancelled"}
            assert (await http.get("/api/presets/E2E_CANCEL/status")).json()["status"] == "cancelled"

            # A failed download: the WebSocket's error DOWNLOAD_FAILED (the guide's shape), a
            # failed status and download row.
            async with connect(base_url.replace("http://", "ws://") + "/ws") as ws:
                assert (await send(ws, {"type": "subscribe", "channels": ["downloads"]}))[
                    "type"
                ] == "subscribed"
                broken_id = (await http.post("/api/presets/E2E_BROKEN/install")).json()["download_id"]
                seen = await download_messages(ws, within=90)
            failure = seen[-1]
            assert (failure["type"], failure["data"]["code"]) == ("error", "DOWNLOAD_FAILED"), seen
            assert failure["data"]["message"]
            assert failure["data"]["details"]["download_id"] == broken_id
            assert set(failure["data"]["details"]) >= {"file", "error"}
            assert (await http.get("/api/presets/E2E_BROKEN/status")).json()["status"] == "failed"
            rows = {
                row["id"]: row["status"] for row in (await http.get("/api/downloads")).json()["downloads"]
            }
            assert rows[broken_id] == "failed"
    finally:
        hub.throttle_bytes_per_second = 0
