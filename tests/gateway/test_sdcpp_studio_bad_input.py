"""No bad input gets a 500 (or a hang, a traceback or a stray file) from any sd.cpp Studio route.

Every HTTP route the profile serves, read from the app's own OpenAPI document (so a route added
later is covered without touching this test), is called in both ``compat`` modes with hostile path
values, hostile queries and hostile bodies: malformed JSON, the wrong JSON types, traversal
strings, NaN / Infinity and out-of-range numbers, odd bytes, multipart with a hostile file name.
Each answer must be a client error in the profile's shape (``{"error": "<text>"}``, plus
``detail`` where the profile adds one; never FastAPI's 422) or a success, never a 5xx. sd.cpp
Studio proxies to no upstream (every generation is a GenerationJob), so no 502/503 is allowed.

No operator runs here. The synchronous routes (``SYNCHRONOUS``) wait for their job: a stand-in
finishes every job the way the operator does (``patch_status`` Completed with an image file it
writes), so an odd-but-valid request runs through to its answer (each of those routes must answer
one 2xx), and ``syncTimeoutSeconds`` is 3 s so a job left waiting fails fast instead of hanging;
every request also has a 20 s client timeout. The real operator's path is
``test_sdcpp_studio_e2e.py``. No route is skipped.

After the sweep nothing refused has left a staged upload (or a half-written ``.part``) behind, and
no file carries the client's file name anywhere. The WebSocket, which the OpenAPI document does
not list, gets its hostile frames in its own test; hostile credentials (with an API key set) in
another. The inputs that once reached a 500 get their exact answer in the focused tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from websockets.asyncio.client import connect

from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, NotFound, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import build_app
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from tests.gateway.conftest import stack_settings
from tests.gateway.test_sdcpp_studio_ws import serve
from tests.operator.harness import Storage

JsonObject = dict[str, Any]
GJ = resource_for("GenerationJob")
TIMEOUT = httpx.Timeout(20.0)
MODELS = [{"id": "tiny-sd", "path": "diffusers/tiny-sd"}, {"id": "other", "path": "diffusers/other"}]
UUID = "0b9c6d3e-1f2a-4b5c-8d7e-9f0a1b2c3d4e"
SYNCHRONOUS = {
    "/api/generate",
    "/api/edit",
    "/api/variation",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/sdapi/v1/extra-single-image",
    "/sdapi/v1/extra-batch-images",
}
"""The routes that wait for their job (finished here by :func:`finish_every_job`)."""
EVIL = "evil-name"
"""Part of every hostile client file name: no file by that name may appear anywhere."""


def png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, format="PNG")
    return out.getvalue()


PNG = png()
B64 = base64.b64encode(PNG).decode("ascii")
PATH_VALUES = [
    "..",
    "%2e%2e%2fetc",
    "x" * 300,
    "ünï cødé",
    "a;b|c",
    "-",
    "%00",
    UUID,
    f"{UUID}-0",
    f"{UUID}-\u00b2",  # a digit to str.isdigit, not to int()
    f"{UUID}-\u0663.png",
    "tiny-sd",
]
QUERIES: list[dict[str, str]] = [
    {},
    {"limit": "lots", "offset": "-1", "status": "../x", "delete_files": "\u00e9", "api_key": "x" * 500},
    {"limit": "9" * 5000, "offset": "1e999", "status": "completed"},
]
HOSTILE_NUMBERS = (
    b'{"prompt": "a cat", "model": "tiny-sd", "size": "64x64", "width": 64, "height": 64, "n": 1e308,'
    b' "seed": 1e999, "cfg_scale": NaN, "steps": -Infinity, "strength": NaN, "upscale_factor": NaN,'
    b' "denoising_strength": Infinity, "batch_size": 1.5}'
)
VALID = (
    b'"prompt": "a cat", "model": "tiny-sd", "size": "64x64", "steps": 1, "image": "' + B64.encode() + b'"'
)
LONE_SURROGATE = b'{"negative_prompt": "a dog \\ud800", ' + VALID + b"}"
DEEP = b'{"deep": ' + b"[" * 900 + b"]" * 900 + b", " + VALID + b"}"
ACCEPTED_WITH_ODD_EXTRAS: JsonObject = {
    "prompt": "a cat \u0000 \u00fcn\u00ef \U0001f431",
    "model": "tiny-sd",
    "size": "64x64",
    "width": 64,
    "height": 64,
    "steps": 1,
    "seed": "-5",
    "sd_model_checkpoint": "tiny-sd [abc]",
    "override_settings": "not an object",
    "styles": ["", "\u00fcn\u00ef"],
    "sampler_name": {"a": 1},
    "unknown_field": [None, {"x": -0.0}],
}
BODIES: list[dict[str, Any]] = [
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"json": ["a", "list"]},
    {"json": "a string"},
    {"content": b"null", "headers": {"Content-Type": "application/json"}},
    {
        "json": {
            "prompt": 5,
            "model": ["x"],
            "size": {},
            "n": "lots",
            "seed": [],
            "steps": "x",
            "width": "wide",
            "init_images": "x",
            "imageList": {"data": 1},
            "modelId": 5,
            "sd_model_checkpoint": {"a": 1},
            "upscaler": 3,
            "image": 7,
            "mask": [],
        }
    },
    {
        "json": {
            "prompt": "a cat",
            "model": "../../etc",
            "modelId": "../../etc/passwd",
            "sd_model_checkpoint": "../x",
            "image": "../../etc/passwd",
            "upscaler": "../../x",
            "upscaler_1": "/etc/passwd",
            "init_images": ["../../etc/passwd"],
            "imageList": [{"data": "../../etc/passwd", "name": f"../../{EVIL}.png"}],
        }
    },
    {"content": HOSTILE_NUMBERS, "headers": {"Content-Type": "application/json"}},
    {"json": ACCEPTED_WITH_ODD_EXTRAS},
    {
        "content": b'{"prompt": "a cat", "model": "tiny-sd", "size": "64x64", "width": 64, "height": 64,'
        b' "steps": 1, "hr_scale": NaN, "subseed_strength": Infinity, "eta": -Infinity, "init_images": ["'
        + B64.encode()
        + b'"]}',
        "headers": {"Content-Type": "application/json"},
    },
    {
        "json": {
            "prompt": "a cat",
            "image": B64,
            "init_images": [f"data:image/png;base64,{B64}"],
            "imageList": [{"data": B64, "name": f"../../{EVIL}.png"}, "not an object"],
            "mask": "!!! not base64",
            "upscaling_resize": "2",
        }
    },
    {
        "json": {
            "prompt": "a cat",
            "image": B64,
            "init_images": [B64],
            "imageList": [{"data": B64, "name": f"../../{EVIL}.png"}],
            "upscaling_resize": 2,
            "resize_mode": 0,
        }
    },
    {"content": b"[" * 100_000, "headers": {"Content-Type": "application/json"}},
    {"content": LONE_SURROGATE, "headers": {"Content-Type": "application/json"}},
    {"content": DEEP, "headers": {"Content-Type": "application/json"}},
    {"json": {"prompt": "x" * 40_000, "model": "tiny-sd", "size": "64x64", "init_images": [B64]}},
    {
        "json": {
            "prompt": "a cat",
            "model": "tiny-sd",
            "sampling_method": "s" * 300,
            "sampler_name": "s" * 300,
        }
    },
    {"content": b"\x00\xff\xfe", "headers": {"Content-Type": "application/octet-stream"}},
    {"content": b"a=%ff&&=&prompt=\x00", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
    {"content": b"--x\r\n\r\n--x--\r\n", "headers": {"Content-Type": "multipart/form-data"}},
    {"files": [("image", (f"{EVIL}-{i}.png", PNG, "image/png")) for i in range(6)]},
    {"files": {"image": (f"../../{EVIL}.png", b"not an image", "image/png")}, "data": {"prompt": "a"}},
    {
        "files": {"image": (f"../../{EVIL}.png", PNG, "image/png"), "mask": (f"/{EVIL}", PNG, "image/png")},
        "data": {"prompt": "a cat", "strength": "nan", "size": "64x64"},
    },
    {
        "files": {"image": (f"..\\..\\{EVIL}.png", PNG, "text/plain")},
        "data": {"prompt": "a cat", "upscale_factor": "2", "n": "1", "seed": "-1", "model": ""},
    },
]


class Sweep:
    """The app under test, its HTTP client and where its files land."""

    def __init__(self, app: FastAPI, http: httpx.AsyncClient, storage: Storage) -> None:
        self.app = app
        self.http = http
        self.storage = storage


def context(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, **profile: Any
) -> GatewayContext:
    profile = {
        "models": MODELS,
        "inputsDir": f"sweep-inputs/{namespace}",
        "syncTimeoutSeconds": 3,
        "downloadReplaceTimeoutSeconds": 1,
        "maxRequestBytes": 4_000_000,
        **profile,
    }
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


async def finish_every_job(store: CrStore, cache: ClusterCache, namespace: str, storage: Storage) -> None:
    """The operator's part, as the other sd.cpp Studio tests play it: every new job is Completed
    with one image file written where the generator would write it."""
    async with cache.bus.subscribe(kinds=[GJ.kind], namespace=namespace) as events:
        async for item in events:
            if not isinstance(item, ResourceEvent) or item.type != "ADDED":
                continue
            name = item.name
            relative = f"sweep/{name}/0.png"
            target = storage.outputs / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(PNG)
            output = {"index": 0, "path": relative, "width": 64, "height": 64, "seed": 1}
            with contextlib.suppress(NotFound):
                await store.patch_status(GJ, name, {"phase": "Completed", "outputs": [output]})


@pytest.fixture
async def finisher(
    store: CrStore, cache: ClusterCache, namespace: str, storage: Storage
) -> AsyncIterator[None]:
    """The stand-in operator, running for the test."""
    operator = asyncio.create_task(finish_every_job(store, cache, namespace, storage))
    await asyncio.sleep(0)  # subscribed before the first request
    yield
    operator.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await operator


def client_of(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://sd.test", timeout=TIMEOUT)


@pytest.fixture(params=["document", "product"])
async def sweep(
    request: pytest.FixtureRequest,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    finisher: None,
) -> AsyncIterator[Sweep]:
    app = build_app(context(kube, cache, store, namespace, storage, compat=str(request.param)))
    async with client_of(app) as http:
        yield Sweep(app, http, storage)


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, finisher: None
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(build_app(context(kube, cache, store, namespace, storage))) as session:
        yield session


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route, from the app's own OpenAPI document."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in sorted(operations)
    ]


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value.replace("/", "%2F"), template)


def refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def problems_of(response: httpx.Response, what: str) -> list[str]:
    """What is wrong with ``response`` to hostile input: a 5xx, FastAPI's 422, a traceback, or a
    client error outside the profile's ``{"error": text}`` shape."""
    status = response.status_code
    if "Traceback" in response.text:
        return [f"{what}: a traceback in the answer"]
    if status >= 500 or status == 422:
        return [f"{what}: {status} {response.text[:300]}"]
    if status < 400 and response.headers.get("content-type", "").startswith("application/json"):
        try:
            json.loads(response.text, parse_constant=refuse_constant)
        except ValueError as error:
            return [f"{what}: {status} with a body JSON cannot carry ({error}): {response.text[:200]}"]
    if status >= 400:
        try:
            body = response.json()
        except ValueError:
            return [f"{what}: {status} without a JSON body: {response.text[:200]}"]
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return [f"{what}: {status} not the profile's error shape: {body}"]
    return []


async def test_no_route_answers_a_500_to_hostile_input(
    sweep: Sweep, cache: ClusterCache, namespace: str
) -> None:
    served = routes(sweep.app)
    assert ("POST", "/sdapi/v1/txt2img") in served and ("GET", "/api/images/{image_id}") in served
    failures: list[str] = []
    accepted: set[str] = set()
    calls = 0
    for method, template in served:
        for value in PATH_VALUES if "{" in template else [""]:
            url = fill(template, value)
            if method in ("GET", "DELETE"):
                variants: list[tuple[dict[str, Any], dict[str, str]]] = [({}, query) for query in QUERIES]
            else:
                variants = [(body, {}) for body in BODIES] + [({}, QUERIES[1])]
            for body, query in variants:
                response = await sweep.http.request(method, url, params=query, **body)
                calls += 1
                what = f"{method} {url[:80]} {str(body)[:100]} {str(query)[:60]}"
                failures += problems_of(response, what)
                if response.is_success:
                    accepted.add(template)
    assert calls > 500, "the routes were read from the app"
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:25])
    # The odd-but-valid bodies ran through every waiting route to its answer.
    assert accepted >= SYNCHRONOUS, f"never answered 2xx: {sorted(SYNCHRONOUS - accepted)}"

    # Nothing refused left a staged upload behind; no file carries the client's name.
    jobs = cache.list(GJ, namespace)
    named = {path for cr in jobs for path in inputs_of(cr)}
    staged = {
        str(path.relative_to(sweep.storage.outputs))
        for path in (sweep.storage.outputs / "sweep-inputs" / namespace).glob("*")
        if path.is_file()
    }
    assert named, "accepted uploads were staged"
    assert staged <= named, f"staged inputs no job names: {sorted(staged - named)[:5]}"
    assert not list(sweep.storage.root.parent.rglob(f"*{EVIL}*")), "a client file name was used"


def inputs_of(cr: JsonObject) -> list[str]:
    inputs = (cr.get("spec") or {}).get("inputs") or {}
    return [str(p) for p in [inputs.get("image"), inputs.get("mask"), *(inputs.get("images") or [])] if p]


def staged_files(storage: Storage, namespace: str) -> list[Path]:
    folder = storage.outputs / "sweep-inputs" / namespace
    return sorted(folder.iterdir()) if folder.is_dir() else []


DEEPEST_ARRAY = b"[" * 100_000
"""Past Python's own parser limit: json.loads raised RecursionError, which was a 500."""


@pytest.mark.parametrize(
    ("path", "content", "error", "detail"),
    [
        # A lone surrogate made a job no listing could encode again: GET /api/queue was a 500.
        (
            "/api/queue/generate",
            b'{"prompt": "a \\ud800", "model": "tiny-sd"}',
            "Invalid JSON body",
            "surrogate",
        ),
        ("/sdapi/v1/txt2img", LONE_SURROGATE, "Invalid JSON body", "surrogate"),
        # 900 levels: txt2img ran the job, then its echoed parameters failed to serialize (a 500).
        ("/sdapi/v1/txt2img", DEEP, "Invalid JSON body", "nested more than 64 levels"),
        ("/api/generate", DEEPEST_ARRAY, "Invalid JSON body", None),
        ("/api/queue/edit", DEEPEST_ARRAY, "Invalid JSON body", None),
        ("/sdapi/v1/extra-batch-images", DEEPEST_ARRAY, "Invalid JSON body", None),
        ("/api/models/download", DEEPEST_ARRAY, "Missing required field: modelId", None),
        # A1111's styles as a number: the job ran, then building ``info`` raised TypeError (a 500).
        ("/sdapi/v1/txt2img", b'{"prompt": "a cat", "styles": 5}', "Invalid styles", "list of style names"),
        # Longer than the GenerationJob schema holds: the API server's 422, not the profile's 400.
        (
            "/api/queue/generate",
            json.dumps({"prompt": "x" * 32769, "model": "tiny-sd"}),
            "Invalid prompt",
            "32768",
        ),
        ("/sdapi/v1/txt2img", json.dumps({"negative_prompt": "x" * 40_000}), "Invalid negative_prompt", None),
        (
            "/api/queue/generate",
            json.dumps({"prompt": "a", "model": "tiny-sd", "sampling_method": "s" * 101}),
            "Invalid sampling_method",
            "100 characters",
        ),
        ("/sdapi/v1/txt2img", json.dumps({"sampler_name": "s" * 300}), "Invalid sampler_name", None),
        ("/sdapi/v1/txt2img", json.dumps({"scheduler": "s" * 300}), "Invalid scheduler", None),
    ],
)
async def test_inputs_that_once_failed_are_refused_before_any_job(
    http: httpx.AsyncClient,
    cache: ClusterCache,
    namespace: str,
    storage: Storage,
    path: str,
    content: bytes | str,
    error: str,
    detail: str | None,
) -> None:
    answer = await http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error
    if detail is not None:
        assert detail in answer.json()["detail"]
    assert cache.list(GJ, namespace) == [], "nothing refused was created"
    assert (await http.get("/api/queue")).status_code == 200
    assert staged_files(storage, namespace) == []


async def test_what_the_schema_holds_still_runs(
    http: httpx.AsyncClient, cache: ClusterCache, namespace: str
) -> None:
    longest = await http.post("/api/queue/generate", json={"prompt": "x" * 32768, "model": "tiny-sd"})
    assert longest.status_code == 200, longest.text[:300]
    nested: Any = "leaf"
    for _ in range(40):
        nested = [nested]
    body = {"prompt": "a cat \U0001f431", "styles": ["a"], "alwayson_scripts": {"x": {"args": nested}}}
    answer = await http.post("/sdapi/v1/txt2img", json=body)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["parameters"]["alwayson_scripts"] == {"x": {"args": nested}}
    assert json.loads(answer.json()["info"])["styles"] == ["a"]
    assert len(cache.list(GJ, namespace)) == 2


async def test_a_job_the_api_server_refuses_is_a_400_and_leaves_no_upload(
    http: httpx.AsyncClient,
    cache: ClusterCache,
    namespace: str,
    storage: Storage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last guard: a value the profile's checks let through (here: with the prompt limit
    lifted) but the schema refuses is the profile's 400, and the upload staged for it is removed."""
    monkeypatch.setattr(tr, "MAX_PROMPT", 10**6)
    answer = await http.post(
        "/api/queue/edit",
        files={"image": ("cat.png", PNG, "image/png")},
        data={"prompt": "x" * 40_000},
    )
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"] == "Invalid parameters"
    assert "spec.prompt" in answer.json()["detail"]
    assert cache.list(GJ, namespace) == []
    assert staged_files(storage, namespace) == []


async def test_a_refusal_quotes_a_long_value_short(http: httpx.AsyncClient) -> None:
    answer = await http.get("/api/generations", params={"limit": "9" * 5000})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("Invalid limit: '999") and len(error) <= tr.MAX_MESSAGE


@pytest.mark.parametrize("compat", ["document", "product"])
async def test_hostile_credentials_are_refused_never_a_500(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    tmp_path: Path,
    compat: str,
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("the-key\n")
    app = build_app(context(kube, cache, store, namespace, storage, compat=compat, apiKeyFile=str(key_file)))
    # (headers, whether a key is offered: the product's 403 for a wrong one, else 401)
    hostile: list[tuple[list[tuple[bytes, bytes]], bool]] = [
        ([(b"authorization", b"Bearer \xff\xfe\x00")], True),
        ([(b"authorization", b"Bearer " + b"k" * 20_000)], True),
        ([(b"x-api-key", "\u00fcn\u00ef".encode())], True),
        ([(b"authorization", b"Basic dGhlLWtleQ==")], False),
        ([(b"authorization", b"Bearer")], False),
        ([(b"x-api-key", b" "), (b"authorization", b"bearer  ")], False),
    ]
    async with client_of(app) as http:
        for headers, offered in hostile:
            answer = await http.get("/api/queue", headers=headers)
            expected = 403 if offered and compat == "product" else 401
            assert answer.status_code == expected, (headers, answer.status_code, answer.text[:200])
            assert answer.json()["error"] in ("Unauthorized", "Forbidden")
        good = await http.get("/api/queue", headers={"X-API-Key": "the-key"})
        assert good.status_code == 200


async def test_the_websocket_survives_hostile_frames(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> None:
    """The WebSocket is not in the OpenAPI paths: its hostile messages are sent here, on a real
    uvicorn (product mode, which echoes the channel it acknowledges). Each is ignored, as the
    product ignores what it cannot parse, and the connection still answers a ping afterwards."""
    server, task, sock = await serve(context(kube, cache, store, namespace, storage, compat="product"))
    port = sock.getsockname()[1]
    hostile: list[str | bytes] = [
        b"\xff\xfe\x00",  # a binary frame that is not UTF-8 (receive_text raised KeyError)
        "[" * 100_000,  # past Python's parser limit (RecursionError)
        '{"type": "subscribe", "channel": "\\ud800"}',  # the ack could not be encoded
        '{"type": 5, "channel": ["queue"]}',
        "not json",
        '"a string"',
    ]
    try:
        async with asyncio.timeout(20), connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert json.loads(await ws.recv())["type"] == "connected"
            for frame in hostile:
                await ws.send(frame)
            await ws.send(b'{"type": "subscribe", "channel": "queue"}')  # binary JSON: read as text
            await ws.send(json.dumps({"type": "ping"}))
            answers = [json.loads(await ws.recv()) for _ in range(2)]
            assert [a["type"] for a in answers] == ["subscribed", "pong"]
            assert answers[0]["channel"] == "queue"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.mark.parametrize("index", ["\u00b2", "\u0663", "0%0A", "0000"])
async def test_an_image_index_is_ascii_digits_only(http: httpx.AsyncClient, index: str) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` raises: that image id was a 500."""
    for path in (f"/api/images/{UUID}-{index}", f"/static/images/{UUID}-{index}.png"):
        answer = await http.get(path)
        assert (answer.status_code, answer.json()) == (404, {"error": "Image not found"}), path
