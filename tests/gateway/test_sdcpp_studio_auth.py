"""sd.cpp Studio's API key over the devcluster (real HTTP through ASGI and a real uvicorn for the
WebSocket): with a key set (a mounted-Secret-style file), every route the app serves refuses a
request without it or with a wrong one (401, or the product's 403 for a wrong key in product mode)
and lets it through with ``Authorization: Bearer`` or ``X-API-Key``; ``/api/health`` and
``/api/config`` stay open and ``/api/config`` says a key is required; OPTIONS stays a 204. Also the
listener's own auth in front of the profile, which leaves the same two routes open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from kubepilot_gateway.app.gateway import build_profile_app
from kubepilot_gateway.app.settings import AuthSettings, ListenerSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.sdcpp_studio import PROFILE, build_app
from tests.gateway.conftest import stack_settings
from tests.gateway.test_sdcpp_studio_ws import serve
from tests.operator.harness import Storage

KEY = "k3y-for-tests"
MODELS = [{"id": "tiny-sd", "path": "diffusers/tiny-sd"}]
UUID = "0b9c6d3e-1f2a-4b5c-8d7e-9f0a1b2c3d4e"


def context(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    **profile: Any,
) -> GatewayContext:
    settings = stack_settings(
        namespace, storage, profileSettings={"sdcpp-studio": {"models": MODELS, **profile}}
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-key"
    path.write_text(f"{KEY}\n")
    return path


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route the app serves (its OpenAPI paths), parameters filled in."""
    found = []
    for template, operations in app.openapi()["paths"].items():
        path = template.replace("{generation_id}", UUID).replace("{job_id}", UUID)
        path = path.replace("{image_id}", f"{UUID}-0").replace("{file_name}", f"{UUID}-0.png")
        path = path.replace("{model_id}", "tiny-sd").replace("{download_id}", UUID)
        found += [(method.upper(), path) for method in operations]
    return found


@pytest.mark.parametrize("compat", ["document", "product"])
async def test_every_route_but_health_and_config_needs_the_key(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    key_file: Path,
    compat: str,
) -> None:
    app = build_app(
        context(kube, cache, store, namespace, storage, compat=compat, apiKeyFile=str(key_file)), cors=True
    )
    routes = every_route(app)
    assert len(routes) > 45  # the seed's 44 REST routes, txt2img / img2img and the product's extras
    open_ = {("GET", "/api/health"), ("GET", "/api/config")}
    assert open_ <= set(routes)
    wrong_status = 403 if compat == "product" else 401
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sd.test") as http:
        config = (await http.get("/api/config")).json()
        assert config["authRequired" if compat == "product" else "authEnabled"] is True
        assert (await http.get("/api/health")).status_code == 200
        for method, path in routes:
            if (method, path) in open_:
                continue
            missing = await http.request(method, path)
            assert missing.status_code == 401, (method, path, missing.text)
            assert missing.json()["error"] == "Unauthorized"
            wrong = await http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == wrong_status, (method, path, wrong.text)
            wrong = await http.request(method, path, headers={"X-API-Key": "nope"})
            assert wrong.status_code == wrong_status, (method, path, wrong.text)
            # With the key the route answers for itself (a 400 for the bad body, a 404, or data);
            # the body is invalid for every POST, so no synchronous route waits for a job.
            body = {"width": 1} if method == "POST" else None
            good = await http.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
            assert good.status_code not in (401, 403, 500), (method, path, good.text)
        if compat == "product":
            assert (await http.get("/api/queue")).json()["message"].startswith("Missing API key")
            refused = await http.get("/api/queue", headers={"X-API-Key": "nope"})
            assert refused.json() == {"error": "Forbidden", "message": "Invalid API key"}
        else:
            assert (await http.get("/api/queue")).headers["www-authenticate"] == "Bearer"
        by_header = await http.get("/sdapi/v1/sd-models", headers={"x-api-key": KEY})
        assert by_header.status_code == 200 and by_header.json()[0]["title"] == "tiny-sd"
        preflight = await http.options(
            "/v1/images/generations",
            headers={"Origin": "http://st.test", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
        refused = await http.get("/api/queue", headers={"Origin": "http://st.test"})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"


async def test_without_a_key_nothing_is_asked_and_config_says_so(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    app = build_app(context(kube, cache, store, namespace, storage, compat="product"), cors=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sd.test") as http:
        assert (await http.get("/api/config")).json()["authRequired"] is False
        assert (await http.get("/api/queue", headers={"Authorization": "Bearer anything"})).status_code == 200


async def test_the_websocket_needs_the_key_in_a_header_or_the_query(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, key_file: Path
) -> None:
    ctx = context(kube, cache, store, namespace, storage, apiKeyFile=str(key_file))
    server, task, sock = await serve(ctx)
    port = sock.getsockname()[1]
    try:
        for url, headers in (
            (f"ws://127.0.0.1:{port}/ws", {}),
            (f"ws://127.0.0.1:{port}/ws?api_key=nope", {}),
            (f"ws://127.0.0.1:{port}/ws", {"X-API-Key": "nope"}),
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=headers):
                    pass
            assert refused.value.response.status_code == 403  # a handshake closed before accept
        for url, headers in (
            (f"ws://127.0.0.1:{port}/ws?api_key={KEY}", {}),
            (f"ws://127.0.0.1:{port}/ws", {"Authorization": f"Bearer {KEY}"}),
        ):
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                assert json.loads(await ws.recv())["type"] == "pong"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def behind_listener_auth(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("SDCPP_TEST_LISTENER_TOKENS", KEY)
    auth = AuthSettings(enabled=True, tokensEnv="SDCPP_TEST_LISTENER_TOKENS", apiKeyHeader="X-API-Key")
    ctx = context(kube, cache, store, namespace, storage, authEnabled=True)
    served = build_profile_app(ctx, PROFILE, listeners=ListenerSettings(auth=auth))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=served), base_url="http://sd.test"
    ) as http:
        yield http


async def test_the_listeners_auth_leaves_health_and_config_open_and_answers_in_the_products_shape(
    behind_listener_auth: httpx.AsyncClient,
) -> None:
    http = behind_listener_auth
    assert (await http.get("/api/config")).json()["authEnabled"] is True
    assert (await http.get("/api/health")).status_code == 200
    refused = await http.post("/sdapi/v1/txt2img", json={"prompt": "x"})
    assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    assert (await http.get("/sdapi/v1/options", headers={"X-API-Key": KEY})).status_code == 200
    assert (await http.options("/v1/images/generations")).status_code == 204
