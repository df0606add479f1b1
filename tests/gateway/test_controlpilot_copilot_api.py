"""ControlPilot's Copilot API (CP-24 status, CP-25 chat) through the copilot sidecar (CS-02, CS-03).

The Copilot CLI and its sidecar cannot run here, so a small real aiohttp server on 127.0.0.1
plays the sidecar: ``/status`` and ``/chat`` (which records what it got, and for the prompt
``hang`` never answers until the test ends). No operator runs: the tests create the ``copilot``
ServiceInstance and write the status the operator would (phase, ready, endpoint) through the
status subresource. The ``cwd`` checks run against real folders and symbolic links.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import copilot as cp
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
SI = resource_for("ServiceInstance")
SIDECAR_STATUS = {
    "copilot_in_path": True,
    "copilot_path": "/usr/local/bin/copilot",
    "home": "/root",
    "cwd": "/workspace",
    "port": 7879,
    "env_has_token": False,
}


@dataclass
class FakeSidecar:
    url: str = ""
    chats: list[JsonObject] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def fake_sidecar_app(fake: FakeSidecar) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def status(request: web.Request) -> web.Response:
        return web.json_response(SIDECAR_STATUS)

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        fake.chats.append(body)
        if body.get("prompt") == "hang":
            await fake.release.wait()  # a CLI that runs longer than the gateway waits
        if body.get("prompt") == "plain":
            return web.Response(status=500, text="Internal Server Error", content_type="text/plain")
        return web.json_response(
            {
                "ok": True,
                "returncode": 0,
                "duration_seconds": 0.1,
                "stdout": "done",
                "stderr": "",
                "command": [],
            }
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_post("/chat", chat)
    return app


def dead_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def sidecar() -> AsyncIterator[FakeSidecar]:
    fake = FakeSidecar()
    runner = web.AppRunner(fake_sidecar_app(fake))
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    await web.SockSite(runner, sock).start()
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield fake
    fake.release.set()
    await runner.cleanup()


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    for name in ("models", "datasets", "outputs"):
        (tmp_path / name).mkdir()
    return Volumes(
        models=str(tmp_path / "models"),
        datasets=str(tmp_path / "datasets"),
        outputs=str(tmp_path / "outputs"),
    )


def make_ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes, **copilot: Any
) -> GatewayContext:
    settings = Settings(
        namespace=namespace, volumes=volumes, profileSettings={"controlpilot": {"copilot": copilot}}
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


async def client_for(ctx: GatewayContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://cp.test")


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(make_ctx(kube, cache, store, namespace, volumes)) as session:
        yield session


async def copilot_service(
    store: CrStore, endpoint: str, *, phase: str = "Running", ready: bool = True
) -> None:
    copilot = svc.known_service("copilot")
    assert copilot is not None
    await store.create(SI, svc.new_service_instance(copilot, running=True))
    await store.patch_status(SI, "copilot", {"phase": phase, "ready": ready, "endpoint": endpoint})


# -- CP-24 -----------------------------------------------------------------------------------------


async def test_status_passes_the_sidecar_status_through(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar
) -> None:
    await copilot_service(store, sidecar.url)
    response = await http.get("/api/copilot/status")
    assert response.status_code == 200
    assert response.json() == {**SIDECAR_STATUS, "sidecar_reachable": True}


async def test_status_without_a_running_sidecar_is_200_unreachable(
    http: httpx.AsyncClient, store: CrStore, namespace: str
) -> None:
    response = await http.get("/api/copilot/status")
    assert response.status_code == 200
    body = response.json()
    assert (body["sidecar_reachable"], body["copilot_in_path"]) == (False, False)
    assert f"ServiceInstance {namespace}/copilot does not exist" in body["detail"]
    assert list(body) == ["sidecar_reachable", "copilot_in_path", "detail"]


async def test_status_of_a_sidecar_that_does_not_answer_is_200_unreachable(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    await copilot_service(store, dead_url())
    response = await http.get("/api/copilot/status")
    assert response.status_code == 200
    body = response.json()
    assert body["sidecar_reachable"] is False and body["detail"].startswith("copilot sidecar not reachable")


async def test_the_sidecar_url_setting_overrides_the_service_instance(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    volumes: Volumes,
    sidecar: FakeSidecar,
) -> None:
    ctx = make_ctx(kube, cache, store, namespace, volumes, sidecarUrl=sidecar.url + "/")
    async with await client_for(ctx) as session:
        assert (await session.get("/api/copilot/status")).json()["copilot_in_path"] is True


# -- CP-25 -----------------------------------------------------------------------------------------


async def test_chat_is_passed_to_the_sidecar_and_its_answer_back(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar
) -> None:
    await copilot_service(store, sidecar.url)
    body = {"prompt": "list files", "cwd": "/workspace/datasets/../outputs/", "allow_all_urls": True}
    response = await http.post("/api/copilot/chat", json=body)
    assert response.status_code == 200
    assert response.json()["ok"] is True and response.json()["returncode"] == 0
    # Forwarded as sent, but with the cwd the gateway checked (normalised).
    assert sidecar.chats == [{"prompt": "list files", "cwd": "/workspace/outputs", "allow_all_urls": True}]


async def test_chat_without_cwd_forwards_no_cwd(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar
) -> None:
    await copilot_service(store, sidecar.url)
    assert (await http.post("/api/copilot/chat", json={"prompt": "hi"})).status_code == 200
    assert sidecar.chats == [{"prompt": "hi"}]


async def test_a_non_json_sidecar_answer_is_relayed_as_detail(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar
) -> None:
    await copilot_service(store, sidecar.url)
    response = await http.post("/api/copilot/chat", json={"prompt": "plain"})
    assert (response.status_code, response.json()) == (500, {"detail": "Internal Server Error"})


async def test_chat_times_out_with_504(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    volumes: Volumes,
    sidecar: FakeSidecar,
) -> None:
    await copilot_service(store, sidecar.url)
    async with await client_for(
        make_ctx(kube, cache, store, namespace, volumes, chatTimeoutSeconds=0.3)
    ) as session:
        response = await session.post("/api/copilot/chat", json={"prompt": "hang"})
    assert (response.status_code, response.json()) == (504, {"detail": "copilot sidecar timed out"})


@pytest.mark.parametrize("running", [False, True])
async def test_chat_with_no_reachable_sidecar_is_503(
    http: httpx.AsyncClient, store: CrStore, running: bool
) -> None:
    if running:
        await copilot_service(store, dead_url())
    response = await http.post("/api/copilot/chat", json={"prompt": "hi"})
    assert (response.status_code, response.json()) == (503, {"detail": "copilot sidecar not reachable"})


async def test_chat_prompt_missing_is_422_and_blank_is_400(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar
) -> None:
    await copilot_service(store, sidecar.url)
    response = await http.post("/api/copilot/chat", json={"cwd": "/workspace"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "prompt"]
    response = await http.post("/api/copilot/chat", json={"prompt": "   "})
    assert (response.status_code, response.json()) == (400, {"detail": "prompt is required"})
    assert sidecar.chats == []


@pytest.mark.parametrize(
    "cwd",
    [
        "/workspace/../etc",
        "/workspace2",
        "/workspace2/x",
        "/etc",
        "workspace",
        "datasets",
        "/workspace/datasets/escape",
    ],
)
async def test_chat_refuses_a_cwd_outside_the_workspace(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar, volumes: Volumes, tmp_path: Path, cwd: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (Path(volumes.datasets) / "escape").symlink_to(outside, target_is_directory=True)
    await copilot_service(store, sidecar.url)
    response = await http.post("/api/copilot/chat", json={"prompt": "hi", "cwd": cwd})
    assert (response.status_code, response.json()) == (400, {"detail": "cwd must be under /workspace"})
    assert sidecar.chats == []  # refused before anything was forwarded


async def test_a_link_that_stays_inside_the_volume_is_accepted(
    http: httpx.AsyncClient, store: CrStore, sidecar: FakeSidecar, volumes: Volumes
) -> None:
    datasets = Path(volumes.datasets)
    (datasets / "1_cats").mkdir()
    (datasets / "current").symlink_to(datasets / "1_cats", target_is_directory=True)
    await copilot_service(store, sidecar.url)
    for cwd in ("/workspace", "/workspace/datasets/current", "/workspace/datasets/not-yet-created"):
        response = await http.post("/api/copilot/chat", json={"prompt": "hi", "cwd": cwd})
        assert response.status_code == 200, cwd


# -- the cwd mapping on its own --------------------------------------------------------------------


def test_check_cwd_maps_the_whole_workspace_when_it_is_mounted(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "apps").mkdir(parents=True)
    (workspace / "apps" / "up").symlink_to(tmp_path, target_is_directory=True)
    mounts = cp.workspace_mounts(
        "/workspace", workspace_dir=str(workspace), models="", datasets="", outputs=""
    )
    assert mounts == {"/workspace": str(workspace)}
    assert cp.check_cwd("/workspace/apps/./x/..", "/workspace", mounts) == "/workspace/apps"
    assert cp.check_cwd("/workspace/apps/up", "/workspace", mounts) is None
    assert cp.check_cwd("/workspace/apps/up/elsewhere", "/workspace", mounts) is None
    # a link that leads back inside is inside
    assert (
        cp.check_cwd("/workspace/apps/up/workspace/apps", "/workspace", mounts)
        == "/workspace/apps/up/workspace/apps"
    )
    assert cp.check_cwd("//workspace//apps", "/workspace", mounts) == "/workspace/apps"
    assert cp.check_cwd("/workspace/\x00", "/workspace", mounts) is None


def test_paths_no_volume_covers_are_checked_lexically() -> None:
    mounts = cp.workspace_mounts("/workspace", workspace_dir="", models="/m", datasets="/d", outputs="/o")
    assert mounts == {"/workspace/models": "/m", "/workspace/datasets": "/d", "/workspace/outputs": "/o"}
    assert cp.check_cwd("/workspace/apps/tool", "/workspace", mounts) == "/workspace/apps/tool"
    assert cp.check_cwd("/workspace/apps/../../root", "/workspace", mounts) is None
