"""A OneTrainer session end to end: POST /api/training/start → TrainingRun → the real operator → a
trainer pod running our OneTrainer adapter and shim → progress in the status → ``training_state``
over /ws → save and a custom sample acknowledged in ``status.actions`` → stop → Stopped → a new
session starts.

Everything is real except OneTrainer itself, which needs a GPU and is not on PyPI: the profile's
``runEnv`` setting (as an admin sets ``ONETRAINER_DIR`` for the image) points the adapter at the
workers' stand-in checkout (``tests/workers/fixtures/onetrainer/fake_root``), whose
``GenericTrainer`` replays OneTrainer's recorded output and obeys ``TrainCommands`` between steps.

The second test runs a session with ``backend: builtin`` (the dev stack's and CI's case: no
OneTrainer image): the config's LoRA settings train for real on the built-in trainer, on the
tiny Stable Diffusion model on the CPU, with nothing standing in.

The third runs the seed's own Python example (``requests`` + ``websockets``, verbatim but for the
host and the config path) against a built-in session, then restarts the gateway mid-session: the
first gateway (its informer cache, event bus and app) is stopped, a new one starts on the same
port, finds the session in the cluster, and a reconnecting WebSocket client gets a ``connected``
snapshot of the same run before further steps arrive.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from kubepilot_gateway.bus import EventBus
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.onetrainer import create_app
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.settings import Settings
from tests.gateway.conftest import FAST_WATCH, stack_settings
from tests.gateway.test_onetrainer_api import SEED_PYTHON
from tests.operator.harness import TINY_MODEL, OperatorProcess, Storage
from tests.workers._trainer_tiny import make_dataset

pytestmark = pytest.mark.slow

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")
FIRST, SECOND = "onetrainer-1", "onetrainer-2"
FIXTURES = Path(__file__).resolve().parents[1] / "workers" / "fixtures" / "onetrainer"


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> GatewayContext:
    training = {
        "backend": "onetrainer",
        "gpuCount": 0,
        "runEnv": {
            "ONETRAINER_DIR": str(FIXTURES / "fake_root"),
            "ONETRAINER_PYTHON": sys.executable,
            "FAKE_ONETRAINER_FIXTURE": str(FIXTURES / "sdxl_lora_run.log"),
            "FAKE_HOLD_SECONDS": "120",
            "KUBEPILOT_STOP_GRACE_SECONDS": "10",
        },
    }
    settings = stack_settings(namespace, storage, profileSettings={"onetrainer": {"training": training}})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@contextlib.asynccontextmanager
async def serving(ctx: GatewayContext) -> AsyncIterator[str]:
    """The profile on a real uvicorn (the WebSocket needs one): host and port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture
async def base_url(ctx: GatewayContext) -> AsyncIterator[str]:
    async with serving(ctx) as url:
        yield url


async def wait_run(
    ctx: GatewayContext, name: str, check: Callable[[JsonObject], bool], what: str, within: float = 60
) -> JsonObject:
    """Until the cached run passes ``check``, woken by the watch's events."""
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


def done(*names: str) -> Callable[[JsonObject], bool]:
    def check(run: JsonObject) -> bool:
        actions = status(run).get("actions") or {}
        return all((actions.get(name) or {}).get("state") == "Done" for name in names)

    return check


async def next_state(
    ws: Any,
    check: Callable[[JsonObject], bool],
    what: str,
    others: list[JsonObject] | None = None,
    within: float = 60,
) -> list[JsonObject]:
    """``training_state`` messages until one's data passes ``check`` (``sample_*`` ones go to ``others``)."""
    seen: list[JsonObject] = []
    deadline = time.monotonic() + within
    while not seen or not check(seen[-1]):
        left = deadline - time.monotonic()
        assert left > 0, f"no training_state with {what}; got {seen[-3:]}"
        message = json.loads(await asyncio.wait_for(ws.recv(), left))
        if message["type"].startswith("sample_") and others is not None:
            others.append(message)
            continue
        assert message["type"] == "training_state", message
        seen.append(message["data"])
    return seen


async def test_a_session_trains_reports_over_the_websocket_takes_save_and_sample_and_stops(
    operator: OperatorProcess, base_url: str, ctx: GatewayContext, storage: Storage
) -> None:
    tag = uuid.uuid4().hex[:8]
    (storage.models / f"ot-base-{tag}").mkdir()
    dataset = storage.datasets / f"ot-cats-{tag}"
    dataset.mkdir()
    (dataset / "cat.png").write_bytes(b"png")
    (dataset / "cat.txt").write_text("a cat")
    config = {
        "model_type": "STABLE_DIFFUSION_XL_10_BASE",
        "training_method": "LORA",
        "base_model_name": f"ot-base-{tag}",
        "concepts": [{"name": "cats", "path": str(dataset)}],
        "epochs": 2,
        "batch_size": 2,
        "output_model_destination": f"/anywhere/ot-{tag}.safetensors",
    }
    config_file = storage.outputs / f"ot-{tag}.json"
    config_file.write_text(json.dumps(config))

    async with (
        httpx.AsyncClient(base_url=f"http://{base_url}") as http,
        websockets.connect(f"ws://{base_url}/ws") as ws,
    ):
        connected = json.loads(await ws.recv())
        assert connected["type"] == "connected" and connected["data"]["status"] == "idle"

        started = await http.post("/api/training/start", json={"config_path": str(config_file)})
        assert started.json() == {"success": True, "message": "Training started"}

        def at_hold(data: JsonObject) -> bool:
            return (data.get("progress") or {}).get("global_step") == 5

        states = await next_state(ws, at_hold, "global step 5 (the fixture holds there)")
        assert states[0]["is_training"] is True and states[0]["status"] == "running"
        assert states[-1]["progress"] == {"epoch": 1, "epoch_step": 1, "epoch_sample": 2, "global_step": 5}
        assert (states[-1]["max_step"], states[-1]["max_epoch"]) == (8, 2)
        busy = await http.post("/api/training/start", json={"config_dict": config})
        assert (busy.status_code, busy.json()) == (400, {"detail": "Training already in progress"})
        assert (await http.get("/api/training/progress")).json()["progress"]["global_step"] == 5

        assert (await http.post("/api/training/save")).json()["message"] == "Save command sent"
        custom = {"prompt": "a red car", "seed": 3, "steps": 10}
        sample = await http.post("/api/samples/custom", json=custom)
        assert sample.json()["message"] == "Custom sample generation requested"
        run = await wait_run(ctx, FIRST, done("save", "sample"), "save and sample acknowledged")
        actions = status(run)["actions"]
        assert actions["save"]["observedNonce"] == actions["save"]["requestedNonce"]
        workspace = storage.outputs / f"ot-{tag}" / "workspace"
        await wait_run(ctx, FIRST, lambda r: bool(status(r).get("checkpoints")), "the saved checkpoint")
        assert any(workspace.glob("save/*-save-5-1-1.safetensors")), "OneTrainer saved at step 5"
        assert any(workspace.glob("samples/custom/*-3-training-sample-5-1-1.png")), "the custom sample"
        listed = (await http.get("/api/samples/list")).json()["samples"]
        [custom_sample] = [s for s in listed if s["metadata"]["kind"] == "custom"]
        assert custom_sample["metadata"]["global_step"] == 5
        assert (await http.get(f"/api/samples/{custom_sample['id']}")).json() == custom_sample

        # The default prompts are the same action without parameters: asked once the custom one is done.
        asked = dict(status(run)["actions"]["sample"])
        default = await http.post("/api/samples/default")
        assert default.json()["message"] == "Default sample generation requested"

        def default_done(r: JsonObject) -> bool:
            action = status(r)["actions"]["sample"]
            return bool(action["requestedNonce"] != asked["requestedNonce"] and action["state"] == "Done")

        await wait_run(ctx, FIRST, default_done, "the default sample acknowledged")
        # The ack means OneTrainer took the command; the image follows at its next step (files have
        # no watch: the listing is read again until it shows).
        deadline = time.monotonic() + 10
        while True:
            listed = (await http.get("/api/samples/latest", params={"count": 5})).json()["samples"]
            if any(s["metadata"].get("prompt") == "a photo of demo" for s in listed):
                break
            assert time.monotonic() < deadline, f"no default sample listed: {listed}"
            await asyncio.sleep(0.1)

        assert (await http.post("/api/training/stop")).json() == {
            "success": True,
            "message": "Stop command sent",
        }
        samples_pushed: list[JsonObject] = []
        states = await next_state(ws, lambda d: d["is_training"] is False, "the session over", samples_pushed)
        assert {"type": "sample_custom", "data": {"sample_count": 1}} in samples_pushed, samples_pushed
        assert {"type": "sample_default", "data": {"sample_count": 1}} in samples_pushed, samples_pushed
        assert states[-1]["status"] == "idle" and states[-1]["error"] is None
        run = await wait_run(ctx, FIRST, lambda r: status(r).get("phase") == "Stopped", "Stopped")
        refused = await http.post("/api/training/save")
        assert (refused.status_code, refused.json()) == (400, {"detail": "No training in progress"})

        again = await http.post("/api/training/start", json={"config_dict": config})
        assert again.json() == {"success": True, "message": "Training started"}
        await next_state(ws, lambda d: d["is_training"] is True, "the second session", [])
        await wait_run(ctx, SECOND, lambda r: status(r).get("phase") == "Running", "the second run Running")
        assert (await http.post("/api/training/stop")).status_code == 200
        await wait_run(ctx, SECOND, lambda r: status(r).get("phase") == "Stopped", "the second run Stopped")


@pytest.fixture
def builtin_ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> GatewayContext:
    training = {"backend": "builtin", "gpuCount": 0}
    settings = stack_settings(namespace, storage, profileSettings={"onetrainer": {"training": training}})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


async def test_a_config_trains_on_the_built_in_trainer_reports_takes_actions_and_stops(
    operator: OperatorProcess, builtin_ctx: GatewayContext, storage: Storage, tiny_sd: Path
) -> None:
    ctx = builtin_ctx
    tag = uuid.uuid4().hex[:8]
    make_dataset(storage.datasets / f"ot-pets-{tag}", {"2_cat": [(64, 64), (64, 64)]})
    config = {
        "model_type": "STABLE_DIFFUSION_15",
        "training_method": "LORA",
        "base_model_name": TINY_MODEL,
        "concepts": [{"name": "cat", "path": str(storage.datasets / f"ot-pets-{tag}" / "2_cat")}],
        "epochs": 5000,
        "batch_size": 1,
        "resolution": "64",
        "lora_rank": 4,
        "lora_alpha": 4,
        "train_dtype": "FLOAT_32",
        "samples": [{"prompt": "a cat"}],
        "optimizer": {"optimizer": "ADAMW"},
        "output_model_destination": f"ot-builtin-{tag}.safetensors",
    }
    async with (
        serving(ctx) as base_url,
        httpx.AsyncClient(base_url=f"http://{base_url}") as http,
        websockets.connect(f"ws://{base_url}/ws") as ws,
    ):
        assert json.loads(await ws.recv())["type"] == "connected"
        started = await http.post("/api/training/start", json={"config_dict": config})
        assert started.json() == {"success": True, "message": "Training started"}
        run = ctx.cache.get(TR, FIRST, ctx.store.namespace)
        assert run is not None and run["spec"]["trainer"] == "kubepilot-lora"
        assert run["metadata"]["annotations"]["kubepilot.io/onetrainer-backend"] == "builtin"

        def stepping(data: JsonObject) -> bool:
            return ((data.get("progress") or {}).get("global_step") or 0) >= 3

        states = await next_state(ws, stepping, "global step 3 on the built-in trainer", [], within=120)
        # One concept folder of 2 images, batch 1: 2 steps an epoch, 5000 epochs.
        assert (states[-1]["max_step"], states[-1]["max_epoch"]) == (10000, 5000)
        progress = states[-1]["progress"]
        assert progress["epoch"] == progress["global_step"] // 2
        assert progress["epoch_step"] == progress["global_step"] % 2 == progress["epoch_sample"]
        # The built-in trainer reports its own process's figures: OneTrainer's process view shows them.
        processes = (await http.get("/api/system/processes")).json()
        assert processes["pid"] > 0 and processes["memory_mb"] > 10 and processes["num_threads"] >= 1

        assert (await http.post("/api/training/save")).json()["message"] == "Save command sent"
        assert (await http.post("/api/training/backup")).json()["message"] == "Backup command sent"
        custom = {"prompt": "a red car", "seed": 3, "steps": 2, "width": 64, "height": 64}
        sample = await http.post("/api/samples/custom", json=custom)
        assert sample.json()["message"] == "Custom sample generation requested"
        run = await wait_run(ctx, FIRST, done("save", "backup", "sample"), "save, backup, sample", 120)
        actions = status(run)["actions"]
        assert actions["save"]["message"].startswith("checkpoint at step"), actions
        assert actions["sample"]["message"].startswith("1 sample(s)"), actions
        output = storage.outputs / f"ot-builtin-{tag}"
        assert any(output.glob("checkpoints/step-*/*.safetensors")) and any(output.glob("backups/step-*"))
        listed = (await http.get("/api/samples/list")).json()["samples"]
        assert [s["metadata"]["prompt"] for s in listed] == ["a red car"]
        metadata = listed[0]["metadata"]
        assert metadata["kind"] == "custom" and (metadata["steps"], metadata["seed"], metadata["width"]) == (
            2,
            3,
            64,
        )

        assert (await http.post("/api/training/stop")).json()["message"] == "Stop command sent"
        pushed: list[JsonObject] = []
        states = await next_state(ws, lambda d: d["is_training"] is False, "the session over", pushed, 120)
        assert {"type": "sample_custom", "data": {"sample_count": 1}} in pushed, pushed
        custom_progress = [m["data"] for m in pushed if m["type"] == "sample_custom_progress"]
        assert custom_progress == [{"current": 0, "total": 1}, {"current": 1, "total": 1}], pushed
        assert states[-1]["status"] == "idle" and states[-1]["error"] is None
        await wait_run(ctx, FIRST, lambda r: status(r).get("phase") == "Stopped", "Stopped", 120)
        after = (await http.get("/api/training/status")).json()
        assert (after["is_training"], after["status"]) == (False, "idle")
        refused = await http.post("/api/training/save")
        assert (refused.status_code, refused.json()) == (400, {"detail": "No training in progress"})


# -- the seed's own Python client, and a gateway restart mid-session ------------------------------


@contextlib.asynccontextmanager
async def gateway(kube: KubeClient, settings: Settings, port: int = 0) -> AsyncIterator[str]:
    """One gateway "process": its own informer cache, event bus, store and app on a real uvicorn
    (``port`` 0: a free one). Leaving the block stops all of it, as a restart does."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    async with ClusterCache(kube, namespace=settings.namespace, settings=FAST_WATCH, bus=EventBus()) as cache:
        await cache.wait_synced()
        store = CrStore(kube, namespace=settings.namespace, observer=cache, conflict_retries=3)
        ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
        server = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield f"127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 15)
            sock.close()


async def printed(stream: asyncio.StreamReader, within: float) -> str:
    line = await asyncio.wait_for(stream.readline(), within)
    assert line, "the seed's example ended early"
    return line.decode().rstrip("\n")


def received(line: str) -> JsonObject:
    """A ``Received: {...}`` line the seed's example prints (a Python dict's repr) as the message."""
    assert line.startswith("Received: "), line
    message = ast.literal_eval(line.removeprefix("Received: "))
    assert isinstance(message, dict), line
    return message


async def connect_again(url: str, within: float = 30) -> Any:
    """What a client does after its gateway went away: connect again until one answers."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await websockets.connect(url)
        except (OSError, websockets.InvalidHandshake):
            assert time.monotonic() < deadline, f"no gateway answered at {url}"
            await asyncio.sleep(0.2)


def stepped(at_least: int) -> Callable[[JsonObject], bool]:
    return lambda data: ((data.get("progress") or {}).get("global_step") or 0) >= at_least


async def test_the_seeds_python_example_drives_a_real_session_and_a_restarted_gateway_keeps_it(
    operator: OperatorProcess, kube: KubeClient, namespace: str, storage: Storage, tiny_sd: Path
) -> None:
    """The seed's Python example, verbatim but for the host and the config path, against the profile
    on uvicorn with the real operator: its status, its start (``config_path``, a file on the outputs
    volume) and its WebSocket monitor printing ``training_state`` as the built-in trainer steps on
    ``tiny_sd``. Then the gateway is stopped (cache, bus and app gone) and a new one started on the
    same port: the session is found from the cluster, a reconnecting client gets a ``connected``
    snapshot of the same run, further steps arrive, and the new gateway stops it."""
    tag = uuid.uuid4().hex[:8]
    make_dataset(storage.datasets / f"ot-seed-{tag}", {"1_dog": [(64, 64), (64, 64)]})
    config = {
        "model_type": "STABLE_DIFFUSION_15",
        "training_method": "LORA",
        "base_model_name": TINY_MODEL,
        "concepts": [{"name": "dog", "path": str(storage.datasets / f"ot-seed-{tag}" / "1_dog")}],
        "epochs": 5000,
        "batch_size": 1,
        "resolution": "64",
        "lora_rank": 4,
        "train_dtype": "FLOAT_32",
        "output_model_destination": f"ot-seed-{tag}.safetensors",
    }
    config_file = storage.outputs / f"ot-seed-{tag}" / "config.json"
    config_file.parent.mkdir()
    config_file.write_text(json.dumps(config))
    training = {"backend": "builtin", "gpuCount": 0}
    settings = stack_settings(namespace, storage, profileSettings={"onetrainer": {"training": training}})

    async with gateway(kube, settings) as address:
        port = int(address.rsplit(":", 1)[1])
        watcher = await websockets.connect(f"ws://{address}/ws")
        assert json.loads(await watcher.recv()) == {"type": "connected", "data": ot.IDLE}
        code = SEED_PYTHON.replace("localhost:8000", address).replace(
            "/path/to/config.json", str(config_file)
        )
        seed = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert seed.stdout is not None
        try:
            assert ast.literal_eval(await printed(seed.stdout, 60)) == ot.IDLE
            assert await printed(seed.stdout, 60) == "{'success': True, 'message': 'Training started'}"
            connected = received(await printed(seed.stdout, 60))
            assert connected["type"] == "connected" and connected["data"]["is_training"] is True
            states: list[JsonObject] = []
            while not states or not stepped(2)(states[-1]):
                message = received(await printed(seed.stdout, 120))
                if message["type"] == "training_state":
                    states.append(message["data"])
            assert states[-1]["status"] == "running" and states[-1]["max_step"] == 2 * 5000
            assert states[-1]["max_epoch"] == 5000 and states[-1]["error"] is None
        finally:
            if seed.returncode is None:
                seed.kill()
            await seed.wait()
        before = (await next_state(watcher, stepped(2), "step 2 on the first gateway", [], 120))[-1]
    # The gateway is gone: its WebSocket clients were closed, the session trains on.
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(watcher.recv(), 15)

    async with gateway(kube, settings, port) as address:
        assert address.endswith(f":{port}")
        reconnected = await connect_again(f"ws://{address}/ws")
        try:
            snapshot = json.loads(await asyncio.wait_for(reconnected.recv(), 30))
            assert snapshot["type"] == "connected", snapshot
            data = snapshot["data"]
            assert (data["is_training"], data["status"], data["error"]) == (True, "running", None)
            assert (data["max_step"], data["max_epoch"]) == (before["max_step"], before["max_epoch"])
            assert data["progress"]["global_step"] >= before["progress"]["global_step"], "the same run, on"
            async with httpx.AsyncClient(base_url=f"http://{address}") as http:
                assert (await http.get("/api/config/current")).json() == {"config": config}
                busy = await http.post("/api/training/start", json={"config_path": str(config_file)})
                assert (busy.status_code, busy.json()) == (400, {"detail": "Training already in progress"})
                later = data["progress"]["global_step"] + 1
                await next_state(reconnected, stepped(later), "a step pushed by the new gateway", [], 120)
                assert (await http.post("/api/training/stop")).json()["message"] == "Stop command sent"
                await next_state(reconnected, lambda d: d["is_training"] is False, "the stop", [], 120)
                assert (await http.get("/api/training/status")).json()["status"] == "idle"
        finally:
            await reconnected.close()
    run = await kube.request("GET", TR.path(namespace, FIRST))
    assert run["status"]["phase"] == "Stopped" and run["metadata"]["name"] == FIRST
    names = [item["metadata"]["name"] for item in (await kube.request("GET", TR.path(namespace)))["items"]]
    assert names == [FIRST], "one session throughout: the restart created nothing"
