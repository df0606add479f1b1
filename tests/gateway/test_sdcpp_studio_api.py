"""sd.cpp Studio's REST and A1111 endpoints over the devcluster (real HTTP through ASGI, real CRs).

No operator runs here, so jobs stay Pending until a test writes their status the way the operator
does (``patch_status``: phase, progress, outputs); the image files are written into the outputs
volume where the generator would put them. The full path with the operator is in
``test_sdcpp_studio_e2e.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from tests.gateway.conftest import stack_settings
from tests.gateway.helpers import eventually
from tests.operator.harness import Storage

GJ = resource_for("GenerationJob")
MODELS = [
    {"id": "tiny-sd", "name": "Tiny SD", "path": "diffusers/tiny-sd"},
    {"id": "other", "path": "diffusers/other"},
]


def client_for(ctx: GatewayContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://sd.test")


def context(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, **profile: Any
) -> GatewayContext:
    settings = stack_settings(
        namespace, storage, profileSettings={"sdcpp-studio": {"models": MODELS, **profile}}
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(context(kube, cache, store, namespace, storage)) as session:
        yield session


async def queue(http: httpx.AsyncClient, **body: Any) -> str:
    answer = await http.post("/api/queue/generate", json={"prompt": "a cat", "model": "tiny-sd", **body})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "pending"
    return str(answer.json()["job_id"])


async def test_health_and_config(http: httpx.AsyncClient) -> None:
    health = (await http.get("/api/health")).json()
    assert health["status"] == "ok" and health["timestamp"].endswith("Z")
    assert (await http.get("/api/config")).json() == {
        "sdApiEndpoint": "",
        "model": "tiny-sd",
        "authEnabled": False,
    }


async def test_the_queue_submits_lists_gets_cancels_and_counts(
    http: httpx.AsyncClient, cache: ClusterCache, namespace: str
) -> None:
    first = await queue(http, size="64x64", seed=5, n=2, quality="hd")
    second = await queue(http)
    cr = cache.get(GJ, first, namespace)
    assert cr is not None and cr["spec"]["width"] == 64 and cr["spec"]["count"] == 2

    job = (await http.get(f"/api/queue/{first}")).json()
    assert (job["status"], job["size"], job["seed"], job["quality"], job["n"]) == (
        "pending",
        "64x64",
        "5",
        "hd",
        2,
    )
    listing = (await http.get("/api/queue")).json()
    assert {j["id"] for j in listing["jobs"]} == {first, second}
    assert listing["stats"] == {"pending": 2, "processing": 0, "completed": 0, "failed": 0}
    assert (await http.get("/api/queue", params={"status": "completed"})).json()["jobs"] == []

    cancelled = await http.delete(f"/api/queue/{first}")
    assert cancelled.status_code == 200 and cancelled.json()["success"] is True
    assert cache.get(GJ, first, namespace)["spec"]["cancel"] is True  # type: ignore[index]
    assert (await http.post("/api/queue/cancel-all")).json() == {"success": True, "cancelled": 1}
    assert cache.get(GJ, second, namespace)["spec"]["cancelReason"] == "QueueCleared"  # type: ignore[index]
    assert (await http.get("/api/queue/stats")).json() == {
        "pending": 2,
        "processing": 0,
        "completed": 0,
        "failed": 0,
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/api/queue/generate", {"model": "tiny-sd"}, 400, "Missing required field: prompt"),
        ("POST", "/api/generate", {"prompt": "x", "model": "nope"}, 400, "Invalid model: nope"),
        ("POST", "/api/queue/generate", {"prompt": "x", "model": "tiny-sd", "n": 0}, 400, "Invalid n: 0"),
        ("GET", "/api/queue?status=weird", None, 400, "Invalid status: weird"),
        ("GET", "/api/queue/0b9c6d3e-1f2a-4b5c-8d7e-9f0a1b2c3d4e", None, 404, "Job not found"),
        ("DELETE", "/api/queue/not-a-job", None, 404, "Job not found"),
        ("GET", "/api/generations/../../etc", None, 404, "Not Found"),
        ("GET", "/api/generations/0b9c6d3e-1f2a-4b5c-8d7e-9f0a1b2c3d4e", None, 404, "Generation not found"),
        ("GET", "/api/images/..%2F..%2Fetc%2Fpasswd", None, 404, "Not Found"),
        ("GET", "/api/images/..-0", None, 404, "Image not found"),
        ("GET", "/api/generations?limit=abc", None, 400, "Invalid limit: 'abc'"),
        ("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "nope"}, 400, "Model not found: nope"),
        ("POST", "/sdapi/v1/txt2img", {"prompt": "x", "width": 100}, 400, "Invalid width: 100"),
    ],
)
async def test_bad_input_gets_the_products_errors_never_a_422_or_500(
    http: httpx.AsyncClient, method: str, path: str, body: Any, status: int, error: str
) -> None:
    answer = await http.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error


async def test_invalid_json_is_a_400_and_options_is_a_204_with_cors(http: httpx.AsyncClient) -> None:
    answer = await http.post(
        "/api/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()) == (400, {"error": "Invalid JSON body"})
    ping = await http.options("/v1/images/generations")
    assert ping.status_code == 204 and ping.headers["access-control-allow-origin"] == "*"
    preflight = await http.options(
        "/sdapi/v1/txt2img",
        headers={"Origin": "http://st.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204 and "POST" in preflight.headers["access-control-allow-methods"]


async def test_completed_generations_list_and_serve_their_images(
    http: httpx.AsyncClient, store: CrStore, storage: Storage, namespace: str
) -> None:
    job_id = await queue(http, size="64x64", n=2)
    pending = await queue(http)
    folder = storage.outputs / "generations" / namespace / job_id
    folder.mkdir(parents=True)
    files = {i: b"\x89PNG\r\n\x1a\n" + bytes([i]) * 32 for i in (0, 1)}
    for index, data in files.items():
        (folder / f"{index}.png").write_bytes(data)
    outputs = [
        {
            "index": i,
            "path": f"generations/{namespace}/{job_id}/{i}.png",
            "width": 64,
            "height": 64,
            "seed": 9 + i,
        }
        for i in (1, 0)
    ]
    conditions = [
        {
            "type": "Scheduled",
            "status": "True",
            "reason": "OneShotJob",
            "message": "runs as a Job",
            "lastTransitionTime": "2026-01-01T00:00:01Z",
        },
        {
            "type": "Succeeded",
            "status": "True",
            "reason": "Completed",
            "message": "2 images written",
            "lastTransitionTime": "2026-01-01T00:00:05Z",
        },
    ]
    await store.patch_status(GJ, job_id, {"phase": "Completed", "outputs": outputs, "conditions": conditions})

    rows = (await http.get("/api/generations")).json()
    assert [row["id"] for row in rows] == [job_id] and rows[0]["image_count"] == 2
    detail = (await http.get(f"/api/generations/{job_id}")).json()
    assert [image["index_in_batch"] for image in detail["images"]] == [0, 1]
    images = (await http.get(f"/api/generations/{job_id}/images")).json()
    assert images == detail["images"]
    for image in images:
        served = await http.get(f"/api/images/{image['id']}")
        assert served.headers["content-type"] == "image/png"
        assert served.content == files[image["index_in_batch"]]
    assert (await http.get(f"/api/generations/{job_id}/image")).content == files[0]
    assert (await http.get(f"/static/images/{job_id}-1.png")).content == files[1]
    assert (await http.get(f"/api/images/{job_id}-7")).status_code == 404
    logs = (await http.get(f"/api/generations/{job_id}/logs")).json()["logs"]
    assert [(entry["level"], entry["message"]) for entry in logs] == [
        ("info", "Scheduled: runs as a Job"),
        ("info", "Succeeded: 2 images written"),
    ]
    assert (await http.get(f"/api/generations/{pending}/image")).status_code == 404
    assert (await http.get("/api/generations", params={"limit": 1, "offset": 1})).json() == []


async def test_the_synchronous_generate_waits_for_the_job_and_answers_its_image_ids(
    http: httpx.AsyncClient, store: CrStore, cache: ClusterCache, namespace: str
) -> None:
    waiting = asyncio.create_task(
        http.post("/api/generate", json={"prompt": "a cat", "model": "tiny-sd", "n": 2})
    )
    await eventually(lambda: bool(cache.list(GJ, namespace)), what="the job")
    (job,) = cache.list(GJ, namespace)
    name = job["metadata"]["name"]
    assert not waiting.done()  # it waits for the job to end
    outputs = [{"index": i, "path": f"x/{i}.png", "width": 512, "height": 512} for i in (0, 1)]
    await store.patch_status(GJ, name, {"phase": "Completed", "outputs": outputs})
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == name
    assert answer.json()["data"] == [
        {"id": f"{name}-0", "index": 0, "revised_prompt": None},
        {"id": f"{name}-1", "index": 1, "revised_prompt": None},
    ]

    failing = asyncio.create_task(http.post("/api/generate", json={"prompt": "b", "model": "tiny-sd"}))
    await eventually(lambda: len(cache.list(GJ, namespace)) == 2, what="the second job")
    other = next(cr for cr in cache.list(GJ, namespace) if cr["metadata"]["name"] != name)
    error = {"code": "GENERATION_FAILED", "message": "out of memory"}
    await store.patch_status(GJ, other["metadata"]["name"], {"phase": "Failed", "error": error})
    failed = await asyncio.wait_for(failing, 10)
    assert (failed.status_code, failed.json()) == (500, {"error": "out of memory"})


async def test_product_compat_shapes(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    ctx = context(kube, cache, store, namespace, storage, compat="product", authEnabled=True)
    async with client_for(ctx) as http:
        assert (await http.get("/api/config")).json()["authRequired"] is True
        job_id = await queue(http)
        listing = (await http.get("/api/generations", params={"limit": 5})).json()
        assert [row["id"] for row in listing["generations"]] == [job_id]
        assert listing["generations"][0]["status"] == "pending"
        assert listing["pagination"] == {"total": 1, "limit": 5, "offset": 0, "hasMore": False}
        created = (await http.get(f"/api/queue/{job_id}")).json()["created_at"]
        assert created > 10**12  # epoch milliseconds


async def test_a1111_options_models_progress_and_interrupt(
    http: httpx.AsyncClient, store: CrStore, cache: ClusterCache, namespace: str
) -> None:
    models = (await http.get("/sdapi/v1/sd-models")).json()
    assert [m["title"] for m in models] == ["tiny-sd", "other"]
    assert (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"] == "tiny-sd"
    chosen = await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "other"})
    assert chosen.json() == {"updated": [{"sd_model_checkpoint": True}]}
    assert (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"] == "other"
    assert (await http.get("/sdapi/v1/samplers")).json()[0]["name"] == "Euler a"
    assert (await http.get("/sdapi/v1/schedulers")).json()[0]["name"] == "automatic"

    job_id = await queue(http)
    progress = {
        "step": 5,
        "totalSteps": 20,
        "imagesDone": 0,
        "percent": 25,
        "etaSeconds": 3,
        "lastUpdatedTime": "2026-01-01T00:00:00Z",
    }
    await store.patch_status(GJ, job_id, {"phase": "Processing", "progress": progress})
    answer = (await http.get("/sdapi/v1/progress")).json()
    assert answer["progress"] == 0.25 and answer["state"]["job_count"] == 1
    assert answer["state"]["sampling_steps"] == 20 and answer["state"]["job"] == job_id
    assert (await http.post("/sdapi/v1/interrupt")).json() == {"success": True}
    cr = cache.get(GJ, job_id, namespace)
    assert cr is not None and cr["spec"]["cancel"] is True and cr["spec"]["cancelReason"] == "Interrupted"


async def test_the_model_catalog_shows_file_status_and_service_state(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    present = f"sdcpp/{namespace}/present.gguf"
    (storage.models / present).parent.mkdir(parents=True)
    (storage.models / present).write_bytes(b"gguf")
    catalog = [
        {"id": "present", "name": "Present", "path": present, "port": 1400, "huggingface": {"repo": "o/r"}},
        {"id": "absent", "path": f"sdcpp/{namespace}/absent.gguf", "files": ["../../../etc/passwd"]},
    ]
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": {"models": catalog}})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    async with client_for(ctx) as http:
        (first, second) = (await http.get("/api/models")).json()["models"]
        assert first == {
            "id": "present",
            "name": "Present",
            "description": "",
            "capabilities": ["text-to-image", "image-to-image"],
            "exec_mode": "cli",
            "mode": "on_demand",
            "port": 1400,
            "status": "stopped",
            "fileStatus": {
                "allFilesExist": True,
                "files": [
                    {"fileName": "present.gguf", "exists": True, "filePath": f"{storage.models}/{present}"}
                ],
            },
            "huggingface": {"repo": "o/r"},
        }
        assert second["fileStatus"]["allFilesExist"] is False  # a path outside the volume never "exists"
        assert (await http.get("/api/models/downloaded")).json() == {
            "models": [{"id": "present", "name": "Present", "fileStatus": {"allFilesExist": True}}]
        }
        assert (await http.get("/api/models/present")).json() == first
        assert (await http.get("/api/models/absent/files/status")).json() == second["fileStatus"]
        assert (await http.get("/api/models/present/status")).json() == {
            "id": "present",
            "status": "stopped",
            "port": 1400,
        }
        assert (await http.get("/api/models/running")).json() == []
        missing = await http.get("/api/models/nope")
        assert (missing.status_code, missing.json()) == (404, {"error": "Model not found"})


async def test_a_synchronous_generation_goes_on_when_its_client_leaves(
    http: httpx.AsyncClient, store: CrStore, cache: ClusterCache, namespace: str
) -> None:
    waiting = asyncio.create_task(http.post("/api/generate", json={"prompt": "a cat", "model": "tiny-sd"}))
    await eventually(lambda: bool(cache.list(GJ, namespace)), what="the job")
    waiting.cancel()  # the client goes away while the job waits
    with pytest.raises(asyncio.CancelledError):
        await waiting
    (job,) = cache.list(GJ, namespace)
    assert not job["spec"].get("cancel")  # nothing cancelled it
    name = job["metadata"]["name"]
    outputs = [{"index": 0, "path": "x/0.png", "width": 512, "height": 512}]
    await store.patch_status(GJ, name, {"phase": "Completed", "outputs": outputs})
    await eventually(
        lambda: (cache.get(GJ, name, namespace) or {}).get("status", {}).get("phase") == "Completed"
    )
    assert (await http.get(f"/api/queue/{name}")).json()["status"] == "completed"
