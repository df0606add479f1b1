"""The dashboard's WebSocket without the operator: the ``install_preset`` action, protocol errors,
and pushes from the event bus (a pause the gateway writes is a ModelPull change the bus carries)
reaching only subscribed clients. Real devcluster, real uvicorn, real WebSocket clients.

Also the seed's number formats (pure functions).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from kubepilot_gateway.app.gateway import build_combined_app
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles import load_profile
from kubepilot_gateway.profiles.comfyui_docker import catalog as cat
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import served

JsonObject = dict[str, Any]
PRESET = {
    "id": "WS_ONE",
    "name": "One",
    "files": [{"path": "loras/ws_one.safetensors", "url": "http://hub.test/ws", "size_bytes": 10}],
}


@pytest.fixture
async def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> GatewayContext:
    body = {"metadata": {"name": "comfyui-docker-presets"}, "data": {"presets": json.dumps([PRESET])}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **body}
    )
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"comfyui-docker": {"systemStatusSeconds": 0.1}}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings=profile)
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def base_url(ctx: GatewayContext) -> AsyncIterator[str]:
    async with served(create_app(ctx)) as url:
        yield url


async def ask(ws: ClientConnection, message: JsonObject | str) -> JsonObject:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def test_install_action_protocol_errors_and_pushes_only_to_subscribers(base_url: str) -> None:
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    async with (
        httpx.AsyncClient(base_url=base_url) as http,
        connect(ws_url) as listener,
        connect(ws_url) as client,
    ):
        assert (await ask(listener, {"type": "subscribe", "channels": ["downloads"]}))["type"] == "subscribed"
        bad_messages: list[JsonObject | str] = [
            "not json",
            "[1]",
            {"type": "dance"},
            {"type": "subscribe", "channels": "downloads"},
        ]
        for bad in bad_messages:
            error = await ask(client, bad)
            assert error["type"] == "error" and error["data"]["code"] == "INVALID_REQUEST", error
        missing = await ask(
            client, {"type": "action", "action": "install_preset", "data": {"preset_id": "NOPE"}}
        )
        assert missing["data"]["code"] == "PRESET_NOT_FOUND"
        # The preset id beside the action (the product's architecture document's shape) reads too.
        beside = await ask(client, {"type": "action", "action": "install_preset", "preset_id": "NOPE2"})
        assert (beside["data"]["code"], beside["data"]["details"]) == (
            "PRESET_NOT_FOUND",
            {"preset_id": "NOPE2"},
        )
        other = await ask(client, {"type": "action", "action": "reboot", "data": {}})
        assert other["data"]["code"] == "INVALID_REQUEST"

        result = await ask(
            client, {"type": "action", "action": "install_preset", "data": {"preset_id": "WS_ONE"}}
        )
        assert result["type"] == "action_result" and result["action"] == "install_preset"
        download_id = result["data"]["download_id"]
        assert result["data"]["status"] == "installing" and download_id.startswith("dl_")
        created = json.loads(await asyncio.wait_for(listener.recv(), 10))
        assert created["type"] == "download_progress" and created["data"]["download_id"] == download_id

        assert (await http.post(f"/api/downloads/{download_id}/pause")).status_code == 200
        paused = json.loads(await asyncio.wait_for(listener.recv(), 10))
        assert paused == {
            "type": "download_progress",
            "data": {
                "download_id": download_id,
                "preset_id": "WS_ONE",
                "progress": 0.0,
                "current_file": None,
                "speed": "0 B/s",
                "eta": "unknown",
                "files": {"total": 1, "completed": 0},
            },
        }
        # The client never subscribed: its next message answers this one, nothing was pushed before.
        assert (await ask(client, {"type": "unsubscribe", "channels": ["queue"]}))["type"] == "unsubscribed"


async def test_system_status_is_pushed_while_subscribed(base_url: str) -> None:
    async with connect(base_url.replace("http://", "ws://") + "/ws") as ws:
        assert (await ask(ws, {"type": "subscribe", "channels": ["system"]}))["type"] == "subscribed"
        tick = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert tick["type"] == "system_status"
        assert set(tick["data"]) == {"cpu_usage", "memory_usage", "gpu_usage", "disk_usage"}
        assert all(isinstance(v, int) and 0 <= v <= 100 for v in tick["data"].values())
        await ws.send(json.dumps({"type": "unsubscribe", "channels": ["system"]}))
        # Ticks already queued may arrive before the answer; none after it.
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "unsubscribed":
            assert message["type"] == "system_status"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)


async def test_the_combined_listener_serves_the_profile_under_p_comfyui_docker(ctx: GatewayContext) -> None:
    profile = load_profile("comfyui-docker")
    assert profile is not None
    async with served(build_combined_app(ctx, [profile])) as url:
        base = f"{url}/p/comfyui-docker"
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{base}/health")
            assert health.json()["status"] == "healthy" and health.headers["X-API-Version"] == "1.0.0"
            missing = await http.get(f"{base}/api/presets/NOPE")
            assert (missing.status_code, missing.json()["error"]["code"]) == (404, "PRESET_NOT_FOUND")
            assert [p["id"] for p in (await http.get(f"{base}/api/presets")).json()["presets"]] == ["WS_ONE"]
        async with connect(base.replace("http://", "ws://") + "/ws") as ws:
            assert (await ask(ws, {"type": "subscribe", "channels": ["downloads"]}))["type"] == "subscribed"


def test_the_seeds_number_formats() -> None:
    assert [dl.format_speed(v) for v in (125_400_000, 2_000_000, 500_000, 12)] == [
        "125 MB/s",
        "2 MB/s",
        "500 KB/s",
        "12 B/s",
    ]
    assert [dl.format_eta(v) for v in (150, 45, 3900, 0, -1)] == ["2m 30s", "45s", "1h 5m", "0s", "unknown"]
    assert [cat.format_size(v) for v in (14_500_000_000, 4_800_000_000, 320_000_000, -1)] == [
        "14.5GB",
        "4.8GB",
        "320MB",
        "unknown",
    ]
    pull: JsonObject = {
        "metadata": {"name": "x", "labels": {dl.LABEL_DOWNLOAD_ID: "dl_123456"}},
        "spec": {"source": {"urls": [{}, {}]}},
        "status": {
            "phase": "Downloading",
            "progress": {
                "bytesDone": 452,
                "bytesTotal": 1000,
                "speedBytesPerSecond": 125_500_000,
                "etaSeconds": 150,
                "filesDone": 1,
                "filesTotal": -1,
            },
        },
    }
    row = dl.download_row(pull)
    assert (row["id"], row["progress"], row["speed_mbps"], row["eta_seconds"]) == (
        "dl_123456",
        45.2,
        125.5,
        150,
    )
    data = dl.progress_message(pull)["data"]
    assert (data["speed"], data["eta"], data["files"]) == ("126 MB/s", "2m 30s", {"total": 2, "completed": 1})
    assert [
        cat.safe_model_path(p) for p in ("checkpoints/a", "a", "../x/y", "/abs/x", "loras/./b", "x/.h")
    ] == [
        "checkpoints/a",
        None,
        None,
        None,
        "loras/b",
        None,
    ]


def test_only_real_transitions_are_announced() -> None:
    def pull(phase: str, done: int = 0) -> JsonObject:
        labels = {dl.LABEL_DOWNLOAD_ID: "dl_000001"}
        return {
            "metadata": {"name": "p", "labels": labels},
            "status": {"phase": phase, "progress": {"bytesDone": done}},
        }

    assert dl.events_for(None, pull("Completed")) == []  # listed after the fact: no news
    assert [m["type"] for m in dl.events_for(pull("Downloading"), pull("Completed"))] == ["download_complete"]
    assert [m["type"] for m in dl.events_for(pull("Downloading"), pull("Failed"))] == ["error"]
    assert dl.events_for(pull("Downloading", 5), pull("Downloading", 5)) == []
    assert [m["type"] for m in dl.events_for(pull("Downloading", 5), pull("Downloading", 9))] == [
        "download_progress"
    ]
    assert dl.events_for(pull("Completed"), pull("Completed")) == []
