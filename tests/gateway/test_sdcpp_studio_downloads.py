"""sd.cpp Studio's model downloads (SD-29…31 and the product's ``POST /api/models/:id/download``)
over the devcluster: real HTTP through ASGI, real ModelPulls.

No operator runs in the API tests, so a ModelPull stays Pending until a test writes the status the
operator would write (``set_status``: phase, progress, files). The path with the real operator,
the real downloader and the local Hugging Face fake (the network is not reachable here) is the
last test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from kubepilot_gateway.profiles.sdcpp_studio import downloads as dl
from tests.gateway.conftest import stack_settings
from tests.gateway.helpers import eventually
from tests.operator.harness import OperatorProcess, Storage
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")
MODELS: list[JsonObject] = [
    {
        "id": "tiny",
        "name": "Tiny",
        "path": "checkpoints/tiny/tiny.safetensors",
        "huggingface": {"repo": "org/tiny"},
    },
    {"id": "folder", "path": "diffusers/folder", "huggingface": {"repo": "org/folder"}},
    {
        "id": "split",
        "path": "diffusion_models/split.gguf",
        "files": ["diffusion_models/split.gguf", "vae/split-vae.safetensors"],
        "huggingface": {"repo": "org/split"},
    },
    {"id": "local", "path": "checkpoints/local.safetensors"},
]


def context(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    models: list[JsonObject] = MODELS,
    **profile: Any,
) -> GatewayContext:
    settings = stack_settings(
        namespace, storage, profileSettings={"sdcpp-studio": {"models": models, **profile}}
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


def client_for(ctx: GatewayContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://sd.test")


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(context(kube, cache, store, namespace, storage)) as session:
        yield session


@pytest.fixture
async def product(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    ctx = context(kube, cache, store, namespace, storage, compat="product")
    async with client_for(ctx) as session:
        yield session


async def set_status(store: CrStore, model: str, **status: Any) -> None:
    await store.patch_status(MP, dl.pull_name(model), status)


def pull_of(cache: ClusterCache, namespace: str, model: str) -> JsonObject:
    """The model's ModelPull as the cache has it ({} when there is none)."""
    return cache.get(MP, dl.pull_name(model), namespace) or {}


def phase_of(cache: ClusterCache, namespace: str, model: str) -> str:
    return str((pull_of(cache, namespace, model).get("status") or {}).get("phase") or "")


def progress(done: int, total: int, **extra: Any) -> JsonObject:
    percent = done * 100 // total
    return {
        "bytesDone": done,
        "bytesTotal": total,
        "percent": percent,
        "lastUpdatedTime": "2099-01-01T00:00:00Z",
        **extra,
    }


async def test_a_download_is_one_model_pull_with_the_catalog_files_and_reports_progress(
    http: httpx.AsyncClient, cache: ClusterCache, store: CrStore, namespace: str
) -> None:
    # Two concurrent starts: one ModelPull, one download id (a UUID, the ModelPull's uid).
    first, second = await asyncio.gather(
        http.post("/api/models/download", json={"modelId": "tiny"}),
        http.post("/api/models/download", json={"modelId": "tiny"}),
    )
    assert first.status_code == second.status_code == 200, first.text
    assert first.json() == second.json()
    download = first.json()["downloadId"]
    assert first.json() == {"downloadId": download, "status": "downloading"}
    uuid.UUID(download)
    pulls = cache.list(MP, namespace, labels=dl.PULL_LABELS)
    assert [p["metadata"]["name"] for p in pulls] == [dl.pull_name("tiny")]
    (pull,) = pulls
    assert pull["metadata"]["uid"] == download
    spec = pull["spec"]
    huggingface = spec["source"]["huggingFace"]
    assert (spec["source"]["type"], huggingface["repo"], huggingface["files"]) == (
        "HuggingFace",
        "org/tiny",
        ["tiny.safetensors"],
    )
    assert spec["destination"]["modelType"] == "checkpoints" and spec["destination"]["subdir"] == "tiny"
    assert spec["catalogRef"] == {"catalog": "sdcpp-models", "entry": "tiny"}
    assert spec["deletePolicy"] == "Retain" and spec["displayName"] == "Tiny"

    path = f"/api/models/download/{download}"
    assert (await http.get(path)).json() == {
        "status": "downloading",
        "progress": 0.0,
        "bytes_downloaded": 0,
        "total_bytes": 0,
    }
    await set_status(store, "tiny", phase="Downloading", progress=progress(250, 1000))
    await eventually(lambda: phase_of(cache, namespace, "tiny") == "Downloading")
    assert (await http.get(path)).json() == {
        "status": "downloading",
        "progress": 0.25,
        "bytes_downloaded": 250,
        "total_bytes": 1000,
    }
    # A second start while it runs answers the same download.
    again = await http.post("/api/models/download", json={"modelId": "tiny"})
    assert again.json() == {"downloadId": download, "status": "downloading"}

    files = [{"path": "checkpoints/tiny/tiny.safetensors", "sizeBytes": 1000, "state": "Verified"}]
    await set_status(store, "tiny", phase="Completed", progress=progress(1000, 1000), files=files)
    await eventually(lambda: phase_of(cache, namespace, "tiny") == "Completed")
    assert (await http.get(path)).json() == {
        "status": "completed",
        "progress": 1.0,
        "bytes_downloaded": 1000,
        "total_bytes": 1000,
    }
    cancelled = await http.delete(path)
    assert (cancelled.status_code, cancelled.json()) == (
        400,
        {"error": "Cannot cancel download with status: completed"},
    )


async def test_cancel_marks_the_model_pull_and_a_new_start_replaces_the_finished_one(
    http: httpx.AsyncClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    started = (await http.post("/api/models/download", json={"modelId": "folder"})).json()
    pull = cache.get(MP, dl.pull_name("folder"), namespace)
    assert pull is not None
    # A folder without files: the whole repository lands in it.
    assert pull["spec"]["destination"] == {"modelType": "diffusers", "subdir": "folder"}
    assert not pull["spec"]["source"]["huggingFace"].get("files")

    path = f"/api/models/download/{started['downloadId']}"
    cancelled = await http.delete(path)
    assert (cancelled.status_code, cancelled.json()) == (200, {"success": True})
    await eventually(lambda: pull_of(cache, namespace, "folder")["spec"]["cancel"] is True)

    await set_status(store, "folder", phase="Cancelled")
    await eventually(lambda: phase_of(cache, namespace, "folder") == "Cancelled")
    assert (await http.get(path)).json()["status"] == "failed"  # the document has no "cancelled"

    # Started again: the finished ModelPull is replaced (same name, new uid = new download id).
    restarted = await http.post("/api/models/download", json={"modelId": "folder"})
    assert restarted.status_code == 200, restarted.text
    new_id = restarted.json()["downloadId"]
    assert new_id != started["downloadId"]
    await eventually(
        lambda: (
            (cache.get(MP, dl.pull_name("folder"), namespace) or {}).get("metadata", {}).get("uid") == new_id
        )
    )
    assert (await http.get(path)).status_code == 404
    fresh = cache.get(MP, dl.pull_name("folder"), namespace)
    assert fresh is not None and not fresh["spec"].get("cancel")

    # A completed download whose files are all present answers that download, not a new one.
    target = storage.models / "diffusers" / "folder" / "model.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"weights")
    files = [{"path": "diffusers/folder/model.safetensors", "sizeBytes": 7, "state": "Verified"}]
    await set_status(store, "folder", phase="Completed", files=files)
    await eventually(lambda: phase_of(cache, namespace, "folder") == "Completed")
    same = (await http.post("/api/models/download", json={"modelId": "folder"})).json()
    assert same == {"downloadId": new_id, "status": "completed"}


async def test_download_errors(http: httpx.AsyncClient, cache: ClusterCache, namespace: str) -> None:
    async def post(body: object) -> tuple[int, JsonObject]:
        answer = await http.post("/api/models/download", json=body)
        return answer.status_code, answer.json()

    assert await post({}) == (400, {"error": "Missing required field: modelId"})
    assert await post({"modelId": 5}) == (400, {"error": "Missing required field: modelId"})
    assert await post(["tiny"]) == (400, {"error": "Missing required field: modelId"})
    bad_json = await http.post(
        "/api/models/download", content=b"{", headers={"content-type": "application/json"}
    )
    assert (bad_json.status_code, bad_json.json()) == (400, {"error": "Missing required field: modelId"})
    assert await post({"modelId": "nope"}) == (404, {"error": "Model not found"})
    assert await post({"modelId": "local"}) == (400, {"error": "Model has no HuggingFace configuration"})
    status, body = await post({"modelId": "split"})
    assert status == 400 and "several folders" in body["error"]
    assert cache.list(MP, namespace, labels=dl.PULL_LABELS) == []

    unknown = str(uuid.uuid4())
    for method in ("GET", "DELETE"):
        answer = await http.request(method, f"/api/models/download/{unknown}")
        assert (answer.status_code, answer.json()) == (404, {"error": "Download not found"})
    # "download" is a reserved model id, never a catalog model.
    assert (await http.get("/api/models/download")).status_code == 404
    # The product's own route is product mode only.
    assert (await http.post("/api/models/tiny/download")).status_code in (404, 405)


async def test_product_mode_serves_the_product_route_and_shapes(
    product: httpx.AsyncClient, cache: ClusterCache, store: CrStore, namespace: str
) -> None:
    answer = await product.post("/api/models/tiny/download")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    download = body["downloadId"]
    assert body == {
        "success": True,
        "downloadId": download,
        "modelId": "tiny",
        "repo": "org/tiny",
        "status": "downloading",
        "message": "Download started for Tiny",
    }
    # The document's body works in product mode too, and joins the same download.
    joined = (await product.post("/api/models/download", json={"modelId": "tiny"})).json()
    assert joined["downloadId"] == download
    assert (await product.post("/api/models/nope/download")).json() == {"error": "Model not found"}
    no_hf = await product.post("/api/models/local/download")
    assert (no_hf.status_code, no_hf.json()) == (400, {"error": "Model has no HuggingFace configuration"})

    path = f"/api/models/download/{download}"
    pending = (await product.get(path)).json()
    assert (pending["id"], pending["status"], pending["progress"], pending["repo"]) == (
        download,
        "pending",
        0.0,
        "org/tiny",
    )
    assert isinstance(pending["createdAt"], int) and pending["createdAt"] > 1_600_000_000_000
    assert (pending["speed"], pending["eta"], pending["completedAt"], pending["error"]) == (
        "--",
        "--",
        None,
        None,
    )

    files = [{"path": "checkpoints/tiny/tiny.safetensors", "sizeBytes": 2048, "state": "Downloading"}]
    extra = {"speedBytesPerSecond": 1024 * 1024, "etaSeconds": 75, "currentFile": "tiny.safetensors"}
    await set_status(store, "tiny", phase="Downloading", progress=progress(512, 2048, **extra), files=files)
    await eventually(lambda: phase_of(cache, namespace, "tiny") == "Downloading")
    running = (await product.get(path)).json()
    assert running["status"] == "downloading" and running["progress"] == 25.0
    assert (running["bytesDownloaded"], running["totalBytes"]) == (512, 2048)
    assert (running["speed"], running["eta"], running["currentFile"], running["currentFileIndex"]) == (
        "1 MB/s",
        "1m 15s",
        "tiny.safetensors",
        0,
    )
    assert running["files"] == [
        {
            "path": "checkpoints/tiny/tiny.safetensors",
            "size": 2048,
            "downloaded": 0,
            "progress": 0,
            "complete": False,
            "error": None,
        }
    ]

    cancelled = await product.delete(path)
    assert cancelled.json() == {
        "success": True,
        "downloadId": download,
        "status": "cancelled",
        "message": "Download has been cancelled",
    }
    await set_status(store, "tiny", phase="Cancelled", completedAt="2099-01-01T00:00:00Z")
    await eventually(lambda: phase_of(cache, namespace, "tiny") == "Cancelled")
    final = (await product.get(path)).json()
    assert (final["status"], final["error"], final["completedAt"]) == (
        "cancelled",
        "Download cancelled",
        4070908800000,
    )
    again = await product.delete(path)
    assert (again.status_code, again.json()) == (
        400,
        {"error": "Cannot cancel download with status: cancelled"},
    )


@pytest.mark.slow
async def test_a_model_downloads_for_real_through_the_operator(
    operator: OperatorProcess,
    hub: HubFake,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
) -> None:
    """Gateway → ModelPull → the real operator → the real downloader → the file on the models
    volume, with progress polled as the product's UI polls; files/status then finds it."""
    size = 2_000_000
    repo = f"org/{namespace}"
    hub.add_repo(repo, {"e2e.safetensors": FakeFile(data=bytes_of(namespace, size))})
    models = [
        {"id": "e2e", "path": f"checkpoints/{namespace}/e2e.safetensors", "huggingface": {"repo": repo}}
    ]
    ctx = context(kube, cache, store, namespace, storage, models=models)
    hub.throttle_bytes_per_second = 4_000_000  # slow enough for the polling to see it run
    try:
        async with client_for(ctx) as http:
            assert (await http.get("/api/models/e2e/files/status")).json()["allFilesExist"] is False
            started = await http.post("/api/models/download", json={"modelId": "e2e"})
            assert started.status_code == 200, started.text
            path = f"/api/models/download/{started.json()['downloadId']}"
            seen: list[JsonObject] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                seen.append((await http.get(path)).json())
                if seen[-1]["status"] != "downloading":
                    break
                await asyncio.sleep(0.1)
            assert seen[-1] == {
                "status": "completed",
                "progress": 1.0,
                "bytes_downloaded": size,
                "total_bytes": size,
            }, seen[-1]
            assert all(0.0 <= s["progress"] <= 1.0 for s in seen)
            assert any(s["status"] == "downloading" for s in seen)
            target = storage.models / "checkpoints" / namespace / "e2e.safetensors"
            assert target.read_bytes() == bytes_of(namespace, size)
            assert (await http.get("/api/models/e2e/files/status")).json()["allFilesExist"] is True
    finally:
        hub.throttle_bytes_per_second = 0
