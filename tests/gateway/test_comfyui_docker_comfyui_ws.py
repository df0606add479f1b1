"""The dashboard WebSocket's ``queue`` and ``workflows`` channels, fed from GenerationJob changes on
the event bus, each message only to the clients subscribed to its channel.

Real devcluster, real uvicorn, real WebSocket clients; no operator: the test plays its part by
patching the executions' status (the bus carries those changes as it carries the operator's).
Also the pure rules deciding which change is news (``comfyui.workflow_events``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.comfyui_docker import comfyui as cf
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.profiles.comfyui_docker.workflows import txt2img_graph
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import served

JsonObject = dict[str, Any]
GJ = resource_for("GenerationJob")
GRAPH = txt2img_graph("tiny.safetensors", 64, 2, 7.0)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def base_url(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> AsyncIterator[str]:
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    settings = Settings(namespace=namespace, volumes=volumes)
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    async with served(create_app(ctx)) as url:
        yield url


async def receive(ws: ClientConnection) -> JsonObject:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def subscribe(ws: ClientConnection, channels: list[str]) -> None:
    await ws.send(json.dumps({"type": "subscribe", "channels": channels}))
    assert (await receive(ws))["type"] == "subscribed"


async def execute(http: httpx.AsyncClient) -> str:
    answer = await http.post("/api/comfyui/execute", json={"workflow": GRAPH})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["prompt_id"])


def queue_data(pending: int, running: int, current: str | None) -> JsonObject:
    task = {"prompt_id": current, "type": "image_generation"} if current else None
    return {
        "type": "queue_update",
        "data": {"queue_pending": pending, "queue_running": running, "current_task": task},
    }


def progress(percent: int, step: int, node: str) -> JsonObject:
    return {"step": step, "totalSteps": 2, "percent": percent, "currentNode": node, "lastUpdatedTime": now()}


async def test_queue_and_workflow_messages_reach_only_their_subscribers(
    base_url: str, store: CrStore
) -> None:
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    async with (
        httpx.AsyncClient(base_url=base_url) as http,
        connect(ws_url) as queue_client,
        connect(ws_url) as flow_client,
        connect(ws_url) as idle,
    ):
        await subscribe(queue_client, ["queue"])
        await subscribe(flow_client, ["workflows"])
        await subscribe(idle, ["downloads", "system"])
        await idle.send(json.dumps({"type": "unsubscribe", "channels": ["system"]}))
        while (await receive(idle))["type"] != "unsubscribed":
            pass  # system ticks sent before the answer

        done = await execute(http)
        assert await receive(queue_client) == queue_data(1, 0, None)
        name = cf.job_name(done)

        await store.patch_status(
            GJ,
            name,
            {"phase": "Processing", "queuePosition": 0, "startedAt": now(), "progress": progress(50, 1, "3")},
        )
        assert await receive(queue_client) == queue_data(0, 1, done)
        assert await receive(flow_client) == {
            "type": "workflow_progress",
            "data": {
                "prompt_id": done,
                "node": "3",
                "value": 0.5,
                "max": 1.0,
                "type": "executing",
                "step": 1,
                "total_steps": 2,
                "percent": 50,
            },
        }
        outputs = [{"index": 0, "path": "generations/x/ComfyUI_00001_.png", "width": 64, "height": 64}]
        await store.patch_status(
            GJ,
            name,
            {
                "phase": "Completed",
                "completedAt": now(),
                "outputs": outputs,
                "progress": progress(100, 2, "9"),
            },
        )
        assert await receive(queue_client) == queue_data(0, 0, None)
        final = await receive(flow_client)
        assert (final["type"], final["data"]["value"], final["data"]["node"]) == (
            "workflow_progress",
            1.0,
            "9",
        )
        assert await receive(flow_client) == {
            "type": "workflow_output",
            "data": {
                "prompt_id": done,
                "output": {
                    "images": [
                        {"filename": "ComfyUI_00001_.png", "subfolder": "generations/x", "type": "output"}
                    ]
                },
            },
        }

        failed = await execute(http)
        assert await receive(queue_client) == queue_data(1, 0, None)
        error = {"code": "INVALID_WORKFLOW", "message": "no output node"}
        await store.patch_status(
            GJ, cf.job_name(failed), {"phase": "Failed", "completedAt": now(), "error": error}
        )
        assert await receive(queue_client) == queue_data(0, 0, None)
        assert await receive(flow_client) == {
            "type": "error",
            "data": {
                "code": "EXECUTION_FAILED",
                "message": "no output node",
                "details": {"prompt_id": failed, "error": "INVALID_WORKFLOW"},
            },
        }

        # Clearing the queue is a queue change too.
        cleared = await execute(http)
        assert await receive(queue_client) == queue_data(1, 0, None)
        assert (await http.delete("/api/comfyui/queue")).json()["cleared"] == 1
        assert await receive(queue_client) == queue_data(0, 0, None)
        assert cleared

        # Nothing was pushed to the others: their next message answers this one.
        for ws, channels in ((queue_client, ["queue"]), (flow_client, ["workflows"]), (idle, ["downloads"])):
            await ws.send(json.dumps({"type": "unsubscribe", "channels": channels}))
            assert await receive(ws) == {"type": "unsubscribed", "channels": []}


def test_only_news_of_this_profiles_executions_is_announced(tmp_path: Path) -> None:
    def job(phase: str, percent: int = -1, profile: str = "comfyui-docker") -> JsonObject:
        labels = {"kubepilot.io/profile": profile, cf.LABEL_PROMPT_ID: "p"}
        state: JsonObject = {"phase": phase, "outputs": [{"index": 0, "path": "a/b.png"}]}
        if percent >= 0:
            state["progress"] = {"percent": percent}
        return {
            "metadata": {"name": "comfyui-p", "labels": labels},
            "spec": {"type": "workflow"},
            "status": state,
        }

    def types(old: JsonObject | None, new: JsonObject) -> list[str]:
        return [m["type"] for m in cf.workflow_events(old, new, tmp_path)]

    assert types(None, job("Completed")) == []  # listed after the fact
    assert types(job("Processing", 10), job("Processing", 10)) == []
    assert types(job("Processing", 10), job("Processing", 20)) == ["workflow_progress"]
    assert types(job("Processing", 20), job("Completed")) == ["workflow_output"]
    assert types(job("Processing"), job("Cancelled")) == []
    assert types(job("Processing", 1, "other"), job("Processing", 2, "other")) == []
    assert cf.relative_output(str(tmp_path / "x" / "y.png"), tmp_path) == "x/y.png"
