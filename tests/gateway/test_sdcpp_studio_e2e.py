"""sd.cpp Studio end to end: an A1111 client's request sequence → GenerationJob → the real operator →
a one-shot generator pod on the tiny Stable Diffusion model (CPU) → the image back as base64, and
the same image served byte-exact by the REST API from the outputs volume; then an img2img from an
uploaded image and an upscale of its result with a tiny upscaler; then a started model (a warm
generator service) taking queued jobs, with the WebSocket events of their life, the same seed's
pixels, and the cancel of a running and of a queued job. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from tests.gateway.conftest import stack_settings
from tests.gateway.test_sdcpp_studio_ws import next_of, serve
from tests.operator.harness import TINY_MODEL, OperatorProcess, Storage

pytestmark = pytest.mark.slow

GJ = resource_for("GenerationJob")


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    profile = {
        "models": [{"id": "tiny-sd", "name": "Tiny SD", "path": TINY_MODEL}],
        "syncTimeoutSeconds": 120,
    }
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sd.test", timeout=150) as session:
        yield session


async def test_an_a1111_client_generates_through_a_generation_job_and_the_rest_api_serves_it(
    operator: OperatorProcess,
    tiny_sd: Path,
    http: httpx.AsyncClient,
    cache: ClusterCache,
    namespace: str,
) -> None:
    # What a SillyTavern-style client sends: models, options (set model), then txt2img with no model.
    assert [m["title"] for m in (await http.get("/sdapi/v1/sd-models")).json()] == ["tiny-sd"]
    assert (await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-sd"})).status_code == 200
    body = {"prompt": "a cat", "negative_prompt": "", "width": 64, "height": 96, "steps": 2, "seed": 7}
    request = asyncio.create_task(http.post("/sdapi/v1/txt2img", json=body))
    seen: list[dict[str, Any]] = []
    while not request.done():  # progress polling while it runs, as the client does
        seen.append((await http.get("/sdapi/v1/progress")).json())
        await asyncio.sleep(0.2)
    answer = await request
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert any(p["state"]["job_count"] == 1 for p in seen)

    (encoded,) = result["images"]
    png = base64.b64decode(encoded)
    assert Image.open(io.BytesIO(png)).size == (64, 96)
    info = json.loads(result["info"])
    assert (info["all_seeds"], info["width"], info["height"], info["sd_model_name"]) == (
        [7],
        64,
        96,
        "tiny-sd",
    )
    assert result["parameters"]["steps"] == 2

    (job,) = cache.list(GJ, namespace)
    name = job["metadata"]["name"]
    assert job["status"]["phase"] == "Completed" and job["status"]["jobName"]  # a one-shot Job ran it
    rows = (await http.get("/api/generations")).json()
    assert [(row["id"], row["image_count"], row["size"]) for row in rows] == [(name, 1, "64x96")]
    (image,) = (await http.get(f"/api/generations/{name}/images")).json()
    assert (await http.get(f"/api/images/{image['id']}")).content == png
    queued = (await http.get(f"/api/queue/{name}")).json()
    assert (queued["status"], queued["progress"]) == ("completed", 1.0)
    assert (await http.get("/sdapi/v1/progress")).json()["state"]["job_count"] == 0


@pytest.fixture
async def upscaling(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    """The profile with a tiny 4x upscaler on the models volume, offered as "Tiny 4x" (a bare file
    name: the operator finds it in ``upscale_models/``)."""
    target = storage.models / "upscale_models" / "tiny-x4.safetensors"
    command = [sys.executable, "-m", "kubepilot_workers.tinymodels", "upscaler", str(target), "--scale", "4"]
    await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True, timeout=300)
    profile = {
        "models": [{"id": "tiny-sd", "path": TINY_MODEL}],
        "upscalers": [{"name": "Tiny 4x", "upscaler": "tiny-x4.safetensors", "scale": 4}],
        "inputsDir": f"sdcpp-studio/{namespace}/inputs",
        "syncTimeoutSeconds": 120,
    }
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sd.test", timeout=150) as session:
        yield session


async def test_img2img_then_an_upscale_of_its_image_run_through_the_operator(
    operator: OperatorProcess, tiny_sd: Path, upscaling: httpx.AsyncClient, storage: Storage, namespace: str
) -> None:
    init = io.BytesIO()
    Image.new("RGB", (50, 40), "green").save(init, format="JPEG")
    body = {
        "prompt": "a cat",
        "init_images": [base64.b64encode(init.getvalue()).decode()],
        "denoising_strength": 0.5,
        "width": 64,
        "height": 96,
        "steps": 2,
        "seed": 11,
    }
    answer = await upscaling.post("/sdapi/v1/img2img", json=body)
    assert answer.status_code == 200, answer.text
    (encoded,) = answer.json()["images"]
    made = base64.b64decode(encoded)
    assert Image.open(io.BytesIO(made)).size == (64, 96)  # width and height honoured
    assert json.loads(answer.json()["info"])["all_seeds"] == [11]

    upscale = {"image": encoded, "upscaler_1": "Tiny 4x", "upscaling_resize": 2}
    answer = await upscaling.post("/sdapi/v1/extra-single-image", json=upscale)
    assert answer.status_code == 200, answer.text
    assert answer.json()["html_info"] == "<div>Upscaled with Tiny 4x</div>"
    upscaled = base64.b64decode(answer.json()["image"])
    assert Image.open(io.BytesIO(upscaled)).size == (128, 192)  # 2x doubles width and height

    jobs = (await upscaling.get("/api/queue")).json()["jobs"]
    assert sorted((job["type"], job["status"], job["size"]) for job in jobs) == [
        ("edit", "completed", "64x96"),
        ("upscale", "completed", "128x192"),
    ]
    upscale_job = next(job for job in jobs if job["type"] == "upscale")
    (image,) = (await upscaling.get(f"/api/generations/{upscale_job['id']}/images")).json()
    assert (image["width"], image["height"]) == (128, 192)
    assert (await upscaling.get(f"/api/images/{image['id']}")).content == upscaled
    staged = upscale_job["input_image_path"]
    assert staged.startswith(f"{storage.outputs}/sdcpp-studio/{namespace}/inputs/")


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


async def test_a_started_model_serves_the_queue_with_its_events_seeds_and_cancels(
    operator: OperatorProcess,
    tiny_sd: Path,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
) -> None:
    """The REST client's path on a warm model: start it (a generator ServiceInstance), watch the
    WebSocket while a queued batch runs on it (counts honoured, the same seed giving the same
    pixels in a second, synchronous call), cancel a running and a queued job, stop the model."""
    profile = {"models": [{"id": "tiny-sd", "path": TINY_MODEL}], "syncTimeoutSeconds": 120}
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    server, task, sock = await serve(ctx)
    port = sock.getsockname()[1]
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=150) as http,
            connect(f"ws://127.0.0.1:{port}/ws") as ws,
        ):
            for channel in ("queue", "generations", "models"):
                await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            await ws.send(json.dumps({"type": "ping"}))
            await next_of(ws, "pong")

            started = await http.post("/api/models/tiny-sd/start")
            assert started.json() == {"success": True, "status": "starting", "port": None}
            running = await next_of(ws, "model_status_changed", 120)
            while running["data"]["status"] != "running":
                running = await next_of(ws, "model_status_changed", 120)
            assert running["data"]["id"] == "tiny-sd"
            assert [m["id"] for m in (await http.get("/api/models/running")).json()] == ["tiny-sd"]

            small = {"prompt": "a cat", "model": "tiny-sd", "size": "64x64", "sample_steps": 2}
            queued = await http.post("/api/queue/generate", json={**small, "n": 2, "seed": 7})
            job_id = queued.json()["job_id"]
            updated = await next_of(ws, "job_updated", 60)
            assert updated["data"]["id"] == job_id
            assert (await next_of(ws, "job_completed", 120))["data"]["id"] == job_id
            generation = await next_of(ws, "generation_completed", 30)
            assert (generation["data"]["id"], generation["data"]["image_count"]) == (job_id, 2)
            detail = (await http.get(f"/api/generations/{job_id}")).json()
            assert [(i["width"], i["height"]) for i in detail["images"]] == [(64, 64), (64, 64)]
            job = cache.get(GJ, job_id, namespace)
            assert job is not None and job["status"]["assignedService"]  # the warm service ran it
            by_seed = {o["seed"]: o["index"] for o in job["status"]["outputs"]}
            second = await http.get(f"/api/images/{job_id}-{by_seed[8]}")

            again = await http.post("/api/generate", json={**small, "seed": 8})
            assert again.status_code == 200, again.text
            (image,) = again.json()["data"]
            same = await http.get(f"/api/images/{image['id']}")
            assert pixels(same.content) == pixels(second.content)  # same seed, same pixels

            long = await http.post("/api/queue/generate", json={**small, "sample_steps": 400})
            waiting = await http.post("/api/queue/generate", json=small)
            long_id, waiting_id = long.json()["job_id"], waiting.json()["job_id"]

            def processing(message: dict[str, Any]) -> bool:
                data = message["data"]
                return bool(data["id"] == long_id and data["status"] == "processing")

            async with asyncio.timeout(120):
                while not processing(await next_of(ws, "job_updated")):
                    pass
            assert (await http.get(f"/api/queue/{waiting_id}")).json()["status"] == "pending"
            for victim in (waiting_id, long_id):
                answer = await http.delete(f"/api/queue/{victim}")
                assert answer.status_code == 200 and answer.json()["success"] is True
            cancelled: set[str] = set()
            async with asyncio.timeout(120):  # the watch tells, as it tells every client
                while cancelled != {waiting_id, long_id}:
                    data = (await next_of(ws, "job_updated"))["data"]
                    if data["status"] == "cancelled":
                        cancelled.add(data["id"])
            assert (await http.get(f"/api/queue/{long_id}")).json()["status"] == "cancelled"
            assert (await http.get("/api/queue/stats")).json()["processing"] == 0

            # The synchronous edit and variation of an uploaded picture, on the same warm model: each
            # keeps the picture's size.
            upload = io.BytesIO()
            Image.new("RGB", (80, 64), (30, 90, 200)).save(upload, format="PNG")
            form = {"model": "tiny-sd", "sample_steps": "2", "seed": "3"}
            edited = await http.post(
                "/api/edit",
                files={"image": ("in.png", upload.getvalue(), "image/png")},
                data={**form, "prompt": "a blue boat", "strength": "0.6"},
            )
            varied = await http.post(
                "/api/variation", files={"image": ("in.png", upload.getvalue(), "image/png")}, data=form
            )
            for answer, kind in ((edited, "img2img"), (varied, "variation")):
                assert answer.status_code == 200, answer.text
                (made,) = answer.json()["data"]
                served = await http.get(f"/api/images/{made['id']}")
                job = cache.get(GJ, answer.json()["id"], namespace)
                with Image.open(io.BytesIO(served.content)) as picture:
                    assert picture.size == (80, 64), kind
                assert job is not None and job["spec"]["type"] == kind
                assert job["status"]["phase"] == "Completed" and job["status"]["assignedService"]

            assert (await http.post("/api/models/tiny-sd/stop")).json()["success"] is True
            stopped = await next_of(ws, "model_status_changed", 60)
            assert stopped["data"]["status"] in ("stopping", "stopped")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
