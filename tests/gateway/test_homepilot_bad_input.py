"""No bad input gets a 500 (or a hang, or a traceback) from any HomePilot route.

Every HTTP route the profile implements, read from the app itself (its OpenAPI paths, plus the
one it keeps out of the docs, ``/files/kubepilot/{path}``; so a route added later is covered
without touching this test), is called with hostile path values, queries and bodies (malformed
JSON, the wrong JSON types, traversal strings, NaN and Infinity, integers beyond 64 bits, odd
bytes, multipart uploads with hostile file names), once with the application's ServiceInstance
missing and once with it running (``FakeHomePilot`` of ``test_homepilot_api``). Each answer must
be a success or a client error in one of the profile's shapes: FastAPI's ``{"detail": ...}``,
HomePilot's ``{"ok": false, "code", "message"}`` or ``{"ok": false, "error"}``.

The 5xx answers HomePilot documents are allowed, and only those:

- 503 for what cannot run here whatever the input: the application's ServiceInstance missing (the
  proxy's "is not running" naming it; ``/health/detailed``), and the features the generator lacks
  ("... is not available": background removal, enhance ``faces``);
- HomePilot's 500 "<Feature> workflow failed: still Pending after ..." when a well-formed request
  created its GenerationJob: no operator runs here, so no job finishes (``images.waitSeconds`` is
  a fraction of a second, so nothing hangs; ``test_homepilot_imagine_e2e`` runs the jobs);
- the answers of the application itself, passed through unchanged while it runs (its status is
  its own: the ``Server`` header is aiohttp's);
- for the paths passed through to the application (the catch-all route, swept on its own in
  ``test_passed_through_paths_answer_only_the_proxy_statuses``): exactly the proxy's documented
  503 while the ServiceInstance is missing and its 502 while it does not answer.

``test_inputs_that_once_failed_get_their_exact_answer`` pins down each input this sweep found
reaching a 500, with the answer it gets now. No route is skipped.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.homepilot import create_app
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.test_homepilot_api import FakeHomePilot, app_service, fake_homepilot, volumes

__all__ = ["fake_homepilot", "volumes"]  # fixtures shared with test_homepilot_api

JsonObject = dict[str, Any]


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (20, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png()
GJ = resource_for("GenerationJob")
MP = resource_for("ModelPull")
OK_IMAGE = "/files/kubepilot/homepilot/inputs/ok.png"
"""A real image on the outputs volume, so the bodies that name it reach past the image checks."""
PATH_VALUES = ["..", "%2e%2e%2fetc", "x" * 300, "ünï cødé", "a;b|c", "-", "0", "%00"]
FILE_PATHS = ["../../etc/passwd", "homepilot/../../x", "generations/%00", "/etc/passwd", "x" * 5000]
"""Extra values for a ``{...:path}`` parameter, which may hold slashes."""
QUERIES: list[dict[str, str]] = [
    {},
    {"provider": "comfyui", "model_type": "../..", "index": "-5", "image_url": "/files/kubepilot/../x"},
    {"provider": "ünï", "index": "lots", "image_url": "\x00", "preset": "x" * 3000, "aspect_ratio": "1:0"},
]
BODIES: list[dict[str, Any]] = [
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"json": ["a", "list"]},
    {"json": "a string"},
    {
        "json": {
            "message": 5,
            "mode": ["imagine"],
            "image_url": 5,
            "scale": "x",
            "provider": ["x"],
            "model_id": {"a": 1},
            "key": 5,
            "session_id": [],
            "scene_idx": "first",
            "extra": "x",
            "mode_key": None,
        }
    },
    {
        "json": {
            "message": "edit http://evil.test/files/kubepilot/../../etc/passwd now",
            "mode": "edit",
            "image_url": "/files/kubepilot/../../etc/passwd",
            "mask_url": "/files/../../etc/passwd",
            "prompt": "a cat",
            "model_id": "../../etc/passwd",
            "provider": "comfyui",
            "model_type": "../../etc",
            "model": "../../etc",
            "action": "blur",
        }
    },
    {
        "json": {
            "message": "a cat",
            "mode": "imagine",
            "imgModel": "../../../etc/passwd",
            "imgWidth": 10**30,
            "imgSeed": 2**70,
            "imgSteps": -3,
            "imgBatchSize": 99,
            "image_url": OK_IMAGE,
            "scale": 10**30,
            "extend_pixels": -1,
            "direction": "sideways",
            "action": "sideways",
            "prompt": "\x00",
            "provider": "civitai",
            "civitai_version_id": "²",
            "model_id": "x",
            "model_type": "image",
            "session_id": "x" * 300,
            "scene_idx": -1,
        }
    },
    {
        "content": b'{"message": "a", "mode": "imagine", "imgCfg": NaN, "imgSeed": 18446744073709551615, '
        b'"image_url": "' + OK_IMAGE.encode() + b'", "strength": NaN, "extra": {"strength": NaN}, '
        b'"scale": Infinity, "provider": "huggingface", "key": "\\u00fcn\\u00ef\\n"}',
        "headers": {"Content-Type": "application/json"},
    },
    {"content": b"\x00\xff\xfe", "headers": {"Content-Type": "application/octet-stream"}},
    {"files": {"file": ("../../evil.png", b"not a png", "image/png")}, "data": {"instruction": "x" * 70000}},
    {"files": {"file": ("x" * 300 + ".png", b"\x89PNG\r\n\x1a\n", "text/html")}},
    {"files": {"file": ("../../../../tmp/evil.png", PNG, "image/png")}, "data": {"strip_metadata": "no"}},
]
UNDOCUMENTED = {("GET", "/files/kubepilot/{path:path}")}
"""Routes the profile implements but keeps out of its OpenAPI document (the generated images)."""
UNAVAILABLE = re.compile(r"is not running|is not available")
"""The 503 texts HomePilot documents for what cannot run here (see the module docstring)."""
JOB_NOT_DONE = re.compile(
    r"^[A-Z][a-z ]+ workflow failed: still Pending after [0-9.]+s \(GenerationJob [a-z0-9-]+\)$"
)
"""HomePilot's 500 for a job that did not complete (here: no operator runs it)."""
PROXIED = [
    "/conversations/%00",
    "/projects/..%2F..%2Fetc%2Fpasswd",
    "/story/" + "x" * 300,
    "/files/..%2F..%2Fetc%2Fpasswd",
    "/x/%2E%2E/chat",
    "/ünï cødé",
    "/studio/videos/a;b|c/scenes",
    "/persona/import%09evil",
    "/a%3Fb%23c%25",
    "/v1/agentic/invoke",
]
"""Paths of the application (none the profile implements), hostile ones."""
PROXY_BODIES: list[dict[str, Any]] = [BODIES[0], BODIES[3], BODIES[7], BODIES[8]]


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> GatewayContext:
    """An image model, an upscaler and an input image in place, so bodies reach past those checks."""
    models, outputs = Path(volumes.models), Path(volumes.outputs)
    for folder, name, data in (
        (models / "checkpoints", "tiny.safetensors", b"not really a model"),
        (models / "upscale_models", "RealESRGAN_x4plus.pth", b"not really an upscaler"),
        (outputs / "homepilot" / "inputs", "ok.png", PNG),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    profile = {
        "proxy": {"timeouts": {"default": 5.0, "llm": 5.0, "upload": 5.0, "export": 5.0}},
        "images": {"waitSeconds": 0.05},
        "installWaitSeconds": 0.05,
        # Never the real providers: a port nothing listens on.
        "apiKeyTestUrls": {"huggingface": "http://127.0.0.1:9/whoami", "civitai": "http://127.0.0.1:9/me"},
    }
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"homepilot": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def app(ctx: GatewayContext) -> AsyncIterator[FastAPI]:
    built = create_app(ctx)
    async with built.router.lifespan_context(built):
        yield built


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://homepilot.test", timeout=20
    ) as session:
        yield session


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the profile implements: the OpenAPI paths, and
    ``UNDOCUMENTED`` (the catch-all pass-through is swept on its own)."""
    found = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    return sorted(found | UNDOCUMENTED)


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


def error_shaped(body: object) -> bool:
    """One of the profile's error bodies (see the module docstring)."""
    if not isinstance(body, dict):
        return False
    if list(body) == ["detail"]:
        return isinstance(body["detail"], str | list)
    return body.get("ok") is False and (
        isinstance(body.get("error"), str) or {"code", "message"} <= set(body)
    )


def files_under(root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()]


def from_application(response: httpx.Response) -> bool:
    """The answer of the (fake) application, passed through: aiohttp names itself in ``Server``."""
    return "aiohttp" in response.headers.get("server", "")


def verdict(response: httpx.Response, template: str) -> str | None:
    """Why ``response`` breaks the rule, or None when it is a success, a shaped client error or a
    documented 5xx (see the module docstring)."""
    status = response.status_code
    if status < 400 or from_application(response):
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{status} not JSON: {response.text[:200]}"
    if not error_shaped(body) and not (template == "/health/detailed" and status == 503):
        return f"{status} not an error shape of the profile: {str(body)[:200]}"
    if status < 500:
        return None
    detail = body.get("detail")
    if status == 503 and (UNAVAILABLE.search(str(detail)) or template == "/health/detailed"):
        return None
    if status == 500 and isinstance(detail, str) and JOB_NOT_DONE.match(detail):
        return None
    return f"{status} {str(body)[:300]}"


async def sweep(http: httpx.AsyncClient, served: list[tuple[str, str]]) -> tuple[int, list[str]]:
    """Every route with every hostile value; the failures, one per route, body and kind of answer."""
    failures: dict[tuple[str, str, int, str], str] = {}
    calls = 0
    for method, template in served:
        values = [""]
        if "{" in template:
            values = PATH_VALUES + (FILE_PATHS if ":path}" in template else [])
        for value in values:
            url = fill(template, value)
            variants: list[dict[str, Any]] = [{}] if method in ("GET", "DELETE") else BODIES
            for number, variant in enumerate(variants):
                for query in QUERIES:
                    response = await http.request(method, url, params=query, **variant)
                    calls += 1
                    why = verdict(response, template)
                    if why:
                        what = f"{method} {url[:80]} body {number} {str(variant)[:100]} {str(query)[:60]}"
                        failures.setdefault((method, template, number, why[:3]), f"{what}: {why}")
    return calls, list(failures.values())


@pytest.mark.parametrize("application", ["missing", "running"])
async def test_no_route_answers_a_500_to_hostile_input(
    application: str,
    app: FastAPI,
    http: httpx.AsyncClient,
    ctx: GatewayContext,
    store: CrStore,
    fake_homepilot: FakeHomePilot,
) -> None:
    if application == "running":
        await app_service(store, endpoint=fake_homepilot.url)
    served = routes(app)
    assert ("POST", "/chat") in served and ("POST", "/v1/edit-sessions/{conversation_id}/image") in served
    files = await http.get("/files/kubepilot/homepilot/inputs/missing.png")
    assert (files.status_code, files.json()) == (404, {"detail": "Not Found"}), "served here, not proxied"
    calls, failures = await sweep(http, served)
    assert len(served) >= 32 and calls > 1500, "the routes were read from the app"
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])
    if application == "running":
        assert fake_homepilot.seen, "the routes that forward reached the application"
    written = await asyncio.to_thread(files_under, Path(ctx.settings.volumes.outputs))
    assert all(path.startswith(("homepilot/inputs/", "homepilot/results/")) for path in written), written
    assert not [path for path in written if path.endswith(".part")], "no half-written file"
    for job in ctx.cache.list(GJ, ctx.store.namespace):  # what the bodies created is well-formed
        json.dumps(job["spec"], allow_nan=False)
        assert job["spec"].get("seed", -1) <= 2**63 - 1 and 0 <= job["spec"].get("cfgScale", 0) <= 50


@pytest.mark.parametrize("application", ["missing", "dead", "running"])
async def test_passed_through_paths_answer_only_the_proxy_statuses(
    application: str, http: httpx.AsyncClient, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    """Missing: exactly the 503 naming the ServiceInstance; not answering (a closed port): exactly
    the 502; running: what the application answered, the path as the client sent it."""
    if application == "dead":
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        await app_service(store, endpoint=f"http://127.0.0.1:{port}")
    elif application == "running":
        await app_service(store, endpoint=fake_homepilot.url)
    calls = 0
    for path in PROXIED:
        for method in ("GET", "DELETE", "POST", "PUT", "PATCH"):
            for variant in [{}] if method in ("GET", "DELETE") else PROXY_BODIES:
                response = await http.request(method, path, params=QUERIES[1], **variant)
                calls += 1
                what = (
                    f"{method} {path[:60]} {str(variant)[:60]}: {response.status_code} {response.text[:200]}"
                )
                if application == "missing":
                    assert response.status_code == 503, what
                    assert "is not running" in response.json()["detail"], what
                elif application == "dead":
                    assert response.status_code == 502, what
                    assert response.json() == {
                        "detail": "The HomePilot application could not be reached: ConnectError"
                    }, what
                else:
                    seen = fake_homepilot.last()
                    assert (seen.method, seen.path) == (method, unquote(path)), what
                    assert from_application(response), what
                    assert (response.status_code, response.content) == (seen.status, seen.answer), what
    assert calls == len(PROXIED) * (2 + 3 * len(PROXY_BODIES))


async def test_inputs_that_once_failed_get_their_exact_answer(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    namespace = ctx.store.namespace
    json_headers = {"Content-Type": "application/json"}
    # A NUL byte in a generated image's path: ValueError from the filesystem, now "not found".
    nul = await http.get("/files/kubepilot/generations/%00")
    assert (nul.status_code, nul.json()) == (404, {"detail": "Not Found"})
    # A validation error echoes the input: NaN and Infinity are answered as text (JSON has neither).
    infinite = await http.post(
        "/v1/upscale",
        content=b'{"image_url": "' + OK_IMAGE.encode() + b'", "scale": Infinity}',
        headers=json_headers,
    )
    assert infinite.status_code == 422
    ((error,),) = [infinite.json()["detail"]]
    assert (error["loc"], error["input"]) == (["body", "scale"], "inf")
    # Imagine: a CFG that is not a number, a seed beyond 64 bits (the API server cannot hold it).
    for bad, field in ((b'"imgCfg": NaN', "imgCfg"), (b'"imgSeed": 18446744073709551615', "imgSeed")):
        body = b'{"message": "a cat", "mode": "imagine", ' + bad + b"}"
        refused = await http.post("/chat", content=body, headers=json_headers)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", field], (
            refused.text
        )
    huge_seed = await http.post("/v1/edit", json={"image_url": OK_IMAGE, "prompt": "a cat", "seed": 2**70})
    assert huge_seed.status_code == 422 and huge_seed.json()["detail"][0]["loc"] == ["body", "seed"]
    assert ctx.cache.list(GJ, namespace) == [], "nothing refused created a GenerationJob"
    # Civitai version ids: "²" is a digit to str.isdigit but not to int; 10**30 is beyond int64.
    for version in ("²", "9" * 30, "0"):
        install = {
            "provider": "civitai",
            "model_id": "m",
            "model_type": "image",
            "civitai_version_id": version,
        }
        refused = await http.post("/models/install", json=install)
        assert (refused.status_code, refused.json()["code"]) == (400, "missing_version_id"), version
    assert ctx.cache.list(MP, namespace) == []
    # A model file name longer than a file name may be (ENAMETOOLONG), or with a NUL.
    for model_id in ("m" * 256, "a\x00b"):
        refused = await http.post("/models/delete", json={"provider": "comfyui", "model_id": model_id})
        assert refused.status_code == 400 and refused.json() == {
            "ok": False,
            "code": "invalid_model_id",
            "message": "model_id must be a file name",
        }
    # A key no header can carry: never sent (httpx refused to encode it), never stored.
    tested = await http.post("/settings/api-keys/test", json={"provider": "huggingface", "key": "ünï\n"})
    assert tested.status_code == 200 and tested.json() == {
        "ok": True,
        "valid": False,
        "message": "Invalid token: An API key is printable ASCII without spaces or control characters",
    }
    stored = await http.post("/settings/api-keys", json={"provider": "civitai", "key": "abc def"})
    assert stored.status_code == 400 and stored.json()["ok"] is False
    assert (await http.get("/settings/api-keys")).json()["keys"]["civitai"]["configured"] is False
    # Running application: a NUL (or "?") in a passed-through path is a path, not a broken URL;
    # an image_url no URL can hold is a 400 before anything is fetched.
    await app_service(store, endpoint=fake_homepilot.url)
    passed = await http.get("/conversations/a%00b%3Fc", params={"limit": "5"})
    assert passed.status_code == 200 and from_application(passed)
    seen = fake_homepilot.last()
    assert (seen.path, seen.query) == ("/conversations/a\x00b?c", "limit=5")
    count = len(fake_homepilot.seen)
    fetched = await http.post("/v1/upscale", json={"image_url": "/files/a\x00b.png"})
    assert (fetched.status_code, fetched.json()) == (400, {"detail": "image_url is not a valid URL"})
    assert len(fake_homepilot.seen) == count
