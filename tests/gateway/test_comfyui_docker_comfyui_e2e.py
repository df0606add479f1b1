"""A standard ComfyUI txt2img graph executed end to end through the dashboard without ComfyUI:
``POST /api/comfyui/execute`` → a GenerationJob of type ``workflow`` → the real operator → a
one-shot diffusers generator pod (a local process) translating the graph on the tiny Stable
Diffusion model → ``queue_update``, ``workflow_progress`` and ``workflow_output`` on a subscribed
WebSocket → the history entry naming the image, which is on the outputs volume.

Nothing is mocked: devcluster, operator, generator, the tiny model (``tiny_sd``), uvicorn and the
WebSocket are real and run on the CPU. The graph's ``ckpt_name`` is relative to the models
volume's ``checkpoints/`` folder, as in ComfyUI, so the test links the tiny model folder there
under a name of its own for its duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.profiles.comfyui_docker.workflows import txt2img_graph
from tests.operator.harness import OperatorProcess, Storage

pytestmark = pytest.mark.slow

JsonObject = dict[str, Any]


@pytest.fixture
def checkpoint(tiny_sd: Path, storage: Storage) -> Iterator[str]:
    """The tiny model as ``checkpoints/<unique name>`` (a link, removed afterwards); its ckpt_name."""
    name = f"tiny-e2e-{uuid.uuid4().hex[:8]}"
    folder = storage.models / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / name
    link.symlink_to(os.path.relpath(tiny_sd, folder), target_is_directory=True)
    try:
        yield name
    finally:
        link.unlink()


@pytest.fixture
async def base_url(stack_ctx: GatewayContext) -> AsyncIterator[str]:
    """The dashboard on a real uvicorn (WebSockets need a server); its http:// base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(create_app(stack_ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 10)
        sock.close()


async def test_a_standard_txt2img_graph_runs_on_the_diffusers_generator(
    operator: OperatorProcess, checkpoint: str, base_url: str, storage: Storage
) -> None:
    graph = txt2img_graph(checkpoint, 64, 2, 7.0)
    graph["9"]["inputs"]["filename_prefix"] = "e2e"
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        connect(base_url.replace("http://", "ws://") + "/ws") as ws,
    ):
        await ws.send(json.dumps({"type": "subscribe", "channels": ["queue", "workflows"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "subscribed"

        answer = await http.post("/api/comfyui/execute", json={"workflow": graph, "priority": 1})
        assert answer.status_code == 200, answer.text
        queued = answer.json()
        prompt_id = queued["prompt_id"]
        assert (queued["number"], queued["status"]) == (1, "queued")

        seen: list[JsonObject] = []
        async with asyncio.timeout(120):
            while not any(m["type"] in ("workflow_output", "error") for m in seen):
                seen.append(json.loads(await ws.recv()))
        types = [m["type"] for m in seen]
        assert "error" not in types, seen
        assert types.count("queue_update") >= 1 and "workflow_progress" in types, types
        assert {m["data"]["prompt_id"] for m in seen if m["type"] != "queue_update"} == {prompt_id}
        output = next(m for m in seen if m["type"] == "workflow_output")["data"]["output"]
        assert len(output["images"]) == 1
        image = output["images"][0]
        assert image["type"] == "output" and image["filename"].startswith("e2e")
        assert (storage.outputs / image["subfolder"] / image["filename"]).is_file()

        def last_queue() -> JsonObject:
            return dict(next(m for m in reversed(seen) if m["type"] == "queue_update")["data"])

        # The queue went from holding the job to empty (its last update may follow the output).
        empty = {"queue_pending": 0, "queue_running": 0, "current_task": None}
        assert seen[0] == {"type": "queue_update", "data": {**empty, "queue_pending": 1}}
        async with asyncio.timeout(30):
            while last_queue() != empty:
                seen.append(json.loads(await ws.recv()))

        history = (await http.get(f"/api/comfyui/history/{prompt_id}")).json()
        assert (history["status"], history["backend"]) == ("completed", "diffusers")
        assert history["outputs"] == output and history["started"] and history["completed"]
        assert (await http.get("/api/comfyui/queue")).json() == {"queue_running": [], "queue_pending": []}
