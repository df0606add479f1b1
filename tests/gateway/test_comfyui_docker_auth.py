"""The dashboard's optional login with ``ENABLE_AUTH`` on: users and signing key from a real Secret
in the devcluster, tokens refused when missing, wrong, expired or revoked, on REST routes and on
the WebSocket (a real uvicorn and real WebSocket clients)."""

from __future__ import annotations

import asyncio
import base64
import json
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
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path, *, auth: bool
) -> GatewayContext:
    volumes = Volumes(models=str(tmp_path), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"enableAuth": auth, "authCacheSeconds": 0}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def base_url(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> AsyncIterator[str]:
    """The dashboard with auth on, on a real uvicorn; the auth Secret exists."""
    users = [
        {
            "username": "admin",
            "password_hash": tokens.hash_password(PASSWORD, iterations=1000),
            "role": "administrator",
        }
    ]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "comfyui-docker-auth"},
        "data": {"signing-key": b64(KEY), "users": b64(json.dumps(users).encode())},
    }
    await kube.request("POST", SECRETS.path(namespace), body=secret)
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


async def login(http: httpx.AsyncClient) -> str:
    answer = await http.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
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
