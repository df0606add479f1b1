"""The product's companion guide's client examples, run against the profile on a real uvicorn.

``docs/API.md`` of ZeroClue/ComfyUI-Docker (commit 99b13c0), sections "SDK Examples" (Python with
``requests``, JavaScript with ``fetch``) and "WebSocket Client Example" (Python with
``websockets``, JavaScript with the browser ``WebSocket``), are real clients of this API. Their
call sequences are written here as this test's clients (not copied): the same requests, headers,
parameters and message handling, with the host changed to the test server's.

- Python SDK: ``GET /api/presets`` with ``params={"category": None, "type": "video"}`` (requests
  drops the ``None``) and ``Authorization: Bearer <api key>``, then ``POST
  /api/presets/{id}/install`` with no body; both read with ``response.json()``.
- Python WebSocket: ``websockets.connect("ws://…/ws")``, send ``subscribe`` with ``downloads``,
  ``queue``, ``system``, then ``recv`` forever reading ``data["type"]`` and ``data.get("data")``
  (here: until the install's ``download_progress`` and a ``system_status`` have arrived).
- JavaScript (node 20, a real subprocess): ``listPresets(null, "video")`` builds its query with
  ``URLSearchParams`` and spreads, ``installPreset`` POSTs with headers only; the WebSocket part
  uses ``onopen`` / ``onmessage`` / ``onerror`` / ``onclose`` on node's WebSocket, which node 20
  has behind ``--experimental-websocket``. It installs its preset once our ``subscribed`` answer
  arrived (the guide's example installs nothing; a client acting on pushed news must know the
  subscription is in place).

The guide's API key is our login token: with ``ENABLE_AUTH`` off the guide's literal
``"your-api-key"`` is sent and ignored; with it on, the clients send the token login answered
(the WebSocket as ``?token=``), and the guide's Python client without a key gets the 401 envelope.
No operator runs: an install's ModelPull stays queued, which is all these clients look at (the
download itself is ``test_comfyui_docker_presets_e2e.py``). The catalog is the built-in one, so
the guide's ``type="video"`` listing shows the product's own video presets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
import websockets

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.comfyui_docker import create_app, tokens
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from kubepilot_gateway.profiles.comfyui_docker.catalog import parse_size
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")
PASSWORD = "guide-pw"
NODE = shutil.which("node")
"""Node.js 20 is part of this machine class (the JavaScript client needs its --experimental-websocket)."""


class GuidePythonClient:
    """The guide's Python SDK example's calls (``requests``, blocking: run it in a thread)."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url
        self.headers: dict[str, str] = {}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"

    def list_presets(self, category: str | None = None, type: str | None = None) -> Any:
        params = {"category": category, "type": type}
        return requests.get(f"{self.base_url}/api/presets", params=params, headers=self.headers).json()

    def install_preset(self, preset_id: str) -> Any:
        return requests.post(f"{self.base_url}/api/presets/{preset_id}/install", headers=self.headers).json()


async def guide_python_websocket(
    uri: str, preset_id: str, subscribed: asyncio.Event, within: float = 30
) -> list[JsonObject]:
    """The guide's Python WebSocket example: subscribe, then read ``type`` / ``data`` of every
    message; returns them once ``preset_id``'s ``download_progress`` and a ``system_status`` came.
    ``subscribed`` is set when our ``subscribed`` answer arrives (for the test to act after it)."""
    seen: list[JsonObject] = []
    async with asyncio.timeout(within), websockets.connect(uri) as websocket:
        await websocket.send(json.dumps({"type": "subscribe", "channels": ["downloads", "queue", "system"]}))
        while True:
            message = await websocket.recv()
            data = json.loads(message)
            seen.append({"type": data["type"], "data": data.get("data")})
            if data["type"] == "subscribed":
                subscribed.set()
            types = {m["type"] for m in seen}
            ours = any(m["type"] == "download_progress" and m["data"]["preset_id"] == preset_id for m in seen)
            if ours and "system_status" in types:
                return seen


NODE_CLIENT = """
const base = process.env.BASE_URL;
const apiKey = process.env.API_KEY || null;
const wsKey = process.env.WS_TOKEN || null;
const wsPreset = process.env.WS_PRESET;

// The guide's JavaScript SDK example's calls.
class Dashboard {
  constructor(baseUrl, apiKey = null) {
    this.baseUrl = baseUrl;
    this.headers = {};
    if (apiKey) this.headers['Authorization'] = `Bearer ${apiKey}`;
  }
  async listPresets(category = null, type = null) {
    const params = new URLSearchParams({...(category && { category }), ...(type && { type })});
    const response = await fetch(`${this.baseUrl}/api/presets?${params}`, { headers: this.headers });
    return response.json();
  }
  async installPreset(presetId) {
    const response = await fetch(`${this.baseUrl}/api/presets/${presetId}/install`,
                                 { method: 'POST', headers: this.headers });
    return response.json();
  }
}

const dashboard = new Dashboard(base, apiKey);
const presets = await dashboard.listPresets(null, 'video');
const install = await dashboard.installPreset(process.env.PRESET);

// The guide's JavaScript WebSocket example's handlers.
const received = [];
let installing = null;
const url = base.replace('http://', 'ws://') + '/ws' + (wsKey ? `?token=${wsKey}` : '');
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no download_progress within 30 s: ' +
                                                  JSON.stringify(received))), 30000);
  const ws = new WebSocket(url);
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: 'subscribe', channels: ['downloads', 'queue', 'system'] }));
  };
  ws.onmessage = async (event) => {
    const message = JSON.parse(event.data);
    received.push({ type: message.type, data: message.data ?? null });
    switch (message.type) {
      case 'subscribed':
        // The install's own download_progress may arrive (and close the socket) before its HTTP
        // answer: the answer is awaited below, not here.
        installing = dashboard.installPreset(wsPreset);
        break;
      case 'download_progress':
        if (message.data.preset_id === wsPreset) { clearTimeout(timer); ws.close(); }
        break;
    }
  };
  ws.onerror = (error) => { clearTimeout(timer); reject(new Error('WebSocket error: ' + error.message)); };
  ws.onclose = () => { clearTimeout(timer); resolve(); };
});
const wsInstall = installing === null ? null : await installing;
console.log(JSON.stringify({ presets, install, wsInstall, received }));
"""


async def run_node(env: dict[str, str]) -> JsonObject:
    """The JavaScript clients in node (a real process); what they printed."""
    assert NODE is not None, "node (Node.js 20) is needed: the guide's JavaScript client runs in it"
    process = await asyncio.create_subprocess_exec(
        NODE,
        "--experimental-websocket",
        "--no-warnings",
        "--input-type=module",
        "-e",
        NODE_CLIENT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


@pytest.fixture(params=[False, True], ids=["auth-off", "auth-on"])
async def server(
    request: pytest.FixtureRequest,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[str, bool]]:
    """The dashboard on a real uvicorn (base URL, whether auth is on); with auth on, the Secret exists."""
    auth = bool(request.param)
    if auth:
        users = [{"username": "admin", "password_hash": tokens.hash_password(PASSWORD, iterations=1000)}]
        data = {"signing-key": b"guide-key", "users": json.dumps(users).encode()}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "comfyui-docker-auth"},
            "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
        }
        await kube.request("POST", SECRETS.path(namespace), body=secret)
    (tmp_path / "models").mkdir()
    volumes = Volumes(models=str(tmp_path / "models"), datasets=str(tmp_path), outputs=str(tmp_path))
    profile = {"enableAuth": auth, "systemStatusSeconds": 0.2}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(32)
    uv = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", auth
    uv.should_exit = True
    await asyncio.wait_for(task, 10)
    sock.close()


async def test_the_guides_python_and_javascript_clients_work_as_written(
    server: tuple[str, bool], cache: ClusterCache
) -> None:
    base_url, auth = server
    api_key, ws_query = "your-api-key", ""
    if auth:
        anonymous = await asyncio.to_thread(GuidePythonClient(base_url).list_presets, type="video")
        assert anonymous["error"]["code"] == "UNAUTHORIZED"
        login = await asyncio.to_thread(
            requests.post, f"{base_url}/api/auth/login", json={"username": "admin", "password": PASSWORD}
        )
        api_key = login.json()["token"]
        ws_query = f"?token={api_key}"

    # Python SDK: list the video presets, install the smallest; the Python WebSocket client,
    # subscribed first, sees the install's download_progress and the system ticks.
    dashboard = GuidePythonClient(base_url, api_key=api_key)
    presets = await asyncio.to_thread(dashboard.list_presets, type="video")
    rows = presets["presets"]
    assert rows and {p["type"] for p in rows} == {"video"}
    assert {"HUNYUAN_T2V_720P", "WAN2_2_TI2V_5B_FP16", "LTX_VIDEO_T2V"} <= {p["id"] for p in rows}
    assert presets["filtered"] == len(rows) and presets["total"] > len(rows)
    by_size = sorted(rows, key=lambda p: parse_size(p["download_size"]))
    first, second, third = (p["id"] for p in by_size[:3])

    ws_uri = base_url.replace("http://", "ws://") + "/ws" + ws_query
    subscribed = asyncio.Event()
    listener = asyncio.create_task(guide_python_websocket(ws_uri, first, subscribed))
    await asyncio.wait_for(subscribed.wait(), 10)
    install = await asyncio.to_thread(dashboard.install_preset, first)
    assert install["status"] == "installing" and install["preset_id"] == first
    assert install["download_id"].startswith("dl_")
    seen = await listener
    progress = next(
        m["data"] for m in seen if m["type"] == "download_progress" and m["data"]["preset_id"] == first
    )
    assert progress["download_id"] == install["download_id"] and progress["progress"] == 0.0
    status = next(m["data"] for m in seen if m["type"] == "system_status")
    assert set(status) == {"cpu_usage", "memory_usage", "gpu_usage", "disk_usage"}

    # JavaScript: the same listing; installing the running preset again is the same download; its
    # WebSocket client sees the download_progress of the preset it installs once subscribed.
    env = {"BASE_URL": base_url, "API_KEY": api_key, "PRESET": first, "WS_PRESET": second}
    if auth:
        env["WS_TOKEN"] = api_key
    node = await run_node(env)
    assert [p["id"] for p in node["presets"]["presets"]] == [p["id"] for p in rows]
    assert node["install"]["download_id"] == install["download_id"]
    assert node["wsInstall"]["status"] == "installing" and node["wsInstall"]["preset_id"] == second
    types = [m["type"] for m in node["received"]]
    assert types[0] == ("authenticated" if auth else "subscribed"), types
    pushed = next(
        m["data"]
        for m in node["received"]
        if m["type"] == "download_progress" and m["data"]["preset_id"] == second
    )
    assert pushed["download_id"] == node["wsInstall"]["download_id"]

    for preset_id in (first, second):
        pull = cache.get(MP, dl.pull_name(preset_id))
        assert pull is not None and dl.download_id(pull).startswith("dl_")
    assert cache.get(MP, dl.pull_name(third)) is None
