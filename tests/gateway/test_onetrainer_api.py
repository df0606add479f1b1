"""The OneTrainer profile's training, sample-request and WebSocket endpoints against the devcluster.

No operator runs here: the tests check what the requests create and patch, and how a run's status
reads back. Where a test needs a status the operator would write (a phase, progress), it writes
it through the status subresource itself. The volumes are this test's own folders.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from kubepilot_api.constants import ACTION_ANNOTATION_PREFIX
from kubepilot_gateway.app.gateway import build_combined_app
from kubepilot_gateway.bus import EventBus
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles import load_profile
from kubepilot_gateway.profiles.onetrainer import PROFILE, create_app
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import eventually

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")
FIRST, SECOND = "onetrainer-1", "onetrainer-2"
SEED_PYTHON = """
import requests
import json

# Fetch training status
response = requests.get('http://localhost:8000/api/training/status')
status = response.json()
print(status)

# Start training
response = requests.post(
    'http://localhost:8000/api/training/start',
    json={'config_path': '/path/to/config.json'}
)
result = response.json()
print(result)

# WebSocket (using websockets library)
import asyncio
import websockets

async def monitor_training():
    async with websockets.connect('ws://localhost:8000/ws') as ws:
        async for message in ws:
            data = json.loads(message)
            print('Received:', data)

asyncio.run(monitor_training())
"""
"""The seed's own Python example, verbatim; the test changes only the host and the config path."""


class Vols:
    def __init__(self, root: Path) -> None:
        self.models, self.datasets, self.outputs = root / "models", root / "datasets", root / "outputs"
        for folder in (self.models, self.datasets, self.outputs):
            folder.mkdir(parents=True)
        (self.models / "sd15").mkdir()
        (self.models / "sd15" / "model_index.json").write_text("{}")
        (self.datasets / "cats").mkdir()
        (self.datasets / "cats" / "a.png").write_bytes(b"png")


@pytest.fixture
def vols(tmp_path: Path) -> Vols:
    return Vols(tmp_path)


def config(vols: Vols, **extra: Any) -> JsonObject:
    """A OneTrainer config the way its UI saves one (the keys we read, plus some we pass on)."""
    return {
        "model_type": "STABLE_DIFFUSION_15",
        "training_method": "LORA",
        "base_model_name": str(vols.models / "sd15"),
        "concepts": [{"name": "cats", "path": str(vols.datasets / "cats"), "enabled": True}],
        "epochs": 3,
        "batch_size": 2,
        "learning_rate": 0.0003,
        "output_model_destination": "models/cat_lora.safetensors",
        **extra,
    }


@pytest.fixture
def ctx(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, vols: Vols) -> GatewayContext:
    volumes = Volumes(models=str(vols.models), datasets=str(vols.datasets), outputs=str(vols.outputs))
    settings = Settings(
        namespace=namespace,
        volumes=volumes,
        profileSettings={
            "onetrainer": {
                "training": {"backend": "onetrainer", "gpuCount": 0, "runEnv": {"ONETRAINER_DIR": "/ot"}}
            }
        },
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://onetrainer.test") as session:
        yield session


@pytest.fixture
async def served(ctx: GatewayContext) -> AsyncIterator[int]:
    """The app on a real uvicorn (WebSockets and out-of-process clients need one); its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield int(sock.getsockname()[1])
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


def answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


async def test_without_a_session_status_is_idle_and_every_command_is_refused(
    http: httpx.AsyncClient,
) -> None:
    assert answer(await http.get("/api/training/status")) == (200, ot.IDLE)
    assert answer(await http.get("/api/training/progress")) == (
        200,
        {"is_training": False, "progress": None, "max_step": 0, "max_epoch": 0},
    )
    refused = (400, {"detail": "No training in progress"})
    for path in ("/api/training/stop", "/api/training/save", "/api/training/backup", "/api/samples/default"):
        assert answer(await http.post(path)) == refused, path
    assert answer(await http.post("/api/samples/custom", json={"prompt": "a cat"})) == refused


async def test_start_from_config_dict_creates_one_onetrainer_run_and_refuses_a_second(
    http: httpx.AsyncClient, ctx: GatewayContext, vols: Vols
) -> None:
    started = await http.post("/api/training/start", json={"config_dict": config(vols), "config_path": None})
    assert answer(started) == (200, {"success": True, "message": "Training started"})

    run = ctx.cache.get(TR, FIRST, ctx.store.namespace)
    assert run is not None
    spec = run["spec"]
    assert spec["trainer"] == "onetrainer"
    assert spec["baseModel"] == {"path": "sd15"} and spec["dataset"]["path"] == "cats"
    assert spec["output"] == {"name": "cat_lora"}, "the stem of output_model_destination"
    assert spec["tool"]["config"] == config(vols), "the config goes to the pod as written"
    assert spec["env"] == [{"name": "ONETRAINER_DIR", "value": "/ot"}], "runEnv reaches the trainer pod"
    assert run["metadata"]["labels"][ot.LABEL_TRAINER] == "onetrainer"

    state = (await http.get("/api/training/status")).json()
    assert state == {**ot.IDLE, "is_training": True, "status": "running", "max_epoch": 3}
    again = await http.post("/api/training/start", json={"config_dict": config(vols)})
    assert answer(again) == (400, {"detail": "Training already in progress"})
    assert [r["metadata"]["name"] for r in ctx.cache.list(TR, ctx.store.namespace)] == [FIRST]


async def test_two_concurrent_starts_make_one_run(
    http: httpx.AsyncClient, ctx: GatewayContext, vols: Vols
) -> None:
    body = {"config_dict": config(vols)}
    first, second = await asyncio.gather(
        http.post("/api/training/start", json=body), http.post("/api/training/start", json=body)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 400]
    runs = [await ctx.store.get(TR, FIRST)]
    assert runs[0]["spec"]["trainer"] == "onetrainer"
    await eventually(lambda: len(ctx.cache.list(TR, ctx.store.namespace)) == 1, what="one run only")


async def test_start_from_config_path_reads_the_file_on_a_volume_and_refuses_bad_input(
    http: httpx.AsyncClient, ctx: GatewayContext, vols: Vols
) -> None:
    async def start(body: Any) -> tuple[int, Any]:
        return answer(await http.post("/api/training/start", json=body))

    (vols.outputs / "broken.json").write_text("{not json")
    (vols.outputs / "hub.json").write_text(json.dumps(config(vols, base_model_name="org/model")))
    status, body = await start({"config_path": "/etc/passwd"})
    assert status == 400 and "/etc/passwd" in body["detail"]
    status, body = await start({"config_path": str(vols.outputs / ".." / "models" / "x.json")})
    assert status == 400 and "'..'" in body["detail"]
    assert (await start({"config_path": str(vols.outputs / "missing.json")}))[0] == 400
    assert (await start({"config_path": str(vols.outputs / "broken.json")}))[0] == 400
    status, body = await start({"config_path": str(vols.outputs / "hub.json")})
    assert status == 400 and "base_model_name" in body["detail"]
    assert await start({}) == (400, {"detail": "Either config_path or config_dict is required"})
    assert await start({"config_path": None, "config_dict": None}) == (400, {"detail": ot.CONFIG_REQUIRED})
    status, body = await start({"config_dict": "not an object"})
    assert status == 400 and isinstance(body["detail"], str), "validation errors are one line of text"
    status, body = await start({"config_dict": config(vols, concepts=[])})
    assert status == 400 and "concept" in body["detail"]
    assert ctx.cache.list(TR, ctx.store.namespace) == [], "nothing refused was created"

    (vols.outputs / "cats.json").write_text(json.dumps(config(vols, output_model_destination="")))
    assert await start({"config_path": str(vols.outputs / "cats.json")}) == (
        200,
        {"success": True, "message": "Training started"},
    )
    run = ctx.cache.get(TR, FIRST, ctx.store.namespace)
    assert run is not None and run["spec"]["output"] == {"name": FIRST}, "no usable output name: the run's"
    assert run["spec"]["tool"]["config"]["learning_rate"] == 0.0003


async def test_commands_request_nonce_actions_and_stop_sets_spec_stop(
    http: httpx.AsyncClient, ctx: GatewayContext, vols: Vols
) -> None:
    assert (await http.post("/api/training/start", json={"config_dict": config(vols)})).status_code == 200
    expected = {
        "/api/training/save": "Save command sent",
        "/api/training/backup": "Backup command sent",
        "/api/samples/default": "Default sample generation requested",
    }
    for path, message in expected.items():
        assert answer(await http.post(path)) == (200, {"success": True, "message": message})
    annotations = (await ctx.store.get(TR, FIRST))["metadata"]["annotations"]
    nonces = {
        name: annotations.get(f"{ACTION_ANNOTATION_PREFIX}{name}") for name in ("save", "backup", "sample")
    }
    assert all(nonces.values()), annotations
    assert f"{ACTION_ANNOTATION_PREFIX}sample-params" not in annotations, "the default sample has no params"

    custom = {"prompt": "a beautiful landscape", "negative_prompt": "blurry, low quality", "seed": 42}
    sent = await http.post("/api/samples/custom", json=custom | {"steps": 30, "cfg_scale": 7.5})
    assert answer(sent) == (200, {"success": True, "message": "Custom sample generation requested"})
    annotations = (await ctx.store.get(TR, FIRST))["metadata"]["annotations"]
    assert annotations[f"{ACTION_ANNOTATION_PREFIX}sample"] != nonces["sample"], "a new nonce asks again"
    params = json.loads(annotations[f"{ACTION_ANNOTATION_PREFIX}sample-params"])
    assert params == custom | {"steps": 30, "cfg_scale": 7.5, "width": 512, "height": 512}
    assert (await http.post("/api/samples/custom", json={"seed": 1})).status_code == 400

    assert answer(await http.post("/api/training/stop")) == (
        200,
        {"success": True, "message": "Stop command sent"},
    )
    assert (await ctx.store.get(TR, FIRST))["spec"]["stop"] is True
    # Stopped before the operator gave it a Job: the session is over, the commands are refused.
    assert (await http.post("/api/training/save")).json() == {"detail": "No training in progress"}


async def test_progress_and_status_render_the_runs_status_and_a_finished_run_makes_room(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore, vols: Vols
) -> None:
    assert (await http.post("/api/training/start", json={"config_dict": config(vols)})).status_code == 200
    progress = {"step": 11, "maxSteps": 30, "epoch": 1, "maxEpochs": 3, "epochStep": 1}
    await store.patch_status(
        TR,
        FIRST,
        {
            "phase": "Running",
            "jobName": "j",
            "progress": progress | {"lastUpdatedTime": "2026-01-01T00:00:00Z"},
        },
    )
    expected = {"epoch": 1, "epoch_step": 1, "epoch_sample": 2, "global_step": 11}
    assert (await http.get("/api/training/progress")).json() == {
        "is_training": True,
        "progress": expected,
        "max_step": 30,
        "max_epoch": 3,
    }
    await store.patch_status(
        TR, FIRST, {"phase": "Failed", "error": {"code": "TRAINING_FAILED", "message": "CUDA OOM"}}
    )
    assert (await http.get("/api/training/status")).json() == {
        "is_training": False,
        "status": "idle",
        "progress": expected,
        "max_step": 30,
        "max_epoch": 3,
        "error": "CUDA OOM",
    }
    assert (await http.post("/api/training/start", json={"config_dict": config(vols)})).status_code == 200
    assert ctx.cache.get(TR, SECOND, ctx.store.namespace) is not None
    assert (await http.get("/api/training/status")).json()["status"] == "running", "the newest run is current"


async def test_websocket_sends_connected_answers_ping_and_pushes_training_state_to_every_client(
    served: int, store: CrStore, http: httpx.AsyncClient, vols: Vols
) -> None:
    url = f"ws://127.0.0.1:{served}/ws"
    async with websockets.connect(url) as one, websockets.connect(url) as two:
        for client in (one, two):
            assert json.loads(await client.recv()) == {"type": "connected", "data": ot.IDLE}
        await one.send("ping")
        assert json.loads(await one.recv()) == {"type": "pong"}

        assert (await http.post("/api/training/start", json={"config_dict": config(vols)})).status_code == 200
        progress = {"step": 4, "maxSteps": 9, "epoch": 0, "maxEpochs": 3, "epochStep": 4}
        await store.patch_status(
            TR,
            FIRST,
            {"phase": "Running", "progress": progress | {"lastUpdatedTime": "2026-01-01T00:00:00Z"}},
        )
        for client in (one, two):
            seen: list[JsonObject] = []
            while not seen or seen[-1]["data"]["progress"] is None:
                message = json.loads(await asyncio.wait_for(client.recv(), 10))
                assert message["type"] == "training_state"
                seen.append(message)
            assert seen[0]["data"]["is_training"] is True
            assert seen[-1]["data"]["progress"] == {
                "epoch": 0,
                "epoch_step": 4,
                "epoch_sample": 8,
                "global_step": 4,
            }
            assert seen[-1]["data"]["max_step"] == 9

        # A sampling pass (as the built-in trainer reports one): progress, then the pass's result.
        sampling = {"kind": "default", "current": 2, "total": 4, "startedAt": "2026-01-01T00:00:01Z"}
        await store.patch_status(TR, FIRST, {"sampling": sampling})
        await store.patch_status(TR, FIRST, {"sampling": None})
        for client in (one, two):
            progress_message = json.loads(await asyncio.wait_for(client.recv(), 10))
            assert progress_message == {"type": "sample_default_progress", "data": {"current": 2, "total": 4}}
            assert json.loads(await asyncio.wait_for(client.recv(), 10)) == {
                "type": "sample_default",
                "data": {"sample_count": 2},
            }


async def test_the_seeds_python_example_runs_against_the_profile(
    served: int, ctx: GatewayContext, vols: Vols
) -> None:
    (vols.outputs / "config.json").write_text(json.dumps(config(vols)))
    code = SEED_PYTHON.replace("localhost:8000", f"127.0.0.1:{served}").replace(
        "/path/to/config.json", str(vols.outputs / "config.json")
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        lines = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode() for _ in range(3)]
    finally:
        process.kill()
        await process.wait()
    assert lines[0].startswith("{'is_training': False, 'status': 'idle'")
    assert lines[1].strip() == "{'success': True, 'message': 'Training started'}"
    assert lines[2].startswith("Received: {'type': 'connected', 'data': {'is_training': True")
    assert ctx.cache.get(TR, FIRST, ctx.store.namespace) is not None


SEED_CURL = [
    "curl http://localhost:8000/api/training/status",
    "curl -X POST http://localhost:8000/api/training/start"
    ' -H "Content-Type: application/json" -d \'{"config_path": "/path/to/config.json"}\'',
    "curl -X POST http://localhost:8000/api/training/stop",
    "curl http://localhost:8000/api/system/info",
]
"""The seed's cURL examples, one command each (the seed wraps the start over three lines)."""

SEED_JAVASCRIPT = """
// Fetch training status
const response = await fetch('http://localhost:8000/api/training/status');
const status = await response.json();
console.log(status);

// Start training
await fetch('http://localhost:8000/api/training/start', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    config_path: '/path/to/config.json'
  })
});

// WebSocket connection
const ws = new WebSocket('ws://localhost:8000/ws');
ws.onmessage = (event) => {
  const data = JSON.parse(event.data);
  console.log('Received:', data);
};
"""
"""The seed's JavaScript example, verbatim (top-level ``await``: run as an ES module). Node 20 has
``fetch``; its ``WebSocket`` needs ``--experimental-websocket`` (built in from Node 22)."""


async def run_client(argv: list[str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_seeds_curl_and_javascript_examples_run_against_the_profile(
    served: int, ctx: GatewayContext, store: CrStore, vols: Vols
) -> None:
    (vols.outputs / "config.json").write_text(json.dumps(config(vols)))

    def adapt(text: str) -> str:
        return text.replace("localhost:8000", f"127.0.0.1:{served}").replace(
            "/path/to/config.json", str(vols.outputs / "config.json")
        )

    outputs = [await run_client(["bash", "-c", adapt(command)]) for command in SEED_CURL]
    assert json.loads(outputs[0]) == ot.IDLE
    assert json.loads(outputs[1]) == {"success": True, "message": "Training started"}
    assert json.loads(outputs[2]) == {"success": True, "message": "Stop command sent"}
    assert "os" in json.loads(outputs[3]), "the seed's system info call answers its shape"
    run = ctx.cache.get(TR, FIRST, ctx.store.namespace)
    assert run is not None and run["spec"]["stop"] is True
    await store.patch_status(TR, FIRST, {"phase": "Stopped"})

    argv = ["node", "--experimental-websocket", "--input-type=module", "-e", adapt(SEED_JAVASCRIPT)]
    node = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert node.stdout is not None
    printed = ""
    try:
        while "Received:" not in printed or "}\n" not in printed.split("Received:", 1)[1]:
            line = await asyncio.wait_for(node.stdout.readline(), 30)
            assert line, f"the JavaScript example ended: {printed}"
            printed += line.decode()
    finally:
        node.kill()
        await node.wait()
    status, message = printed.split("Received:", 1)
    assert "is_training: false" in status and "status: 'idle'" in status
    assert "type: 'connected'" in message and "is_training: true" in message, "the started session"
    await eventually(lambda: ctx.cache.get(TR, SECOND, ctx.store.namespace) is not None, what="the JS start")

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served}") as browser:
        preflight = await browser.options(
            "/api/training/start",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"


async def test_a_restarted_gateway_finds_the_same_session_from_the_cluster(
    http: httpx.AsyncClient, ctx: GatewayContext, kube: KubeClient, store: CrStore, vols: Vols
) -> None:
    """A second gateway (fresh cache, fresh app: what a restart or another replica has) sees the
    running session, refuses a second start and takes its commands."""
    assert (await http.post("/api/training/start", json={"config_dict": config(vols)})).status_code == 200
    progress = {"step": 2, "maxSteps": 9, "epoch": 0, "maxEpochs": 3, "epochStep": 2}
    await store.patch_status(
        TR, FIRST, {"phase": "Running", "progress": progress | {"lastUpdatedTime": "2026-01-01T00:00:00Z"}}
    )
    before = (await http.get("/api/training/status")).json()
    fresh = ClusterCache(kube, namespace=ctx.store.namespace, settings=ctx.settings.watch, bus=EventBus())
    async with fresh:
        await fresh.wait_synced()
        other_store = CrStore(kube, namespace=ctx.store.namespace, observer=fresh)
        other = GatewayContext(
            settings=ctx.settings, client=kube, cache=fresh, store=other_store, bus=fresh.bus
        )
        transport = httpx.ASGITransport(app=create_app(other))
        async with httpx.AsyncClient(transport=transport, base_url="http://restarted.test") as restarted:
            assert (await restarted.get("/api/training/status")).json() == before
            assert before["is_training"] is True and before["progress"]["global_step"] == 2
            refused = await restarted.post("/api/training/start", json={"config_dict": config(vols)})
            assert refused.json() == {"detail": "Training already in progress"}
            assert (await restarted.post("/api/training/save")).status_code == 200


async def test_the_combined_listener_serves_the_profile_and_its_websocket_under_p_onetrainer(
    ctx: GatewayContext,
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = build_combined_app(ctx, [load_profile("onetrainer") or PROFILE])
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        base = f"127.0.0.1:{sock.getsockname()[1]}/p/onetrainer"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{base}/api/training/status")).json() == ot.IDLE
            missing = await client.get(f"http://{base}/api/samples/nope")
            assert (missing.status_code, missing.json()) == (404, {"detail": "Sample not found: nope"})
        async with websockets.connect(f"ws://{base}/ws") as ws:
            assert json.loads(await ws.recv()) == {"type": "connected", "data": ot.IDLE}
            await ws.send("ping")
            assert json.loads(await ws.recv()) == {"type": "pong"}
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
