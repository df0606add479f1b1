"""The dashboard's optional login with ``ENABLE_AUTH`` on: users and signing key from a real Secret
in the devcluster, tokens refused when missing, wrong, expired or revoked, on REST routes and on
the WebSocket (a real uvicorn and real WebSocket clients)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.comfyui_docker import create_app, tokens
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
KEY = b"test-signing-key"
PASSWORD = "s3cret"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def context(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    tmp_path: Path,
    *,
    auth: bool,
    **extra: Any,
) -> GatewayContext:
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"enableAuth": auth, "authCacheSeconds": 0, **extra}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


async def create_secret(kube: KubeClient, namespace: str, *, viewer: bool = False) -> None:
    """The auth Secret: the signing key and the user ``admin`` (and ``watcher``, a ``viewer``)."""
    users = [
        {
            "username": "admin",
            "password_hash": tokens.hash_password(PASSWORD, iterations=1000),
            "role": "administrator",
        }
    ]
    if viewer:
        users.append(
            {
                "username": "watcher",
                "password_hash": tokens.hash_password(PASSWORD, iterations=1000),
                "role": "viewer",
            }
        )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "comfyui-docker-auth"},
        "data": {"signing-key": b64(KEY), "users": b64(json.dumps(users).encode())},
    }
    await kube.request("POST", SECRETS.path(namespace), body=secret)


@pytest.fixture
async def base_url(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> AsyncIterator[str]:
    """The dashboard with auth on, on a real uvicorn; the auth Secret exists."""
    await create_secret(kube, namespace, viewer=True)
    app = create_app(context(kube, cache, store, namespace, tmp_path, auth=True))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


def refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert (error["code"], error["message"]) == ("UNAUTHORIZED", message)
    assert response.headers["X-API-Version"] == "1.0.0"


async def login(http: httpx.AsyncClient, username: str = "admin") -> str:
    answer = await http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["expires_in"] == 3600 and body["token"].startswith("eyJ")
    return str(body["token"])


async def test_rest_routes_need_a_valid_unrevoked_token(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        assert (await http.get("/health")).status_code == 200  # open
        refused(await http.get("/api/presets"), "Authentication required")
        refused(
            await http.post("/api/auth/login", json={"username": "admin", "password": "no"}),
            "Invalid username or password",
        )
        refused(
            await http.post("/api/auth/login", json={"username": "eve", "password": PASSWORD}),
            "Invalid username or password",
        )
        token = await login(http)
        bearer = {"Authorization": f"Bearer {token}"}
        presets = await http.get("/api/presets", headers=bearer)
        assert presets.status_code == 200 and presets.headers["X-RateLimit-Limit"] == "1000"  # per token
        verify = await http.get("/api/auth/verify", headers=bearer)
        assert verify.json() == {"valid": True, "user": {"username": "admin", "role": "administrator"}}
        # login also set the session cookie: the cookie alone authenticates
        assert (await http.get("/api/auth/verify")).status_code == 200

    async with httpx.AsyncClient(base_url=base_url) as fresh:
        assert (await fresh.get("/health")).headers["X-RateLimit-Limit"] == "100"  # no token: per IP
        refused(
            await fresh.get("/api/downloads", headers={"Authorization": f"Bearer {token}x"}), "Invalid token"
        )
        other_key, _ = tokens.issue(
            b"another-key", "admin", "administrator", now=int(time.time()), lifetime=60
        )
        refused(
            await fresh.get("/api/downloads", headers={"Authorization": f"Bearer {other_key}"}),
            "Invalid token",
        )
        old, _ = tokens.issue(KEY, "admin", "administrator", now=int(time.time()) - 7200, lifetime=3600)
        refused(
            await fresh.get("/api/downloads", headers={"Authorization": f"Bearer {old}"}), "Token expired"
        )
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await fresh.post("/api/auth/logout", headers=bearer)).json() == {"status": "success"}
        refused(await fresh.get("/api/auth/verify", headers=bearer), "Token revoked")
        refused(await fresh.post("/api/auth/logout", headers=bearer), "Token revoked")


async def test_the_websocket_needs_a_token_by_query_or_first_message(base_url: str) -> None:
    ws_url = base_url.replace("http://", "ws://") + "/ws"
    async with httpx.AsyncClient(base_url=base_url) as http:
        token = await login(http)

    async with connect(f"{ws_url}?token={token}") as ws:
        assert json.loads(await ws.recv()) == {
            "type": "authenticated",
            "user": {"username": "admin", "role": "administrator"},
        }
        await ws.send(json.dumps({"type": "subscribe", "channels": ["downloads"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"

    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "authenticated"

    async with httpx.AsyncClient(base_url=base_url) as http:
        viewer = await login(http, "watcher")
    async with connect(f"{ws_url}?token={viewer}") as ws:
        assert json.loads(await ws.recv())["user"] == {"username": "watcher", "role": "viewer"}
        await ws.send(
            json.dumps({"type": "action", "action": "install_preset", "data": {"preset_id": "SD15_BASE"}})
        )
        refusal = json.loads(await ws.recv())
        assert (refusal["type"], refusal["data"]["code"]) == ("error", "FORBIDDEN")

    for url, first in (
        (ws_url, {"type": "subscribe", "channels": ["downloads"]}),
        (f"{ws_url}?token=bad", None),
    ):
        async with connect(url) as ws:
            if first is not None:
                await ws.send(json.dumps(first))
            error = json.loads(await ws.recv())
            assert error["type"] == "error" and error["data"]["code"] == "UNAUTHORIZED"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    async with httpx.AsyncClient(base_url=base_url) as http:
        await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
    async with connect(f"{ws_url}?token={token}") as ws:
        error = json.loads(await ws.recv())
        assert (error["data"]["code"], error["data"]["message"]) == ("UNAUTHORIZED", "Token revoked")


async def test_with_auth_off_login_is_absent_and_everyone_is_verified(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> None:
    app = create_app(context(kube, cache, store, namespace, tmp_path, auth=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d.test") as http:
        assert (await http.get("/api/presets")).status_code == 200
        login_answer = await http.post("/api/auth/login", json={"username": "a", "password": "b"})
        assert login_answer.status_code == 404 and login_answer.json()["error"]["code"] == "NOT_FOUND"
        assert (await http.get("/api/auth/verify")).json()["valid"] is True
        assert (await http.post("/api/auth/logout")).json() == {"status": "success"}


def test_tokens_and_password_hashes() -> None:
    encoded = tokens.hash_password("pw", iterations=1000)
    assert tokens.check_password("pw", encoded) and not tokens.check_password("pW", encoded)
    assert not tokens.check_password("pw", "plain") and not tokens.check_password("pw", "md5$1$a$b")
    token, claims = tokens.issue(KEY, "u", "r", now=1000, lifetime=10)
    assert tokens.verify(KEY, token, now=1009) == claims
    for bad, now in ((token, 1010), ("a.b", 1000), ("x.y.z", 1000)):
        with pytest.raises(tokens.TokenError):
            tokens.verify(KEY, bad, now=now)


async def test_rate_limits_per_token_and_per_ip_with_the_headers_on_every_answer(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> None:
    """Each login token has its own window, apart from its IP's; refusals (401, 429) and an
    unexpected error's 500 carry the rate headers too (a route that raises stands for any bug)."""
    await create_secret(kube, namespace)
    ctx = context(kube, cache, store, namespace, tmp_path, auth=True, rateLimitPerIp=4, rateLimitPerToken=2)
    app = create_app(ctx)

    @app.get("/api/test-boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://d.test") as http:

        def limits(response: httpx.Response) -> tuple[int, str, str]:
            headers = response.headers
            assert headers["X-API-Version"] == "1.0.0"
            reset = int(headers["X-RateLimit-Reset"])
            assert headers["X-RateLimit-Reset-Time"] == time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset)
            )
            return response.status_code, headers["X-RateLimit-Limit"], headers["X-RateLimit-Remaining"]

        first = await login(http)  # IP: 1 of 4
        http.cookies.clear()  # login also set the session cookie: send the token as a Bearer only
        one = {"Authorization": f"Bearer {first}"}
        assert limits(await http.get("/api/downloads", headers=one)) == (200, "2", "1")
        assert limits(await http.get("/api/test-boom", headers=one)) == (500, "2", "0")
        limited = await http.get("/api/downloads", headers=one)
        assert limits(limited) == (429, "2", "0")
        assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60

        # The token's requests did not use the IP's window; a refused request counts in it.
        assert limits(await http.get("/health")) == (200, "4", "2")
        refused_answer = await http.get("/api/presets")
        assert limits(refused_answer) == (401, "4", "1")
        assert refused_answer.json()["error"]["code"] == "UNAUTHORIZED"
        second = await login(http)  # IP: 4 of 4
        http.cookies.clear()
        two = {"Authorization": f"Bearer {second}"}
        assert limits(await http.get("/api/downloads", headers=two)) == (200, "2", "1")  # its own window
        forged = {"Authorization": f"Bearer {second}x"}  # not a token of ours: the IP's window
        over = await http.get("/api/downloads", headers=forged)
        assert limits(over) == (429, "4", "0") and "Retry-After" in over.headers


async def test_every_route_refuses_bad_tokens_and_a_viewer_may_only_read(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> None:
    """Every HTTP route of the app (found from its OpenAPI description, so a new one is covered too) but the
    open ones answers 401 to a missing, wrong, expired or revoked token; a ``viewer`` reads but any
    write (REST or the WebSocket's install_preset) is 403 ``FORBIDDEN``."""
    await create_secret(kube, namespace, viewer=True)
    app = create_app(context(kube, cache, store, namespace, tmp_path, auth=True, rateLimitEnabled=False))
    calls = [
        (method.upper(), re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", path))
        for path, operations in app.openapi()["paths"].items()
        for method in sorted(operations)
        if path not in ("/health", "/api/health", "/api/auth/login")
    ]
    assert len(calls) >= 25 and ("DELETE", "/api/models") in calls  # the seed's 27 but two open ones
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://d.test") as http:
        revoked = await login(http)
        await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {revoked}"})
        http.cookies.clear()
        expired, _ = tokens.issue(KEY, "admin", "administrator", now=int(time.time()) - 7200, lifetime=60)
        cases = {
            "Authentication required": {},
            "Invalid token": {"Authorization": f"Bearer {revoked[:-2]}xx"},
            "Token expired": {"Authorization": f"Bearer {expired}"},
            "Token revoked": {"Authorization": f"Bearer {revoked}"},
        }
        for message, headers in cases.items():
            for method, path in calls:
                answer = await http.request(method, path, headers=headers, json={})
                assert answer.status_code == 401, (method, path, message, answer.text)
                assert answer.json()["error"]["message"] == message, (method, path)

        viewer = {"Authorization": f"Bearer {await login(http, 'watcher')}"}
        http.cookies.clear()
        assert (await http.get("/api/presets", headers=viewer)).status_code == 200
        assert (await http.get("/api/auth/verify", headers=viewer)).json()["user"]["role"] == "viewer"
        for method, path in (
            ("POST", "/api/presets/SD15_BASE/install"),
            ("DELETE", "/api/models"),
            ("POST", "/api/comfyui/execute"),
            ("DELETE", "/api/comfyui/queue"),
            ("POST", "/api/workflows"),
        ):
            answer = await http.request(method, path, headers=viewer, json={"paths": ["x/y"]})
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "FORBIDDEN"
        assert (await http.post("/api/auth/logout", headers=viewer)).json() == {"status": "success"}
