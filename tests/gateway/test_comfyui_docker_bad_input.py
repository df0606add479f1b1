"""No bad input gets a 500 from any ComfyUI-Docker dashboard route.

Every HTTP route the profile serves, read from the app's own OpenAPI document (so a route added
later is covered without touching this test), is called with hostile path values, hostile
queries and hostile bodies (malformed JSON, JSON deeper than Python's reader goes or as deep as it
goes, the wrong JSON types, NaN and Infinity, lone surrogate escapes, traversal strings, odd bytes,
multipart with a hostile file name), and with a method it does not serve (405); then again with
the ids of what the first round created. Each answer must be a client error or a success, never a
5xx, and every error is the dashboard's envelope ``{"error": {"code", "message", "details",
"timestamp"}}`` (400 ``INVALID_REQUEST`` for bad input, never a 422) with ``X-API-Version`` and the
rate limit's headers. The inputs that answered 500 before the fixes have their exact answers below,
and the WebSocket ``/ws`` (no OpenAPI route) gets hostile tokens and messages.

The sweep runs with the login on (``enableAuth``), as an ``administrator`` (the auth Secret of
``test_comfyui_docker_auth``), so every request reaches its route. The rate limits stay on (their
headers are checked on every answer) with limits far above the sweep's request count
(``rateLimitPerIp`` / ``rateLimitPerToken``), so the sweep never meets a 429.

No operator runs here and no route is skipped: an uninstall waits ``removalTimeoutSeconds`` for the
operator to remove a ModelPull (set low; no ModelPull here has the operator's finalizer, so none
waits), and nothing else waits on a workload. The profile's documented 5xx answers are no answer to
bad input here, so none is allowed: 503 ``COMFYUI_UNAVAILABLE`` needs a ComfyUI ServiceInstance
(none exists here), 507 ``QUEUE_FULL`` / ``INSUFFICIENT_STORAGE`` a full queue or disk (the
catalog's presets are bytes), 500 ``DOWNLOAD_FAILED`` a catalog entry the cluster refuses.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.profiles.comfyui_docker.workflows import txt2img_graph
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import served
from tests.gateway.test_comfyui_docker_auth import PASSWORD, create_secret

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")
GJ = resource_for("GenerationJob")
TIMEOUT = httpx.Timeout(20.0)
CREDENTIALS = (b"authorization", b"cookie")
PROMPT_LABEL = "kubepilot.io/prompt-id"

CATALOG = {
    "presets": [
        {
            "id": "TINY",
            "name": "Tiny",
            "category": "Image Generation",
            "type": "image",
            "files": [{"path": "checkpoints/tiny.safetensors", "url": "http://hub.test/t", "size_bytes": 10}],
        },
        {
            "id": "AUDIO",
            "files": [{"path": "audio_encoders/a.safetensors", "url": "http://hub.test/a", "size_bytes": 10}],
        },
    ]
}
PATH_VALUES = [
    *["..", "%2e%2e%2fetc", "x" * 300, "ünï cødé", "a;b|c", "-", "0", "%00", "%ED%A0%80", "%FF", "dl_000000"],
    "TINY",
]
QUERIES: list[dict[str, str]] = [
    {},
    {
        "type": "../../etc",
        "category": "x" * 300,
        "search": "\x00ünï",
        "installed": "maybe",
        "page": "-1",
        "per_page": "lots",
        "max_items": "0",
    },
    {"page": "9" * 40, "per_page": "1000", "max_items": "1e9", "installed": "true", "type": "all"},
]
DEEP = b"[" * 100_000
"""Deeper than Python's JSON reader can go (it raises RecursionError, not ValueError)."""
NESTED = b"[" * 900 + b"]" * 900
"""As deep as Python's JSON reader goes, deeper than most code that walks what it read."""
NESTED_OBJECT = b'{"a": ' * 900 + b"1" + b"}" * 900


def graph(**inputs: Any) -> JsonObject:
    """A graph the built-in generator runs (its checkpoint is on the models volume), the sampler's
    inputs replaced by ``inputs``."""
    found = txt2img_graph("sweep.safetensors", 64, 2, 7.0)
    found["3"]["inputs"].update(inputs)
    return found


def raw(document: JsonObject, **replace: bytes) -> dict[str, Any]:
    """A request body of ``document`` with each ``"<name>"`` string replaced by raw JSON text."""
    text = json.dumps(document).encode()
    for name, value in replace.items():
        text = text.replace(json.dumps(name).encode(), value)
    return {"content": text, "headers": {"Content-Type": "application/json"}}


BODIES: list[dict[str, Any]] = [
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"content": DEEP, "headers": {"Content-Type": "application/json"}},
    {"json": ["a", "list"]},
    {"json": "a string"},
    {"json": None},
    {
        "json": {
            "name": 5,
            "workflow": 5,
            "priority": "high",
            "force": "yes",
            "paths": "x",
            "username": 5,
            "password": ["x"],
            "category": 7,
        }
    },
    {
        "json": {
            "name": "../../etc/passwd",
            "workflow": {"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "../../x"}}},
            "paths": ["../../etc/passwd", "/etc/passwd", "checkpoints/../../x", "checkpoints/\x00x"],
            "username": "../admin",
            "password": "",
        }
    },
    {
        "content": b'{"priority": 1e400, "force": NaN, "paths": [NaN], "name": "nan", "workflow": '
        b'{"1": {"class_type": "KSampler", "inputs": {"seed": NaN, "steps": Infinity, "cfg": -Infinity}}}}',
        "headers": {"Content-Type": "application/json"},
    },
    {"json": {"priority": 2**70, "workflow": "not json", "name": "x" * 5000, "paths": [], "force": 2}},
    {"json": {"priority": 1.5, "workflow": {"nodes": []}, "name": " ", "paths": ["x" * 5000]}},
    {"json": {"workflow": {"1": {"class_type": "X", "inputs": {"a": ["2", 0]}}}, "name": "\u202e\x07"}},
    raw({"workflow": graph(cfg="NAN"), "name": "nan graph"}, NAN=b"NaN"),
    raw({"workflow": graph(seed="BIG"), "name": "big"}, BIG=b"1e999"),
    raw({"workflow": graph(extra="DEEP"), "name": "deep"}, DEEP=NESTED_OBJECT),
    raw({"paths": "DEEP", "username": "DEEP", "password": "x", "force": "DEEP"}, DEEP=NESTED),
    {"json": {"workflow": graph(seed=2**70, steps=10**12, denoise="x", sampler_name=5), "name": "huge"}},
    {"json": {"workflow": graph(), "priority": 10**30, "name": "t\u00e9l\u00e9 \u30c6\u30b9\u30c8"}},
    {"json": {"workflow": json.dumps(graph(seed=2**53, steps=150)), "priority": -100.0, "name": "edge"}},
    {"json": {"workflow": DEEP.decode(), "name": "deep text"}},
    {
        "content": b'{"username": "admin", "password": "\\ud800", "name": "a\\udfff", "priority": "\\ud800", '
        b'"paths": ["checkpoints/\\ud800.safetensors"], "workflow": {"1": {"class_type": "\\ud800"}}}',
        "headers": {"Content-Type": "application/json"},
    },
    {"json": {"workflow": {"\u0000": {"class_type": "SaveImage\u0000", "inputs": {}}}, "name": "\u0000"}},
    raw(
        {"name": "lone", "category": "LONE", "description": "LONE", "workflow": graph(sampler_name="LONE")},
        LONE=b'"\\udfff"',
    ),
    {"content": b"\x00\xff\xfe", "headers": {"Content-Type": "application/octet-stream"}},
    {"content": b"\xff\xfe{}", "headers": {"Content-Type": "application/json"}},
    {"files": {"file": ("../../evil.json", b'{"1": {}}', "application/json")}},
]


@pytest.fixture
async def app(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> FastAPI:
    """The dashboard with the login on and rate limits far above the sweep's request count."""
    for volume in ("models", "datasets", "outputs"):
        (tmp_path / volume).mkdir()
    (tmp_path / "models" / "checkpoints").mkdir()
    (tmp_path / "models" / "checkpoints" / "sweep.safetensors").write_bytes(b"weights")
    await create_secret(kube, namespace)
    catalog = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "comfyui-docker-presets"},
        "data": {"presets": json.dumps(CATALOG)},
    }
    await kube.request("POST", CONFIGMAPS.path(namespace), body=catalog)
    profile = {
        "enableAuth": True,
        "authCacheSeconds": 60,
        "rateLimitPerIp": 1_000_000,
        "rateLimitPerToken": 1_000_000,
        "removalTimeoutSeconds": 1,
        "nodeAgentUrls": ["http://127.0.0.1:9"],
        "nodeAgentTimeoutSeconds": 0.5,
    }
    volumes = Volumes(
        models=str(tmp_path / "models"),
        datasets=str(tmp_path / "datasets"),
        outputs=str(tmp_path / "outputs"),
    )
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": profile})
    return create_app(GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus))


async def login(http: httpx.AsyncClient) -> None:
    """Log in as the administrator: the token in every later request's Authorization header."""
    answer = await http.post("/api/auth/login", json={"username": "admin", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    http.cookies.clear()
    http.headers["Authorization"] = f"Bearer {answer.json()['token']}"


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in as the administrator."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test", timeout=TIMEOUT) as s:
        await login(s)
        yield s


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route, from the app's own OpenAPI document."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in sorted(operations)
    ]


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value.replace("/", "%2F"), path)


def problem(response: httpx.Response, template: str = "") -> str | None:
    """What is wrong with ``response`` as an answer to bad input; None when it is fine (a 401 only
    from the login: every other request is logged in)."""
    if response.status_code >= 500:
        return f"{response.status_code} {response.text[:300]}"
    for header in ("X-API-Version", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        if header not in response.headers:
            return f"{response.status_code} without {header}"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} not JSON: {response.text[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        list(body) == ["error"]
        and isinstance(error, dict)
        and set(error) == {"code", "message", "details", "timestamp"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
    ):
        return f"{response.status_code} not the dashboard's error shape: {response.text[:300]}"
    logged_out = response.status_code == 401 and template != "/api/auth/login"
    if logged_out or response.status_code == 422 or error["code"] in ("ERROR", "INTERNAL_ERROR"):
        return f"{response.status_code} {error['code']}: {error['message']}"
    return None


def error_of(response: httpx.Response, status: int, code: str) -> JsonObject:
    """The envelope's ``error`` of ``response``, which must be ``status`` with ``code``."""
    assert response.status_code == status, response.text
    error: JsonObject = response.json()["error"]
    assert error["code"] == code, error
    assert response.headers["X-RateLimit-Limit"] == "1000000" and response.headers["X-API-Version"]
    return error


async def sweep(
    http: httpx.AsyncClient, served: list[tuple[str, str]], values: list[str]
) -> tuple[int, list[str]]:
    """Every route of ``served`` with each path value of ``values``, every query and (but GETs)
    every body: how many requests, and what was wrong with their answers. A 405 for a method a path
    does not serve is one more request per path."""
    failures: list[str] = []
    calls = 0
    paths = {template for _, template in served}
    for method, template in [*served, *[("PUT", template) for template in sorted(paths)]]:
        for value in values if "{" in template else [""]:
            path = fill(template, value)
            requests: list[tuple[dict[str, str], dict[str, Any]]] = [(query, {}) for query in QUERIES]
            if method != "GET":
                requests += [({}, body) for body in BODIES]
            for query, body in requests:
                response = await http.request(method, path, params=query, **body)
                calls += 1
                found = problem(response, template)
                if found is not None:
                    failures.append(f"{method} {path} {query} {str(body)[:120]}: {found}")
                if template == "/api/auth/logout" and response.status_code == 200:
                    await login(http)  # logout revoked the token: the sweep goes on logged in
    return calls, failures


async def test_every_route_answers_bad_input_without_a_500(
    app: FastAPI, http: httpx.AsyncClient, cache: ClusterCache, namespace: str
) -> None:
    """Every route, every hostile input: a success or the envelope's 4xx (never a 401 either: the
    sweep is logged in, so every request reaches its route). Then again with the ids of what the
    first round created (an install's download, executions, saved workflows), so the routes also
    meet hostile input about real objects, and what was stored must read back."""
    served = routes(app)
    assert ("POST", "/api/comfyui/execute") in served and ("DELETE", "/api/models") in served
    calls, failures = await sweep(http, served, PATH_VALUES)

    downloads = [row["id"] for row in (await http.get("/api/downloads")).json()["downloads"]]
    prompts = [job["metadata"]["labels"][PROMPT_LABEL] for job in cache.list(GJ, namespace)]
    saved = [row["id"] for row in (await http.get("/api/workflows")).json()["workflows"]]
    assert downloads and prompts and {"huge", "edge"} <= set(saved), "the first round created objects"
    more, failures_on_objects = await sweep(http, served, ["TINY", *downloads, *prompts, *saved])
    assert len(served) >= 25 and calls + more > 2000, "every route of the app, read from its OpenAPI document"
    failures += failures_on_objects
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:30])


async def test_inputs_that_once_failed_get_their_exact_answer(
    http: httpx.AsyncClient, cache: ClusterCache, namespace: str, tmp_path: Path
) -> None:
    """The inputs the sweep found answering 500, each with its exact 400 and nothing created or written."""
    user_folder = tmp_path / "outputs" / "workflows" / "user"

    # NaN / Infinity, which Python's JSON reader takes: a validation error's ``input`` once failed to
    # render; in a workflow they are refused before anything is written or created.
    nan = raw({"force": "NAN"}, NAN=b"NaN")
    error = error_of(await http.post("/api/presets/TINY/install", **nan), 400, "INVALID_REQUEST")
    assert error["details"]["errors"][0]["input"] == "nan" and "body.force" in error["message"]
    assert cache.list(MP, namespace) == []
    nan_graph = raw({"workflow": graph(cfg="NAN"), "name": "nan graph"}, NAN=b"NaN")
    error = error_of(await http.post("/api/workflows", **nan_graph), 400, "INVALID_REQUEST")
    assert error["message"] == "The body is not JSON: NaN is not a JSON number"
    error = error_of(await http.post("/api/comfyui/execute", **nan_graph), 400, "INVALID_REQUEST")
    assert error["message"] == "The body is not JSON: NaN is not a JSON number"
    infinite = raw({"workflow": graph(seed="BIG")}, BIG=b"1e999")
    error = error_of(await http.post("/api/comfyui/execute", **infinite), 400, "INVALID_REQUEST")
    assert error["message"] == "The body is not JSON: 1e999 is beyond a JSON number's range"
    as_text = {"workflow": json.dumps(graph())[:-1] + ', "x": Infinity}', "name": "text"}
    error = error_of(await http.post("/api/workflows", json=as_text), 400, "INVALID_WORKFLOW")
    assert error["message"] == "workflow is not valid JSON: Infinity is not a JSON number"

    # JSON deeper than Python's reader goes (RecursionError, once a 500).
    deep: dict[str, Any] = {"content": DEEP, "headers": {"Content-Type": "application/json"}}
    for path in ("/api/workflows", "/api/comfyui/execute"):
        error = error_of(await http.post(path, **deep), 400, "INVALID_REQUEST")
        assert error["message"] == "The body is not JSON: nested too deeply"
    error = error_of(
        await http.post("/api/comfyui/execute", json={"workflow": DEEP.decode()}), 400, "INVALID_WORKFLOW"
    )
    assert error["message"] == "workflow is not valid JSON: nested too deeply"

    # A validation error's input nested 900 deep (the core's error rendering recursed into it).
    nested = raw({"paths": "DEEP"}, DEEP=NESTED)
    error = error_of(await http.request("DELETE", "/api/models", **nested), 400, "INVALID_REQUEST")
    assert error["details"]["errors"][0]["input"] == "(nested more than 32 levels deep)"
    assert cache.list(GJ, namespace) == [] and not any(user_folder.glob("*")), "nothing created or written"

    # A lone surrogate escape (``"\\ud800"``: text UTF-8 cannot encode), echoed by an error (once a
    # 500), or saved in a workflow whose every later read would fail: refused, nothing deleted or saved.
    lone = b'"\\ud800"'
    install = raw({"priority": "LONE"}, LONE=lone)
    error = error_of(await http.post("/api/presets/TINY/install", **install), 400, "INVALID_REQUEST")
    assert error["details"]["errors"][0]["input"] == "\\ud800"
    model = tmp_path / "models" / "checkpoints" / "sweep.safetensors"
    delete = raw({"paths": ["checkpoints/sweep.safetensors", "LONE"]}, LONE=lone)
    error = error_of(await http.request("DELETE", "/api/models", **delete), 400, "INVALID_REQUEST")
    assert "lone surrogate" in error["message"] and model.is_file()
    save = raw({"name": "lone", "category": "LONE", "workflow": graph()}, LONE=lone)
    error = error_of(await http.post("/api/workflows", **save), 400, "INVALID_REQUEST")
    assert (
        error["message"]
        == "The body is not JSON: a text holds a lone surrogate escape (no Unicode character)"
    )
    error = error_of(
        await http.post("/api/comfyui/execute", **raw({"workflow": graph(sampler_name="LONE")}, LONE=lone)),
        400,
        "INVALID_REQUEST",
    )
    assert "lone surrogate" in error["message"]
    assert cache.list(GJ, namespace) == [] and not any(user_folder.glob("*")), "nothing created or written"

    # A token of non-ASCII bytes (``hmac.compare_digest`` takes ASCII text only: once a TypeError in
    # the rate limiter, a 500 without the envelope); the same in the session cookie.
    for header in (
        (b"Authorization", b"Bearer \xc3\xa9.\xff.x"),
        (b"Cookie", b"session=\xc3\xa9.\xc3\xa9.x"),
    ):
        error = error_of(await with_raw_header(http, "/api/presets", header), 401, "UNAUTHORIZED")
        assert error["message"] == "Malformed token"


async def test_a_workflow_no_answer_can_carry_is_refused_and_never_served(
    http: httpx.AsyncClient, cache: ClusterCache, namespace: str, tmp_path: Path
) -> None:
    """A graph nested 900 levels (as deep as Python's JSON reader goes) was saved, then its GET was a
    500 (the answer's serializer has a depth limit): it is a 400 ``INVALID_WORKFLOW`` at save and at
    execute, and such a file put on the volume by other means is no workflow (not listed, 404), nor is
    one holding NaN or a lone surrogate escape (which the save once wrote: reading it back was then a
    500 for the surrogate, and a body with a bare ``NaN`` that no JSON client parses for the NaN)."""
    deep = raw({"workflow": graph(extra="DEEP"), "name": "deep"}, DEEP=NESTED_OBJECT)
    error = error_of(await http.post("/api/workflows", **deep), 400, "INVALID_WORKFLOW")
    assert error["message"] == "a workflow nests at most 64 levels deep"
    error = error_of(await http.post("/api/comfyui/execute", **deep), 400, "INVALID_WORKFLOW")
    assert error["message"] == "workflow nests more than 64 levels deep"
    assert cache.list(GJ, namespace) == []
    user_folder = tmp_path / "outputs" / "workflows" / "user"
    user_folder.mkdir(parents=True)
    (user_folder / "planted.json").write_bytes(b'{"workflow": ' + deep["content"][len(b'{"workflow": ') :])
    # Files the old gateway saved (NaN, a lone surrogate) or put there by other means: no workflows.
    (user_folder / "nan.json").write_bytes(raw({"workflow": graph(cfg="NAN")}, NAN=b"NaN")["content"])
    (user_folder / "lone.json").write_bytes(
        raw({"workflow": graph(), "category": "L"}, L=b'"\\ud800"')["content"]
    )
    listed = await http.get("/api/workflows")
    assert listed.status_code == 200
    assert not {"planted", "nan", "lone"} & {row["id"] for row in listed.json()["workflows"]}
    for ident in ("planted", "nan", "lone"):
        error_of(await http.get(f"/api/workflows/{ident}"), 404, "WORKFLOW_NOT_FOUND")
    shallow = raw(
        {"workflow": graph(extra="DEEP"), "name": "shallow"}, DEEP=b'{"a": ' * 50 + b"1" + b"}" * 50
    )
    saved = await http.post("/api/workflows", **shallow)
    assert saved.status_code == 200, saved.text
    assert (await http.get("/api/workflows/shallow")).json()["workflow"]["3"]["inputs"]["extra"]["a"]["a"]


async def with_raw_header(http: httpx.AsyncClient, path: str, header: tuple[bytes, bytes]) -> httpx.Response:
    """GET ``path`` with ``header`` as raw bytes in place of the client's own credentials."""
    request = http.build_request("GET", path)
    kept = [(name, value) for name, value in request.headers.raw if name.lower() not in CREDENTIALS]
    request.headers = httpx.Headers([*kept, header])
    return await http.send(request)


async def next_message(ws: ClientConnection) -> JsonObject:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))


async def test_websocket_answers_hostile_messages_and_stays_open(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    """The WebSocket, logged in by ``?token=`` or a first ``auth`` message: a hostile token is the
    ``UNAUTHORIZED`` error and a 1008 close; hostile messages on a logged-in socket are each an
    ``INVALID_REQUEST`` error (JSON deeper than Python's reader goes once closed the socket with 1011)
    and the socket keeps answering."""
    token = str(http.headers["Authorization"]).removeprefix("Bearer ")
    async with served(app) as base_url:
        ws_url = base_url.replace("http://", "ws://") + "/ws"
        for url, first in (
            (ws_url + "?token=%C3%A9.%C3%A9.x", None),
            (ws_url, json.dumps({"type": "auth", "token": "\u00e9.\u00e9.x"})),
            (ws_url, DEEP.decode()),
            (ws_url, "NaN"),
        ):
            async with connect(url) as refused:
                if first is not None:
                    await refused.send(first)
                message = await next_message(refused)
                assert (message["type"], message["data"]["code"]) == ("error", "UNAUTHORIZED"), message
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(refused.recv(), 10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

        async with connect(f"{ws_url}?token={token}") as ws:
            assert (await next_message(ws))["type"] == "authenticated"
            hostile = [
                DEEP.decode(),
                NESTED.decode(),
                '{"type": "subscribe", "channels": [NaN]}',
                '{"type": "action", "action": "install_preset", "data": {"preset_id": "' + "x" * 300 + '"}}',
                '{"type": "action", "action": "install_preset", "data": {"preset_id": "../"}, "x": 1e999}',
                '{"type": "action", "action": "install_preset", "data": {"preset_id": "\\ud800"}}',
                json.dumps({"type": "subscribe", "channels": ["../../etc"]}),
                "\x00\ufffd",
            ]
            for text in hostile:
                await ws.send(text)
                message = await next_message(ws)
                assert message["type"] == "error", (text[:80], message)
                assert message["data"]["code"] in ("INVALID_REQUEST", "PRESET_NOT_FOUND"), message
            await ws.send(json.dumps({"type": "subscribe", "channels": ["queue"]}))
            assert await next_message(ws) == {"type": "subscribed", "channels": ["queue"]}
