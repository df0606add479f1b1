"""ControlPilot's Comfy integration (CP-37 status, CP-39 HTTP proxy, CP-40 WebSocket bridge).

ComfyUI itself cannot run here, so a small real aiohttp server on 127.0.0.1 plays it: it serves
``/system_stats``, ``/view`` and a ``/ws`` WebSocket that greets, echoes and closes on request,
and records what it was sent. No operator runs: the tests create the ``comfy`` ServiceInstance
and write the status the operator would (phase, ready, endpoint) through the status subresource.
The WebSocket tests serve the ControlPilot app with a real uvicorn on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import WSMsgType, web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
SI = resource_for("ServiceInstance")
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4096  # 1 MiB: streamed, not one small chunk
CLIENT_TASKS = ("_client_to_upstream", "_upstream_to_client")


# -- a fake ComfyUI --------------------------------------------------------------------------------


@dataclass
class FakeComfy:
    """What the fake ComfyUI was asked, and switches for its answers."""

    url: str = ""
    stats_status: int = 200
    view_queries: list[dict[str, str]] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    ws_queries: list[dict[str, str]] = field(default_factory=list)
    ws_closed: asyncio.Event = field(default_factory=asyncio.Event)
    ws_close_code: int | None = None


def fake_comfy_app(fake: FakeComfy) -> web.Application:
    async def system_stats(request: web.Request) -> web.Response:
        if fake.stats_status != 200:
            return web.json_response({"error": "broken"}, status=fake.stats_status)
        return web.json_response({"system": {"os": "posix", "comfyui_version": "0.3.10"}, "devices": []})

    async def view(request: web.Request) -> web.Response:
        fake.view_queries.append(dict(request.query))
        fake.seen_headers.append({k.lower(): v for k, v in request.headers.items()})
        if request.query.get("filename") != "ComfyUI_00001_.png":
            return web.Response(status=404, text="file not found", content_type="text/plain")
        return web.Response(body=PNG_BYTES, content_type="image/png", headers={"X-Comfy": "yes"})

    async def ws(request: web.Request) -> web.WebSocketResponse:
        fake.ws_queries.append(dict(request.query))
        socket_ = web.WebSocketResponse()
        await socket_.prepare(request)
        await socket_.send_str(json.dumps({"type": "status", "data": {"sid": "portal_preview"}}))
        async for message in socket_:
            if message.type == WSMsgType.TEXT:
                if message.data == "close-please":
                    await socket_.close(code=4001, message=b"asked to")
                    break
                await socket_.send_str(f"echo:{message.data}")
            elif message.type == WSMsgType.BINARY:
                await socket_.send_bytes(b"echo:" + message.data)
        fake.ws_close_code = socket_.close_code
        fake.ws_closed.set()
        return socket_

    app = web.Application()
    app.router.add_get("/system_stats", system_stats)
    app.router.add_get("/view", view)
    app.router.add_get("/ws", ws)
    return app


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def dead_url() -> str:
    """A loopback URL nothing listens on (the port was bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def fake_comfy() -> AsyncIterator[FakeComfy]:
    fake = FakeComfy()
    runner = web.AppRunner(fake_comfy_app(fake))
    await runner.setup()
    sock = bound_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield fake
    await runner.cleanup()


# -- the gateway -----------------------------------------------------------------------------------


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Any
) -> GatewayContext:
    return GatewayContext(
        settings=Settings(namespace=namespace, volumes=Volumes(outputs=str(tmp_path))),
        client=kube,
        cache=cache,
        store=store,
        bus=cache.bus,
    )


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
            yield session


@pytest.fixture
async def served(ctx: GatewayContext) -> AsyncIterator[str]:
    """The ControlPilot app on a real uvicorn (WebSockets need a server); its ws:// base URL."""
    sock = bound_socket()
    config = uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


async def comfy_service(
    store: CrStore, *, phase: str = "Running", ready: bool = True, endpoint: str = ""
) -> None:
    """The ``comfy`` ServiceInstance with the status the operator would write."""
    comfy = svc.known_service("comfy")
    assert comfy is not None
    await store.create(SI, svc.new_service_instance(comfy, running=True))
    await store.patch_status(SI, "comfy", {"phase": phase, "ready": ready, "endpoint": endpoint})


def relay_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") in CLIENT_TASKS and not task.done()
    ]


async def eventually(check: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


# -- CP-37 -----------------------------------------------------------------------------------------


async def test_status_is_stopped_when_there_is_no_comfy_service(
    http: httpx.AsyncClient, namespace: str
) -> None:
    response = await http.get("/api/comfy/status")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "stopped"
    assert f"ServiceInstance {namespace}/comfy does not exist" in body["message"]
    assert "POST /api/services/comfy/start" in body["message"]


async def test_status_is_running_with_the_port_when_the_probe_answers(
    http: httpx.AsyncClient, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    response = await http.get("/api/comfy/status")
    assert response.json() == {"status": "running", "port": fake_comfy.url.rsplit(":", 1)[1]}
    assert response.headers["cache-control"].startswith("no-store")  # an /api/* answer


async def test_status_is_error_when_the_probe_gets_an_error_status(
    http: httpx.AsyncClient, store: CrStore, fake_comfy: FakeComfy
) -> None:
    fake_comfy.stats_status = 500
    await comfy_service(store, endpoint=fake_comfy.url)
    body = (await http.get("/api/comfy/status")).json()
    assert body["status"] == "error" and body["message"] == "ComfyUI returned error status (500)"


async def test_status_is_stopped_when_the_endpoint_does_not_answer(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    await comfy_service(store, endpoint=dead_url())
    body = (await http.get("/api/comfy/status")).json()
    assert body["status"] == "stopped" and body["message"].startswith("ComfyUI is not reachable: ")


@pytest.mark.parametrize(
    ("phase", "ready", "status", "words"),
    [
        ("Starting", False, "stopped", "is Starting"),
        ("Stopping", False, "stopped", "is Stopping"),
        ("Error", False, "error", "is Error"),
        ("Running", False, "error", "endpoint does not answer yet"),
    ],
)
async def test_status_follows_the_phase_without_probing(
    http: httpx.AsyncClient,
    store: CrStore,
    fake_comfy: FakeComfy,
    phase: str,
    ready: bool,
    status: str,
    words: str,
) -> None:
    fake_comfy.stats_status = 500  # a probe would say "error": these answers come from the phase
    await comfy_service(store, phase=phase, ready=ready, endpoint=fake_comfy.url)
    body = (await http.get("/api/comfy/status")).json()
    assert body["status"] == status and words in body["message"]


async def test_status_error_names_the_failure_reason(http: httpx.AsyncClient, store: CrStore) -> None:
    await comfy_service(store, phase="Error", ready=False)
    condition = {
        "type": "Degraded",
        "status": "True",
        "reason": "CrashLoopBackOff",
        "message": "main: CrashLoopBackOff",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    await store.patch_status(SI, "comfy", {"conditions": [condition]})
    body = (await http.get("/api/comfy/status")).json()
    assert body["status"] == "error" and "CrashLoopBackOff: main: CrashLoopBackOff" in body["message"]


# -- CP-39 -----------------------------------------------------------------------------------------


async def test_proxy_streams_bytes_with_query_and_content_type(
    http: httpx.AsyncClient, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    response = await http.get(
        "/proxy/comfy/view",
        params={"filename": "ComfyUI_00001_.png", "subfolder": "a b/c", "type": "output"},
        headers={
            "X-Keep": "1",
            "X-Drop": "1",
            "Connection": "keep-alive, X-Drop",
            "Cookie": "session=secret",
            "Authorization": "Bearer gateway-token",
        },
    )
    assert response.status_code == 200
    assert response.content == PNG_BYTES
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-comfy"] == "yes"
    assert fake_comfy.view_queries == [
        {"filename": "ComfyUI_00001_.png", "subfolder": "a b/c", "type": "output"}
    ]
    sent = fake_comfy.seen_headers[0]
    assert sent["x-keep"] == "1"
    for dropped in ("x-drop", "cookie", "authorization"):
        assert dropped not in sent  # hop-by-hop (named in Connection) and the gateway's credentials
    assert sent["host"] == fake_comfy.url.removeprefix("http://")


async def test_proxy_passes_an_upstream_404_through(
    http: httpx.AsyncClient, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    response = await http.get("/proxy/comfy/view?filename=missing.png")
    assert (response.status_code, response.text) == (404, "file not found")
    assert response.headers["content-type"].startswith("text/plain")
    response = await http.get("/proxy/comfy/no/such/route")
    assert response.status_code == 404


async def test_proxy_failure_is_the_500_error_envelope(http: httpx.AsyncClient, store: CrStore) -> None:
    await comfy_service(store, endpoint=dead_url())
    response = await http.get("/proxy/comfy/system_stats")
    assert response.status_code == 500
    body = response.json()
    assert list(body) == ["error"] and body["error"].startswith("Proxy error: ")


async def test_proxy_names_the_service_instance_to_start_when_comfy_is_not_running(
    http: httpx.AsyncClient, store: CrStore, namespace: str
) -> None:
    response = await http.get("/proxy/comfy/view?filename=x.png")
    assert response.status_code == 500
    assert response.json() == {
        "error": f"Proxy error: ComfyUI is not running: ServiceInstance {namespace}/comfy does not exist; "
        "start it with POST /api/services/comfy/start"
    }
    await comfy_service(store, phase="Starting", ready=False, endpoint="")
    error = (await http.get("/proxy/comfy/view?filename=x.png")).json()["error"]
    assert f"ServiceInstance {namespace}/comfy is Starting" in error


async def test_proxy_is_get_only(http: httpx.AsyncClient, store: CrStore, fake_comfy: FakeComfy) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    assert (await http.post("/proxy/comfy/prompt", json={})).status_code == 405


async def test_proxy_reads_the_endpoint_from_the_cache(
    http: httpx.AsyncClient, store: CrStore, fake_comfy: FakeComfy, devcluster: DevCluster
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    devcluster.inject_fault("500", count=100, verb="get", resource="serviceinstances")
    devcluster.inject_fault("500", count=100, verb="list", resource="serviceinstances")
    assert (await http.get("/proxy/comfy/view?filename=ComfyUI_00001_.png")).status_code == 200
    assert (await http.get("/api/comfy/status")).json()["status"] == "running"


async def test_proxy_through_a_real_server_keeps_the_length_and_bytes(
    served: str, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    base = served.replace("ws://", "http://")
    async with httpx.AsyncClient(base_url=base, trust_env=False) as session:
        response = await session.get("/proxy/comfy/view", params={"filename": "ComfyUI_00001_.png"})
    assert response.status_code == 200 and response.content == PNG_BYTES
    assert response.headers["content-length"] == str(len(PNG_BYTES))
    assert response.headers["content-type"] == "image/png"


# -- CP-40 -----------------------------------------------------------------------------------------


async def test_websocket_relays_text_and_binary_both_ways(
    served: str, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    async with connect(f"{served}/ws/comfy", proxy=None) as client:
        greeting = json.loads(await asyncio.wait_for(client.recv(), 5))
        assert greeting == {"type": "status", "data": {"sid": "portal_preview"}}
        await client.send("hello")
        assert await asyncio.wait_for(client.recv(), 5) == "echo:hello"
        await client.send(b"\x00\x01preview")
        assert await asyncio.wait_for(client.recv(), 5) == b"echo:\x00\x01preview"
    assert fake_comfy.ws_queries == [{"clientId": "portal_preview"}]


async def test_closing_the_client_closes_comfy_and_leaves_no_task(
    served: str, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    async with connect(f"{served}/ws/comfy", proxy=None) as client:
        await asyncio.wait_for(client.recv(), 5)
        await eventually(lambda: len(relay_tasks()) == 2)
        await client.close(code=1000)
    await asyncio.wait_for(fake_comfy.ws_closed.wait(), 5)
    await eventually(lambda: not relay_tasks())


async def test_comfy_closing_closes_the_client_with_its_code(
    served: str, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    async with connect(f"{served}/ws/comfy", proxy=None) as client:
        await asyncio.wait_for(client.recv(), 5)
        await client.send("close-please")
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(client.recv(), 5)
        assert client.close_code == 4001
    await eventually(lambda: not relay_tasks())


async def test_a_failed_connect_sends_the_error_message_and_closes(served: str, store: CrStore) -> None:
    await comfy_service(store, endpoint=dead_url())
    async with connect(f"{served}/ws/comfy", proxy=None) as client:
        message = json.loads(await asyncio.wait_for(client.recv(), 5))
        assert message["type"] == "error"
        assert message["message"].startswith("Cannot connect to ComfyUI: ")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)


async def test_no_comfy_service_is_told_over_the_websocket(served: str, namespace: str) -> None:
    async with connect(f"{served}/ws/comfy", proxy=None) as client:
        message = json.loads(await asyncio.wait_for(client.recv(), 5))
    assert message == {
        "type": "error",
        "message": f"Cannot connect to ComfyUI: ComfyUI is not running: ServiceInstance {namespace}/comfy "
        "does not exist; start it with POST /api/services/comfy/start",
    }
