"""The ComfyUI-Docker dashboard's REST endpoints of the first increment against the devcluster.

Real API server, real cache and CR store, real HTTP (httpx over ASGI), a real models volume (a
temporary folder). No operator runs here: the ModelPulls an install creates stay as the gateway
wrote them, which is what these tests look at (the operator's side is in
``test_comfyui_docker_presets_e2e.py``).
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles import load_profile
from kubepilot_gateway.profiles.comfyui_docker import cors_from_env, create_app
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")

CATALOG = {
    "presets": [
        {
            "id": "IMG_ONE",
            "name": "Image One",
            "category": "Image Generation",
            "type": "image",
            "description": "A tiny image checkpoint",
            "use_case": "tests",
            "tags": ["tiny", "t2i"],
            "workflows": ["one.json"],
            "files": [
                {"path": "checkpoints/one.safetensors", "url": "http://hub.test/one", "size_bytes": 1000},
                {
                    "path": "checkpoints/extra/one_b.safetensors",
                    "url": "http://hub.test/b",
                    "size_bytes": 500,
                },
            ],
        },
        {
            "id": "VID_WAN",
            "name": "Wan Video",
            "category": "Video Generation",
            "type": "video",
            "description": "Text to video",
            "tags": ["wan", "t2v"],
            "files": [
                {
                    "path": "diffusion_models/wan.safetensors",
                    "url": "http://hub.test/w",
                    "size_bytes": 14_500_000_000,
                },
                {"path": "vae/wan_vae.safetensors", "url": "http://hub.test/v", "size_bytes": 300_000_000},
            ],
        },
        {
            "id": "LORA_PACK",
            "name": "Style LoRA",
            "category": "Image Generation",
            "type": "image",
            "description": "A style",
            "tags": ["style"],
            "files": [{"path": "loras/style.safetensors", "url": "http://hub.test/s", "size_bytes": 2048}],
        },
        {"id": "BROKEN", "files": [{"path": "../etc/passwd", "url": "http://hub.test/x"}]},
    ]
}


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, models: Path, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    volumes = Volumes(models=str(models), datasets=str(tmp_path), outputs=str(tmp_path))
    settings = Settings(
        namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": {"catalogCacheSeconds": 0}}
    )
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as session:
        yield session


@pytest.fixture
async def catalog(kube: KubeClient, namespace: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "comfyui-docker-presets"},
        "data": {"presets": json.dumps(CATALOG)},
    }
    await kube.request("POST", CONFIGMAPS.path(namespace), body=body)


def put(models: Path, relative: str, size: int) -> Path:
    path = models / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def assert_error(response: httpx.Response, status: int, code: str) -> JsonObject:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["timestamp"].endswith("Z")
    assert isinstance(error["details"], dict)
    return dict(error)


def test_the_profile_is_registered_on_port_8080_with_cors_from_cors_origins() -> None:
    profile = load_profile("comfyui-docker")
    assert profile is not None and profile.native_port == 8080
    assert profile.cors is not None and profile.cors.allowOrigins == ["*"]
    assert {"X-RateLimit-Remaining", "Retry-After", "X-API-Version"} <= set(profile.cors.exposeHeaders)
    narrowed = cors_from_env(" https://a.example, https://b.example ,")
    assert narrowed.allowOrigins == ["https://a.example", "https://b.example"]


async def test_a_browser_of_another_origin_may_read_the_rate_and_version_headers(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.get("/api/presets/NOPE", headers={"Origin": "https://ui.example"})
    assert answer.status_code == 404 and answer.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip().lower() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} <= exposed


async def test_health_at_the_root_and_under_api_with_the_version_header(http: httpx.AsyncClient) -> None:
    for path in ("/health", "/api/health"):
        response = await http.get(path)
        assert response.status_code == 200 and response.headers["X-API-Version"] == "1.0.0"
        body = response.json()
        assert (body["status"], body["version"], body["service"]) == ("healthy", "1.0.0", "comfyui-dashboard")
        assert body["timestamp"].endswith("Z")
    missing = await http.get("/api/nothing")
    assert_error(missing, 404, "NOT_FOUND")
    assert missing.headers["X-API-Version"] == "1.0.0"


async def test_system_status_and_storage(http: httpx.AsyncClient, models: Path) -> None:
    put(models, "checkpoints/a.safetensors", 100)
    put(models, "loras/b.safetensors", 50)
    put(models, "loras/.partial", 50)
    status = (await http.get("/api/system/status")).json()
    assert status["status"] == "running" and isinstance(status["uptime"], int)
    assert status["services"] == {"dashboard": "running", "comfyui": "stopped", "preset_manager": "running"}
    resources = status["resources"]
    assert set(resources) == {"cpu_percent", "memory_percent", "gpu_percent", "disk_used_gb", "disk_total_gb"}
    assert resources["disk_total_gb"] > 0
    storage = (await http.get("/api/system/storage")).json()
    assert storage["workspace"]["path"] == str(models) and storage["workspace"]["total_gb"] > 0
    assert storage["models"]["count"] == 2
    assert storage["models"]["by_type"] == {"checkpoints": 1, "text_encoders": 0, "vae": 0, "loras": 1}


@pytest.mark.usefixtures("catalog")
async def test_presets_are_listed_and_filtered(http: httpx.AsyncClient, models: Path) -> None:
    put(models, "loras/style.safetensors", 2048)
    body = (await http.get("/api/presets")).json()
    assert (body["total"], body["filtered"]) == (3, 3)  # the broken entry is left out
    assert body["categories"] == ["Video Generation", "Image Generation", "Audio Generation"]
    wan = next(p for p in body["presets"] if p["id"] == "VID_WAN")
    assert wan == {
        "id": "VID_WAN",
        "name": "Wan Video",
        "category": "Video Generation",
        "type": "video",
        "description": "Text to video",
        "download_size": "14.8GB",
        "installed": False,
        "use_case": "",
        "tags": ["wan", "t2v"],
    }

    async def ids(**query: str) -> list[str]:
        answer = (await http.get("/api/presets", params=query)).json()
        assert answer["total"] == 3 and answer["filtered"] == len(answer["presets"])
        return [p["id"] for p in answer["presets"]]

    assert await ids(category="Image Generation") == ["IMG_ONE", "LORA_PACK"]
    assert await ids(type="video") == ["VID_WAN"]
    assert await ids(installed="true") == ["LORA_PACK"]
    assert await ids(installed="false") == ["IMG_ONE", "VID_WAN"]
    assert await ids(search="T2V") == ["VID_WAN"]  # a tag, case-insensitive
    assert await ids(search="tiny image") == ["IMG_ONE"]  # the description
    assert await ids(type="audio") == []
    # The guide's optional paging: that page, the counts of every match.
    paged = (await http.get("/api/presets", params={"page": 2, "per_page": 2})).json()
    assert [p["id"] for p in paged["presets"]] == ["LORA_PACK"]
    assert (paged["total"], paged["filtered"], paged["page"], paged["per_page"]) == (3, 3, 2, 2)
    assert (paged["has_next"], paged["has_prev"]) == (False, True)
    first = (await http.get("/api/presets", params={"page": 1})).json()
    assert (first["per_page"], first["has_next"], len(first["presets"])) == (20, False, 3)
    for bad in ({"page": 0}, {"per_page": 0}, {"per_page": 1001}, {"page": "x"}):
        assert_error(await http.get("/api/presets", params=bad), 400, "INVALID_REQUEST")
    assert_error(await http.get("/api/presets", params={"installed": "maybe"}), 400, "INVALID_REQUEST")


@pytest.mark.usefixtures("catalog")
async def test_preset_detail_and_status(http: httpx.AsyncClient, models: Path) -> None:
    put(models, "checkpoints/one.safetensors", 1000)
    detail = (await http.get("/api/presets/IMG_ONE")).json()
    assert detail["installed"] is False and detail["install_date"] is None
    assert detail["download_size"] == "1.5KB"
    assert detail["files"] == [
        {
            "path": "checkpoints/one.safetensors",
            "url": "http://hub.test/one",
            "size": "1.0KB",
            "installed": True,
        },
        {
            "path": "checkpoints/extra/one_b.safetensors",
            "url": "http://hub.test/b",
            "size": "500B",
            "installed": False,
        },
    ]
    assert (detail["dependencies"], detail["workflows"]) == ([], ["one.json"])
    status = (await http.get("/api/presets/IMG_ONE/status")).json()
    assert status == {
        "preset_id": "IMG_ONE",
        "status": "not_installed",
        "progress": 0.0,
        "current_file": None,
        "download_speed_mbps": 0.0,
        "eta_seconds": 0,
        "files": {"total": 2, "completed": 0, "failed": 0},
    }
    for path in ("/api/presets/NOPE", "/api/presets/NOPE/status"):
        error = assert_error(await http.get(path), 404, "PRESET_NOT_FOUND")
        assert error["details"] == {"preset_id": "NOPE"}


async def test_the_built_in_catalog_serves_without_a_configmap(http: httpx.AsyncClient) -> None:
    body = (await http.get("/api/presets")).json()
    assert body["total"] >= 1 and all(
        p["download_size"].endswith("GB") or p["download_size"].endswith("MB") for p in body["presets"]
    )


@pytest.mark.usefixtures("catalog")
async def test_install_creates_one_model_pull_and_the_download_is_paused_resumed_cancelled(
    http: httpx.AsyncClient, cache: ClusterCache, models: Path
) -> None:
    answer = await http.post("/api/presets/IMG_ONE/install", json={"force": False, "priority": "high"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    download_id = body["download_id"]
    assert body == {
        "status": "installing",
        "preset_id": "IMG_ONE",
        "download_id": download_id,
        "estimated_time_seconds": 0,
        "total_size_gb": 0.0,
    }
    assert download_id.startswith("dl_") and len(download_id) == 9
    pull = cache.get(MP, dl.pull_name("IMG_ONE"))
    assert pull is not None
    assert pull["metadata"]["labels"] == {LABEL_PROFILE: "comfyui-docker", dl.LABEL_DOWNLOAD_ID: download_id}
    spec = pull["spec"]
    assert spec["destination"] == {"modelType": "checkpoints", "subdir": ""}
    assert spec["source"]["urls"] == [
        {"url": "http://hub.test/one", "path": "one.safetensors", "sizeBytes": 1000},
        {"url": "http://hub.test/b", "path": "extra/one_b.safetensors", "sizeBytes": 500},
    ]
    assert (spec["priority"], spec["expectedSizeBytes"], spec["catalogRef"]["entry"]) == (
        "High",
        1500,
        "IMG_ONE",
    )

    # Installing again while it runs is the same download (no second ModelPull), also with no body.
    again = await http.post("/api/presets/IMG_ONE/install")
    assert again.json()["download_id"] == download_id
    status = (await http.get("/api/presets/IMG_ONE/status")).json()
    assert status["status"] == "installing" and status["files"]["total"] == 2

    listed = (await http.get("/api/downloads")).json()
    assert listed == {
        "downloads": [
            {
                "id": download_id,
                "preset_id": "IMG_ONE",
                "status": "queued",
                "progress": 0.0,
                "speed_mbps": 0.0,
                "eta_seconds": 0,
                "current_file": None,
            }
        ],
        "active": 0,
        "total": 1,
    }
    paused = await http.post(f"/api/downloads/{download_id}/pause")
    assert paused.json() == {"status": "paused", "download_id": download_id}
    assert cache.get(MP, dl.pull_name("IMG_ONE"))["spec"]["paused"] is True  # type: ignore[index]
    assert (await http.get("/api/presets/IMG_ONE/status")).json()["status"] == "paused"
    resumed = await http.post(f"/api/downloads/{download_id}/resume")
    assert resumed.json() == {"status": "downloading", "download_id": download_id}
    assert cache.get(MP, dl.pull_name("IMG_ONE"))["spec"]["paused"] is False  # type: ignore[index]
    cancelled = await http.delete(f"/api/downloads/{download_id}")
    assert cancelled.json() == {"status": "cancelled", "download_id": download_id, "files_removed": True}
    assert cache.get(MP, dl.pull_name("IMG_ONE"))["spec"]["cancel"] is True  # type: ignore[index]
    assert (await http.get("/api/downloads")).json()["downloads"][0]["status"] == "cancelled"
    assert_error(await http.post(f"/api/downloads/{download_id}/pause"), 409, "DOWNLOAD_NOT_ACTIVE")
    for method, path in (("POST", "/api/downloads/dl_000000/pause"), ("DELETE", "/api/downloads/nope")):
        assert_error(await http.request(method, path), 404, "DOWNLOAD_NOT_FOUND")


@pytest.mark.usefixtures("catalog")
async def test_install_refusals(http: httpx.AsyncClient, cache: ClusterCache, models: Path) -> None:
    put(models, "loras/style.safetensors", 2048)
    error = assert_error(await http.post("/api/presets/LORA_PACK/install"), 409, "PRESET_ALREADY_INSTALLED")
    assert error["details"] == {"preset_id": "LORA_PACK"}
    assert_error(await http.post("/api/presets/NOPE/install"), 404, "PRESET_NOT_FOUND")
    bad = await http.post("/api/presets/IMG_ONE/install", json={"priority": "urgent"})
    assert_error(bad, 400, "INVALID_REQUEST")
    assert_error(
        await http.post("/api/presets/IMG_ONE/install", content=b"{not json"), 400, "INVALID_REQUEST"
    )
    assert cache.list(MP) == []


async def test_insufficient_storage_is_a_507(
    kube: KubeClient, namespace: str, http: httpx.AsyncClient, cache: ClusterCache
) -> None:
    huge = {
        "presets": [
            {
                "id": "HUGE",
                "name": "Huge",
                "files": [{"path": "checkpoints/huge.bin", "url": "http://hub.test/h", "size_bytes": 10**18}],
            }
        ]
    }
    body = {"metadata": {"name": "comfyui-docker-presets"}, "data": {"presets": json.dumps(huge)}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **body}
    )
    error = assert_error(await http.post("/api/presets/HUGE/install"), 507, "INSUFFICIENT_STORAGE")
    assert error["details"]["required_gb"] == 1e9
    assert cache.list(MP, namespace) == []


async def test_a_download_the_cluster_refuses_is_a_500_download_failed(
    kube: KubeClient, namespace: str, http: httpx.AsyncClient, cache: ClusterCache
) -> None:
    """A catalog entry whose ModelPull the API server refuses (its URL is over the CRD's 4096
    characters) is the guide's 500 ``DOWNLOAD_FAILED``, not a 422 the client cannot act on."""
    url = "https://hub.test/" + "x" * 4100
    bad = {"presets": [{"id": "LONG", "files": [{"path": "loras/long.safetensors", "url": url}]}]}
    body = {"metadata": {"name": "comfyui-docker-presets"}, "data": {"presets": json.dumps(bad)}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **body}
    )
    error = assert_error(await http.post("/api/presets/LONG/install"), 500, "DOWNLOAD_FAILED")
    assert error["details"] == {"preset_id": "LONG"} and "4096" in error["message"]
    assert cache.list(MP, namespace) == []


@pytest.mark.usefixtures("catalog")
async def test_models_list_types_and_the_index_follows_the_volume(
    http: httpx.AsyncClient, models: Path
) -> None:
    put(models, "checkpoints/one.safetensors", 1000)
    put(models, "loras/style.safetensors", 2048)
    put(models, "loras/sub/other.pt", 10)
    put(models, "stray.txt", 5)  # not in a type folder: not a model
    body = (await http.get("/api/models")).json()
    assert [m["path"] for m in body["models"]] == [
        "checkpoints/one.safetensors",
        "loras/style.safetensors",
        "loras/sub/other.pt",
    ]
    first = body["models"][0]
    assert (first["type"], first["preset"], first["size_bytes"]) == ("checkpoints", "IMG_ONE", 1000)
    assert first["modified"].endswith("Z") and body["total"] == 3
    assert body["models"][2]["preset"] is None
    paged = (await http.get("/api/models", params={"per_page": 2})).json()
    assert [m["path"] for m in paged["models"]] == ["checkpoints/one.safetensors", "loras/style.safetensors"]
    assert (paged["total"], paged["page"], paged["has_next"], paged["has_prev"]) == (3, 1, True, False)
    loras = (await http.get("/api/models", params={"type": "loras", "search": "STYLE"})).json()
    assert [m["path"] for m in loras["models"]] == ["loras/style.safetensors"]

    (models / "loras" / "sub" / "other.pt").unlink()
    put(models, "vae/new.safetensors", 1)
    types = (await http.get("/api/models/types")).json()["types"]
    assert types == [
        {"id": "checkpoints", "name": "Checkpoints", "count": 1},
        {"id": "text_encoders", "name": "Text Encoders", "count": 0},
        {"id": "vae", "name": "VAE", "count": 1},
        {"id": "loras", "name": "LoRAs", "count": 1},
    ]


async def test_rate_limit_headers_on_every_answer_and_429_past_the_limit(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> None:
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"rateLimitPerIp": 3}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as http:
        answers = [
            await http.get(path) for path in ("/health", "/api/presets/NOPE", "/api/downloads", "/health")
        ]
        assert [a.status_code for a in answers] == [200, 404, 200, 429]
        assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
        reset = int(answers[0].headers["X-RateLimit-Reset"])
        assert reset % 60 == 0 and 0 < reset - time.time() <= 60
        limited = answers[-1]
        assert_error(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["X-API-Version"] == "1.0.0"


@pytest.mark.usefixtures("catalog")
async def test_model_deletion_stays_in_the_volume_and_spares_shared_files(
    http: httpx.AsyncClient, store: CrStore, models: Path, tmp_path: Path
) -> None:
    put(models, "checkpoints/one.safetensors", 1000)
    put(models, "loras/style.safetensors", 2_000_000)
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"keep")
    (models / "loras" / "link.safetensors").symlink_to(outside)
    assert (await http.post("/api/presets/IMG_ONE/install")).status_code == 200
    other = {
        "metadata": {"name": "someone-else"},
        "spec": {
            "source": {"type": "URL", "urls": [{"url": "http://hub.test/one", "path": "one.safetensors"}]},
            "destination": {"modelType": "checkpoints"},
        },
    }
    await store.create(MP, other)  # a second download holding checkpoints/one.safetensors

    paths = ["loras/style.safetensors", "checkpoints/one.safetensors", "../precious.bin", "vae/none.pt"]
    answer = await http.request("DELETE", "/api/models", json={"paths": [*paths, "loras/link.safetensors"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["deleted"], body["space_freed_gb"]) == (1, 0.002)
    assert [(e["path"], e["code"]) for e in body["errors"]] == [
        ("checkpoints/one.safetensors", "MODEL_IN_USE"),
        ("../precious.bin", "MODEL_NOT_FOUND"),
        ("vae/none.pt", "MODEL_NOT_FOUND"),
        ("loras/link.safetensors", "MODEL_NOT_FOUND"),
    ]
    assert not (models / "loras" / "style.safetensors").exists()
    assert (models / "checkpoints" / "one.safetensors").exists() and outside.read_bytes() == b"keep"
    missing = await http.request("DELETE", "/api/models", json={"paths": ["vae/none.pt", "../precious.bin"]})
    error = assert_error(missing, 404, "MODEL_NOT_FOUND")
    assert [e["path"] for e in error["details"]["errors"]] == ["vae/none.pt", "../precious.bin"]
    assert_error(await http.request("DELETE", "/api/models", json={"paths": []}), 400, "INVALID_REQUEST")
    assert_error(await http.request("DELETE", "/api/models"), 400, "INVALID_REQUEST")


PRODUCT_YAML = textwrap.dedent(
    """\
    metadata: {version: 1.1.0}
    categories:
      Image Generation: {type: image}
    presets:
      FLUX_SCHNELL_BASIC:
        name: FLUX Schnell
        category: Image Generation
        type: image
        download_size: 24GB
        files:
        - {path: diffusion_models/flux1-schnell.safetensors, url: "http://hub.test/flux", size: 12GB}
        - {path: text_encoders/t5xxl_fp16.safetensors, url: "http://hub.test/t5", size: 4.9GB}
        - {path: vae/ae.safetensors, url: "http://hub.test/ae", size: 335MB}
        tags: [flux]
      FLUX_DEV_BASIC:
        name: FLUX Dev
        category: Image Generation
        type: image
        files:
        - {path: diffusion_models/flux1-dev.safetensors, url: "http://hub.test/dev", size: ~1KB}
        - {path: text_encoders/t5xxl_fp16.safetensors, url: "http://hub.test/t5", size: 4.9GB}
      WAN22_S2V_FP8_SCALED:
        name: Wan 2.2 S2V FP8
        category: Video Generation
        type: video
        files:
        - {path: diffusion_models/Wan2.2_S2V_FP8.safetensors, url: "http://hub.test/s2v", size: 5.1GB}
        - {path: audio_encoders/audio_encoder.pth, url: "http://hub.test/enc", size: 1.2GB}
    """
)


async def test_a_preset_spanning_folders_is_one_mixed_model_pull_and_shared_files_stay(
    kube: KubeClient, namespace: str, http: httpx.AsyncClient, cache: ClusterCache, models: Path
) -> None:
    """The product's own presets.yaml as the catalog; a multi-folder preset installs as ONE ModelPull
    of destination ``mixed``; a file two presets' downloads hold is neither deleted nor uninstalled."""
    body = {"metadata": {"name": "comfyui-docker-presets"}, "data": {"presets": PRODUCT_YAML}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **body}
    )
    listed = (await http.get("/api/presets", params={"type": "image"})).json()
    assert [(p["id"], p["download_size"]) for p in listed["presets"]] == [
        ("FLUX_SCHNELL_BASIC", "17.2GB"),
        ("FLUX_DEV_BASIC", "4.9GB"),
    ]
    # Only the missing bytes must fit on the volume: put the big ones there first.
    put(models, "diffusion_models/flux1-schnell.safetensors", 100)
    put(models, "text_encoders/t5xxl_fp16.safetensors", 300)
    answer = await http.post("/api/presets/FLUX_SCHNELL_BASIC/install", json={"force": False})
    assert answer.status_code == 200, answer.text
    assert answer.json()["total_size_gb"] == 17.2
    pull = cache.get(MP, dl.pull_name("FLUX_SCHNELL_BASIC"))
    assert pull is not None
    assert pull["spec"]["destination"] == {"modelType": "mixed", "subdir": ""}
    assert pull["spec"]["source"]["urls"] == [
        {
            "url": "http://hub.test/flux",
            "path": "diffusion_models/flux1-schnell.safetensors",
            "sizeBytes": 12 * 10**9,
        },
        {
            "url": "http://hub.test/t5",
            "path": "text_encoders/t5xxl_fp16.safetensors",
            "sizeBytes": 4_900_000_000,
        },
        {"url": "http://hub.test/ae", "path": "vae/ae.safetensors", "sizeBytes": 335_000_000},
    ]
    assert pull["spec"]["expectedSizeBytes"] == 17_235_000_000
    dev = await http.post("/api/presets/FLUX_DEV_BASIC/install")
    assert dev.status_code == 200, dev.text
    assert cache.get(MP, dl.pull_name("FLUX_DEV_BASIC"))["spec"]["destination"]["modelType"] == "mixed"  # type: ignore[index]

    refused = assert_error(
        await http.post("/api/presets/WAN22_S2V_FP8_SCALED/install"), 400, "INVALID_REQUEST"
    )
    assert refused["details"]["unsupported_folders"] == ["audio_encoders"]
    assert "audio_encoders" in refused["message"]

    # What the downloads would have written, attributed to the preset that lists each file.
    put(models, "vae/ae.safetensors", 200)
    rows = {m["path"]: m["preset"] for m in (await http.get("/api/models")).json()["models"]}
    assert rows["vae/ae.safetensors"] == "FLUX_SCHNELL_BASIC"
    assert rows["diffusion_models/flux1-schnell.safetensors"] == "FLUX_SCHNELL_BASIC"
    status = (await http.get("/api/presets/FLUX_SCHNELL_BASIC/status")).json()
    assert status["files"]["total"] == 3

    shared = await http.request(
        "DELETE", "/api/models", json={"paths": ["text_encoders/t5xxl_fp16.safetensors"], "confirm": True}
    )
    assert shared.json()["errors"][0]["code"] == "MODEL_IN_USE"

    # No operator here: the ModelPull has no finalizer and goes at once; the sweep spares the
    # text encoder FLUX_DEV_BASIC's download still lists.
    # With the guide's body (confirm, remove_dependencies), which changes nothing here.
    confirm = {"confirm": True, "remove_dependencies": False}
    removed = await http.request("DELETE", "/api/presets/FLUX_SCHNELL_BASIC", json=confirm)
    assert removed.status_code == 200, removed.text
    assert removed.json()["files_removed"] == 2
    assert not (models / "vae" / "ae.safetensors").exists()
    assert not (models / "diffusion_models" / "flux1-schnell.safetensors").exists()
    assert (models / "text_encoders" / "t5xxl_fp16.safetensors").exists()
    assert cache.get(MP, dl.pull_name("FLUX_SCHNELL_BASIC")) is None
