"""The HomePilot profile without the operator: the proxy to the application, its 503, the endpoints
answered from the cluster and the volumes, API keys as a Secret, and the docs.

The HomePilot application cannot run here (its image is not available), so a small real aiohttp
server on 127.0.0.1 plays it (``FakeHomePilot``, also used by ``test_homepilot_proxy`` and the
end-to-end tests): it records every request (method, path, query, headers, body bytes) and what
it answered, answers with a status and body the test chooses, streams a body in chunks (one
stream waits for the test between chunks), sleeps on ``?delay=``, and keeps story sessions the
way HomePilot's story store does (``GET /story/{id}``, ``POST /story/scene/image``). No operator
runs: the tests create the application's ServiceInstance (``serviceType: homepilot``) and write
the status the operator would (phase, ready, endpoint) through the status subresource.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from kubepilot_gateway.app.gateway import build_combined_app
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, ClusterCache, CrStore, KubeClient, NotFound, resource_for
from kubepilot_gateway.profiles.homepilot import PROFILE, create_app
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
SI = resource_for("ServiceInstance")
APP = "homepilot"
CHUNKS = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]
PROVIDER_KEY = "hf_provider_key_0123456789"


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    """What the application answered (0 for a streamed answer)."""
    answer: bytes = b""


@dataclass
class FakeHomePilot:
    """A stand-in for the application: records requests, answers as told."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    stories: dict[str, JsonObject] = field(default_factory=dict)
    """Story sessions as ``GET /story/{id}`` answers them (HomePilot's ``get_story``)."""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    """``/stream-gated`` sends its first chunk, then waits for this before the rest."""

    def last(self) -> Seen:
        assert self.seen, "the application received nothing"
        return self.seen[-1]


def _story_answer(fake: FakeHomePilot, request: web.Request, body: bytes) -> web.Response | None:
    """HomePilot's story store, for the routes the profile reads and writes."""
    if request.method == "POST" and request.path == "/story/scene/image":
        data = json.loads(body)
        story = fake.stories.get(str(data.get("session_id")))
        scene = next((s for s in (story or {}).get("scenes", []) if s["idx"] == data.get("scene_idx")), None)
        if scene is None:
            return web.json_response({"ok": False, "error": "Scene not found"}, status=404)
        scene["image_url"] = data["image_url"]
        return web.json_response({"ok": True})
    if request.method == "GET" and request.path.startswith("/story/") and request.path.count("/") == 2:
        found = fake.stories.get(request.path.removeprefix("/story/"))
        if found is None:
            return web.json_response({"ok": False, "error": "session not found"}, status=404)
        return web.json_response(found)
    return None


def fake_app(fake: FakeHomePilot) -> web.Application:
    async def any_route(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(
            request.method,
            request.path,
            request.raw_path.partition("?")[2],
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        fake.seen.append(seen)
        await asyncio.sleep(float(request.query.get("delay", "0")))
        if request.path in ("/stream", "/stream-gated"):
            response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for index, chunk in enumerate(CHUNKS):
                await response.write(chunk)
                if index == 0 and request.path == "/stream-gated":
                    await asyncio.wait_for(fake.gate.wait(), 10)
                await asyncio.sleep(0.01)
            await response.write_eof()
            return response
        answer = _story_answer(fake, request, body)
        if answer is None and request.path == "/whoami":  # a provider's key check (Hugging Face's shape)
            good = request.headers.get("Authorization") == f"Bearer {PROVIDER_KEY}"
            answer = web.json_response(
                {"name": "alice"} if good else {"error": "bad"}, status=200 if good else 401
            )
        if answer is None and request.path == "/files/upload-1.png":
            answer = web.Response(body=b"not an image", content_type="image/png")
        if answer is None and request.path.startswith("/missing"):
            answer = web.json_response({"detail": "Project not found"}, status=404)
        if answer is None:
            status = 201 if request.method == "POST" and request.path == "/projects" else 200
            answer = web.json_response(
                {"echo": request.method, "path": request.path, "bytes": len(body)},
                status=status,
                headers={"X-HomePilot": "yes"},
            )
        seen.status, seen.answer = answer.status, bytes(answer.body or b"")  # type: ignore[arg-type]
        return answer

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", any_route)
    return app


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.fixture
async def fake_homepilot() -> AsyncIterator[FakeHomePilot]:
    fake = FakeHomePilot()
    runner = web.AppRunner(fake_app(fake))
    await runner.setup()
    sock = bound_socket()
    await web.SockSite(runner, sock).start()
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield fake
    await runner.cleanup()


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    for name in ("models", "outputs", "datasets"):
        (tmp_path / name).mkdir()
    return Volumes(
        models=str(tmp_path / "models"),
        outputs=str(tmp_path / "outputs"),
        datasets=str(tmp_path / "datasets"),
    )


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> GatewayContext:
    settings = Settings(namespace=namespace, volumes=volumes)
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://homepilot.test") as session:
            yield session


async def app_service(
    store: CrStore, *, phase: str = "Running", ready: bool = True, endpoint: str = ""
) -> None:
    """The application's ServiceInstance with the status the operator would write."""
    await store.create(SI, {"metadata": {"name": APP}, "spec": {"serviceType": "homepilot", "running": True}})
    await store.patch_status(SI, APP, {"phase": phase, "ready": ready, "endpoint": endpoint})


# -- the proxy -------------------------------------------------------------------------------------


async def test_proxy_passes_methods_queries_bodies_and_statuses_through(
    http: httpx.AsyncClient, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    await app_service(store, endpoint=fake_homepilot.url)

    listed = await http.get("/conversations?limit=5&project_id=p%201", headers={"X-API-Key": "app-key"})
    assert listed.status_code == 200 and listed.headers["x-homepilot"] == "yes"
    seen = fake_homepilot.last()
    assert (seen.method, seen.path, seen.query) == ("GET", "/conversations", "limit=5&project_id=p%201")
    assert seen.headers["x-api-key"] == "app-key"  # HomePilot's own key header goes through
    assert seen.headers["x-forwarded-host"] == "homepilot.test"
    assert "transfer-encoding" not in seen.headers and seen.body == b""

    created = await http.post("/projects", json={"name": "Persona", "project_type": "persona"})
    assert created.status_code == 201
    assert json.loads(fake_homepilot.last().body) == {"name": "Persona", "project_type": "persona"}

    for method in ("PUT", "PATCH", "DELETE"):
        answer = await http.request(method, "/studio/videos/v1", content=b'{"title": "x"}')
        assert answer.json()["echo"] == method
        assert fake_homepilot.last().method == method

    missing = await http.get("/missing/project")
    assert missing.status_code == 404 and missing.json() == {"detail": "Project not found"}

    # Text chat is the application's: the very bytes the client sent.
    raw = b'{"message": "hello", "mode": "chat", "unknown_field": [1, 2]}'
    chat = await http.post("/chat", content=raw, headers={"Content-Type": "application/json"})
    assert chat.status_code == 200
    assert (fake_homepilot.last().path, fake_homepilot.last().body) == ("/chat", raw)

    # The gateway's own credentials never reach the application.
    await http.get("/personas", headers={"Authorization": "Bearer gateway-token", "Cookie": "s=1"})
    assert "authorization" not in fake_homepilot.last().headers
    assert "cookie" not in fake_homepilot.last().headers


async def test_proxy_streams_bodies_and_uploads(
    http: httpx.AsyncClient, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    await app_service(store, endpoint=fake_homepilot.url)
    chunks: list[bytes] = []
    async with http.stream("GET", "/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
    assert b"".join(chunks) == b"".join(CHUNKS)

    payload = bytes(range(256)) * 8192  # 2 MiB
    upload = await http.post("/upload", files={"file": ("cat.png", payload, "image/png")})
    assert upload.status_code == 200
    seen = fake_homepilot.last()
    assert seen.headers["content-type"].startswith("multipart/form-data")
    assert payload in seen.body  # the multipart body arrived whole


async def test_proxy_answers_503_naming_the_service_instance_until_it_runs(
    http: httpx.AsyncClient, store: CrStore, namespace: str, fake_homepilot: FakeHomePilot
) -> None:
    absent = await http.get("/conversations")
    assert absent.status_code == 503
    detail = absent.json()["detail"]
    assert f"ServiceInstance {namespace}/{APP} does not exist" in detail and "Start it" in detail

    await app_service(store, phase="Stopped", ready=False, endpoint=fake_homepilot.url)
    stopped = await http.post("/story/start", json={"premise": "a cat"})
    assert stopped.status_code == 503 and "is Stopped" in stopped.json()["detail"]
    # Text chat and LLM model listings need the application too.
    assert (await http.post("/chat", json={"message": "hi"})).status_code == 503
    assert (await http.get("/models", params={"provider": "ollama"})).status_code == 503
    assert fake_homepilot.seen == []

    await store.patch_status(SI, APP, {"phase": "Running", "ready": True})
    assert (await http.get("/conversations")).status_code == 200


# -- answered here ---------------------------------------------------------------------------------


async def test_health_models_catalog_and_capabilities(
    http: httpx.AsyncClient, volumes: Volumes, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    models = Path(volumes.models)
    (models / "checkpoints").mkdir()
    (models / "checkpoints" / "sd_xl_base_1.0.safetensors").write_bytes(b"weights")
    (models / "checkpoints" / "notes.txt").write_text("not a model")
    (models / "diffusers" / "tiny-sd").mkdir(parents=True)
    (models / "diffusers" / "tiny-sd" / "model_index.json").write_text("{}")
    (models / "upscale_models").mkdir()
    (models / "upscale_models" / "RealESRGAN_x4plus.pth").write_bytes(b"weights")

    health = (await http.get("/health")).json()
    assert health["ok"] is True and health["service"] == "homepilot-backend" and health["version"] == "2.1.0"
    detailed = await http.get("/health/detailed")
    assert detailed.status_code == 503 and detailed.json()["services"]["homepilot"]["ok"] is False
    await app_service(store, endpoint=fake_homepilot.url)
    detailed = await http.get("/health/detailed")
    assert detailed.status_code == 200 and detailed.json()["services"]["homepilot"]["status"] == "running"

    image = (await http.get("/models", params={"provider": "comfyui", "model_type": "image"})).json()
    assert image["models"] == ["sd_xl_base_1.0.safetensors", "diffusers/tiny-sd"] and image["count"] == 2
    every = (await http.get("/models", params={"provider": "comfyui"})).json()
    assert every["model_type"] == "all" and "RealESRGAN_x4plus.pth" in every["models"]
    unsupported = await http.get("/models", params={"provider": "nope"})
    assert unsupported.status_code == 400 and unsupported.json()["code"] == "unsupported_provider"

    catalog = (await http.get("/model-catalog")).json()
    assert catalog["ok"] is True
    entries = {e["id"]: e for e in catalog["providers"]["comfyui"]["image"]}
    assert entries["sd_xl_base_1.0.safetensors"]["installed"] is True
    assert entries["v1-5-pruned-emaonly.safetensors"]["installed"] is False

    capabilities = (await http.get("/v1/capabilities")).json()["capabilities"]
    assert set(capabilities) >= {"upscale", "enhance_photo", "enhance_faces", "background_remove", "outpaint"}
    # The upscaler file in upscale_models/ is one the generator can name (a bare file name).
    assert capabilities["upscale"]["available"] is True
    assert capabilities["upscale"]["model"] == "RealESRGAN_x4plus.pth"
    assert capabilities["upscale"]["installed_models"] == ["RealESRGAN_x4plus.pth"]
    assert capabilities["enhance_photo"]["available"] is True
    assert "kubepilot generator" in capabilities["enhance_faces"]["reason"]
    for inpainting in ("outpaint", "inpaint", "background_replace"):
        assert capabilities[inpainting]["available"] is True  # inpainting with the installed model
        assert capabilities[inpainting]["model"] == "checkpoints/sd_xl_base_1.0.safetensors"
    assert capabilities["background_blur"]["available"] is True
    one = (await http.get("/v1/capabilities/background_remove")).json()
    assert one["available"] is False and one["endpoint"] == "/v1/background"
    assert "segmentation model" in one["reason"]
    unknown = (await http.get("/v1/capabilities/teleport")).json()
    assert unknown["error"] == "Unknown feature: teleport" and "upscale" in unknown["valid_features"]


async def test_image_endpoints_refuse_what_the_generator_cannot_do_and_bad_input(
    http: httpx.AsyncClient, volumes: Volumes
) -> None:
    upscale = await http.post("/v1/upscale", json={"image_url": "/files/kubepilot/generations/x.png"})
    assert upscale.status_code == 503 and upscale.json()["detail"].startswith("Upscale is not available")
    assert "No upscale model installed. Please install one of: 4x UltraSharp" in upscale.json()["detail"]
    upscale_cap = (await http.get("/v1/capabilities/upscale")).json()
    assert upscale_cap["available"] is False and "No upscale model installed" in upscale_cap["reason"]
    faces = await http.post("/v1/enhance", json={"image_url": "/files/a.png", "mode": "faces"})
    assert faces.status_code == 503 and "Face restoration" in faces.json()["detail"]
    assert (await http.post("/v1/upscale", json={})).status_code == 422
    assert (await http.post("/v1/enhance", json={"image_url": "x", "scale": 3})).status_code == 422
    too_far = {"image_url": "/files/kubepilot/generations/x.png", "extend_pixels": 2000}
    assert (await http.post("/v1/outpaint", json=too_far)).status_code == 422
    gone = await http.post("/v1/outpaint", json={"image_url": "/files/kubepilot/generations/none.png"})
    assert gone.status_code == 400 and "not found" in gone.json()["detail"]
    outpaint_cap = (await http.get("/v1/capabilities/outpaint")).json()
    assert outpaint_cap["available"] is False and "No image model" in outpaint_cap["reason"]

    bad_chat = await http.post("/chat", json={"message": "a cat", "mode": "imagine", "imgWidth": "wide"})
    assert bad_chat.status_code == 422 and bad_chat.json()["detail"][0]["loc"] == ["body", "imgWidth"]
    # Nothing installed: HomePilot's own 200 with the error as text.
    nothing = await http.post("/chat", json={"message": "a cat", "mode": "imagine"})
    assert nothing.status_code == 200
    assert nothing.json()["media"] is None and "no image model" in nothing.json()["text"]

    outputs = Path(volumes.outputs)
    (outputs / "secret.txt").write_text("not served")
    (outputs / "generations").mkdir()
    (outputs / "generations" / "a.png").write_bytes(b"png")
    assert (await http.get("/files/kubepilot/generations/a.png")).content == b"png"
    for path in ("/files/kubepilot/secret.txt", "/files/kubepilot/generations/../secret.txt"):
        assert (await http.get(path)).status_code == 404, path


async def test_upscale_input_from_the_application_is_checked_before_a_job(
    ctx: GatewayContext, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    """With an upscaler configured, the application's /files URL is fetched (from it only) and
    refused when it is not an image, before any GenerationJob exists."""
    ctx.settings.profileSettings = {"homepilot": {"images": {"upscalers": ["RealESRGAN 4x+"]}}}
    await app_service(store, endpoint=fake_homepilot.url)
    app = create_app(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hp.test") as http:
        elsewhere = await http.post("/v1/upscale", json={"image_url": "http://evil.example/a.png"})
        assert elsewhere.status_code == 400 and "other hosts are not fetched" in elsewhere.json()["detail"]
        climbing = await http.post("/v1/upscale", json={"image_url": "/files/../settings"})
        assert climbing.status_code == 400
        fetched = await http.post("/v1/upscale", json={"image_url": "http://somewhere/files/upload-1.png"})
        assert fetched.status_code == 400 and "not an image" in fetched.json()["detail"]
    assert fake_homepilot.last().path == "/files/upload-1.png"
    assert ctx.cache.list(resource_for("GenerationJob"), ctx.store.namespace) == []


# -- API keys --------------------------------------------------------------------------------------


async def test_api_keys_are_a_secret_and_never_answered(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    key = "hf_abcdefghijklmnopqrstuvwxyz123456"
    empty = (await http.get("/settings/api-keys")).json()
    assert empty["keys"]["huggingface"] == {
        "configured": False,
        "source": "none",
        "masked": None,
        "env_var": "HF_TOKEN",
    }
    saved = await http.post("/settings/api-keys", json={"provider": "huggingface", "key": key})
    assert saved.status_code == 200 and key not in saved.text
    listed = await http.get("/settings/api-keys")
    status = listed.json()["keys"]["huggingface"]
    assert (
        status["configured"] is True and status["masked"].endswith("3456") and key[:4] not in status["masked"]
    )
    assert key not in listed.text
    secret = await kube.request("GET", SECRETS.path(namespace, "homepilot-provider-keys"))
    assert base64.b64decode(secret["data"]["huggingface"]).decode() == key

    no_key = (await http.post("/settings/api-keys/test", json={"provider": "civitai"})).json()
    assert no_key == {"ok": True, "valid": False, "message": "No API key provided or stored for civitai"}
    assert (await http.post("/settings/api-keys", json={"provider": "x", "key": "k"})).status_code == 400
    assert (await http.post("/settings/api-keys", json={"provider": "civitai"})).status_code == 422

    deleted = (await http.delete("/settings/api-keys/huggingface")).json()
    assert deleted["deleted"] is True
    assert (await http.delete("/settings/api-keys/huggingface")).json()["deleted"] is False
    secret = await kube.request("GET", SECRETS.path(namespace, "homepilot-provider-keys"))
    assert "huggingface" not in (secret.get("data") or {})
    with pytest.raises(NotFound):
        await kube.request("GET", SECRETS.path(namespace, "no-such-secret"))


async def test_api_key_test_asks_the_provider_with_the_stored_or_given_key(
    ctx: GatewayContext, fake_homepilot: FakeHomePilot
) -> None:
    """The provider is the fake (``apiKeyTestUrls``), as HomePilot's test calls Hugging Face's whoami."""
    ctx.settings.profileSettings = {
        "homepilot": {"apiKeyTestUrls": {"huggingface": fake_homepilot.url + "/whoami"}}
    }
    app = create_app(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hp.test") as http:
        await http.post("/settings/api-keys", json={"provider": "huggingface", "key": PROVIDER_KEY})
        stored = (await http.post("/settings/api-keys/test", json={"provider": "huggingface"})).json()
        assert stored == {
            "ok": True,
            "valid": True,
            "message": "Authenticated as: alice",
            "username": "alice",
        }
        assert fake_homepilot.last().headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        given = await http.post(
            "/settings/api-keys/test", json={"provider": "huggingface", "key": "hf_wrong"}
        )
        assert given.json() == {"ok": True, "valid": False, "message": "Invalid token (HTTP 401)"}
        assert PROVIDER_KEY not in given.text
        unknown = await http.post("/settings/api-keys/test", json={"provider": "openai"})
        assert unknown.status_code == 400 and unknown.json()["error"] == "Unknown provider: openai"


# -- docs and registration -------------------------------------------------------------------------


async def test_docs_and_openapi_describe_what_the_profile_implements(http: httpx.AsyncClient) -> None:
    assert PROFILE.name == "homepilot" and PROFILE.native_port == 8001
    spec = (await http.get("/openapi.json")).json()
    assert spec["info"]["title"] == "HomePilot Orchestrator"
    paths = set(spec["paths"])
    assert {"/chat", "/health", "/v1/capabilities", "/v1/upscale", "/settings/api-keys"} <= paths
    assert "/{path}" not in paths and "/files/kubepilot/{path}" not in paths
    assert "message" in json.dumps(spec["paths"]["/chat"]["post"]["requestBody"])
    docs = await http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_the_combined_listener_serves_the_profile_under_its_prefix(
    ctx: GatewayContext, store: CrStore, volumes: Volumes, fake_homepilot: FakeHomePilot
) -> None:
    await app_service(store, endpoint=fake_homepilot.url)
    generations = Path(volumes.outputs) / "generations"
    generations.mkdir()
    (generations / "a.png").write_bytes(b"png")
    combined = build_combined_app(ctx, [PROFILE])
    transport = httpx.ASGITransport(app=combined)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        assert (await http.get("/p/homepilot/health")).json()["service"] == "homepilot-backend"
        assert (await http.get("/p/homepilot/files/kubepilot/generations/a.png")).content == b"png"
        proxied = await http.get("/p/homepilot/conversations?limit=1")
        assert proxied.status_code == 200
    seen = fake_homepilot.last()
    assert (seen.path, seen.query) == ("/conversations", "limit=1")
    assert seen.headers["x-forwarded-prefix"] == "/p/homepilot"


# -- model install and delete ----------------------------------------------------------------------


async def until(check: Any, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_model_install_is_a_model_pull_answered_when_it_finished(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore
) -> None:
    """No operator runs: the test writes the status the operator would, and the call answers then."""
    pulls = resource_for("ModelPull")
    body = {"provider": "comfyui", "model_type": "image", "model_id": "sd_xl_base_1.0.safetensors"}
    install = asyncio.create_task(http.post("/models/install", json=body))
    await until(lambda: ctx.cache.list(pulls, ctx.store.namespace) != [])
    (pull,) = ctx.cache.list(pulls, ctx.store.namespace)
    assert pull["spec"]["source"]["urls"][0]["path"] == "sd_xl_base_1.0.safetensors"
    assert pull["spec"]["destination"]["modelType"] == "checkpoints"
    assert not install.done()  # HomePilot's install answers when the download is over
    name = pull["metadata"]["name"]
    files = [{"path": "checkpoints/sd_xl_base_1.0.safetensors", "sizeBytes": 7, "sha256": "0" * 64}]
    await store.patch_status(pulls, name, {"phase": "Completed", "files": files})
    answer = await asyncio.wait_for(install, 10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True and answer.json()["model_id"] == "sd_xl_base_1.0.safetensors"

    civitai = {"provider": "civitai", "model_type": "image", "model_id": "x"}
    missing = await http.post("/models/install", json=civitai)
    assert missing.status_code == 400 and missing.json()["code"] == "missing_version_id"
    unknown = await http.post("/models/install", json={**body, "model_id": "nope.safetensors"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_model"
    assert (await http.post("/models/install", json={"provider": "comfyui"})).status_code == 422

    failing = asyncio.create_task(http.post("/models/install", json={**civitai, "civitai_version_id": "42"}))
    await until(lambda: len(ctx.cache.list(pulls, ctx.store.namespace)) == 2)
    (civitai_pull,) = [p for p in ctx.cache.list(pulls, ctx.store.namespace) if p["metadata"]["name"] != name]
    assert civitai_pull["spec"]["source"]["civitai"]["versionId"] == 42
    await store.patch_status(
        pulls,
        civitai_pull["metadata"]["name"],
        {"phase": "Failed", "error": {"code": "DOWNLOAD_FAILED", "message": "HTTP 404"}},
    )
    failed = await asyncio.wait_for(failing, 10)
    assert failed.status_code == 500 and failed.json()["message"] == "Installation failed: HTTP 404"


async def test_model_delete_removes_the_pull_and_the_file_and_refuses_paths(
    http: httpx.AsyncClient, ctx: GatewayContext, volumes: Volumes
) -> None:
    checkpoints = Path(volumes.models) / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "mine.safetensors").write_bytes(b"weights")
    deleted = await http.post("/models/delete", json={"provider": "comfyui", "model_id": "mine.safetensors"})
    assert deleted.status_code == 200 and deleted.json()["deleted"][0].startswith(
        "checkpoints/mine.safetensors"
    )
    assert not (checkpoints / "mine.safetensors").exists()
    again = await http.post("/models/delete", json={"provider": "comfyui", "model_id": "mine.safetensors"})
    assert again.status_code == 404
    escape = await http.post("/models/delete", json={"provider": "comfyui", "model_id": "../outputs/x"})
    assert escape.status_code == 400
    assert (
        await http.post("/models/delete", json={"provider": "civitai", "model_id": "x"})
    ).status_code == 400

    ctx.settings.profileSettings = {
        "homepilot": {
            "catalog": {"providers": {"comfyui": {"image": [{"id": "base.ckpt", "protected": True}]}}}
        }
    }
    app = create_app(ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hp.test") as client:
        protected = await client.post("/models/delete", json={"provider": "comfyui", "model_id": "base.ckpt"})
    assert protected.status_code == 403 and protected.json()["code"] == "protected_model"
