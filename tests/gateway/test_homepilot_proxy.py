"""The HomePilot profile's pass-through, seed path by seed path, and ``/story/scene/image``.

Every seed endpoint the profile does not implement must reach the application ServiceInstance as
the client sent it (method, path, query string, body) and come back as the application answered
it (status and body bytes); the timeout of its route class applies; a streamed answer reaches
the client while the application is still sending it (a real uvicorn: httpx's ASGI transport
would buffer it). The application is ``FakeHomePilot`` (a real aiohttp server that records what
it receives, see ``test_homepilot_api``); the HomePilot image cannot run here. No operator runs:
``/story/scene/image``'s GenerationJob is finished by the test writing the status the operator
would (the real generator runs it in ``test_homepilot_imagine_e2e``).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.homepilot import create_app
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.test_homepilot_api import (
    CHUNKS,
    FakeHomePilot,
    app_service,
    bound_socket,
    fake_homepilot,
    volumes,
)

__all__ = ["fake_homepilot", "volumes"]  # fixtures shared with test_homepilot_api

JsonObject = dict[str, Any]
GJ = resource_for("GenerationJob")

# Every seed path (HP-001…HP-116) the profile passes through, with ids filled in: method, path and
# query, body. The profile's own routes are elsewhere; these must reach the application as sent.
PASSED_THROUGH: list[tuple[str, str, JsonObject | None]] = [
    ("GET", "/providers", None),  # HP-005
    ("GET", "/settings", None),  # HP-006
    ("POST", "/chat", {"message": "hello", "mode": "chat"}),  # HP-007 text
    ("POST", "/chat", {"message": "a cat", "mode": "imagine", "project_id": "p1"}),  # project chat
    ("POST", "/chat", {"message": "make it move", "mode": "animate"}),  # HP-007 animate
    ("GET", "/models?provider=ollama&base_url=http%3A%2F%2Follama%3A11434", None),  # HP-003 LLMs
    ("GET", "/conversations?limit=5", None),  # HP-009
    ("GET", "/conversations/c-1/messages", None),  # HP-010
    ("DELETE", "/conversations/c-1", None),  # HP-011
    ("GET", "/conversations/c-1/search?q=red%20cat", None),  # HP-012
    ("GET", "/projects", None),  # HP-013
    ("POST", "/projects", {"name": "Persona", "project_type": "persona"}),  # HP-014
    ("GET", "/projects/p-1", None),  # HP-015
    ("PUT", "/projects/p-1", {"name": "Renamed"}),  # HP-016
    ("DELETE", "/projects/p-1", None),  # HP-017
    ("GET", "/projects/p-1/documents", None),  # HP-019
    ("GET", "/projects/examples", None),  # HP-020
    ("POST", "/projects/from-example/e-1", None),  # HP-021
    ("GET", "/api/personalities", None),  # HP-022
    ("GET", "/api/personalities/friendly", None),  # HP-023
    ("GET", "/persona/sessions?project_id=p-1", None),  # HP-024
    ("POST", "/persona/sessions", {"project_id": "p-1"}),  # HP-025
    ("POST", "/persona/sessions/resolve", {"project_id": "p-1"}),  # HP-026
    ("GET", "/persona/sessions/s-1", None),  # HP-027
    ("POST", "/persona/sessions/s-1/end", None),  # HP-028
    ("GET", "/persona/memory?project_id=p-1", None),  # HP-029
    ("POST", "/persona/memory", {"project_id": "p-1", "key": "likes", "value": "cats"}),  # HP-030
    ("DELETE", "/persona/memory?project_id=p-1", None),  # HP-031
    ("POST", "/projects/p-1/persona/avatar/commit", {"image_url": "/files/a.png"}),  # HP-032
    ("GET", "/projects/p-1/persona/export", None),  # HP-033
    ("POST", "/story/start", {"premise": "a cat in space"}),  # HP-050
    ("POST", "/story/continue", {"previous_session_id": "st-1"}),  # HP-051
    ("POST", "/story/next", {"session_id": "st-1"}),  # HP-052
    ("GET", "/story/st-404", None),  # HP-053 (the application's 404 comes back)
    ("GET", "/story/sessions/list?limit=3", None),  # HP-054
    ("DELETE", "/story/st-1", None),  # HP-055
    ("DELETE", "/story/st-1/scene/2", None),  # HP-056
    ("POST", "/story/scene/image", {"session_id": "st-9", "scene_idx": 1, "image_url": "/files/x.png"}),
    ("GET", "/studio/videos", None),  # HP-058
    ("POST", "/studio/videos", {"title": "Trailer"}),  # HP-059
    ("GET", "/studio/videos/v-1", None),  # HP-060
    ("PATCH", "/studio/videos/v-1", {"title": "Teaser"}),  # HP-061
    ("DELETE", "/studio/videos/v-1", None),  # HP-062
    ("GET", "/studio/videos/v-1/scenes", None),  # HP-063
    ("POST", "/studio/videos/v-1/scenes", {"narration": "x"}),  # HP-064
    ("GET", "/studio/videos/v-1/scenes/s-1", None),  # HP-065
    ("PATCH", "/studio/videos/v-1/scenes/s-1", {"narration": "y"}),  # HP-066
    ("DELETE", "/studio/videos/v-1/scenes/s-1", None),  # HP-067
    ("POST", "/studio/videos/v-1/generate-outline", {}),  # HP-068
    ("GET", "/studio/videos/v-1/outline", None),  # HP-069
    ("POST", "/studio/videos/v-1/scenes/generate-from-outline", {}),  # HP-070
    ("POST", "/studio/videos/v-1/export", {"format": "zip"}),  # HP-071
    ("GET", "/studio/videos/v-1/policy", None),  # HP-072
    ("POST", "/studio/videos/v-1/policy/check", {}),  # HP-073
    ("GET", "/studio/videos/v-1/audit", None),  # HP-074
    ("GET", "/studio/genres", None),  # HP-075
    ("GET", "/studio/presets", None),  # HP-076
    ("GET", "/studio/library/style-kits", None),  # HP-077
    ("GET", "/studio/library/templates", None),  # HP-078
    ("GET", "/studio/projects/v-1/assets", None),  # HP-079
    ("POST", "/studio/projects/v-1/assets", {"kind": "image"}),  # HP-080
    ("GET", "/studio/projects/v-1/audio", None),  # HP-081
    ("POST", "/studio/projects/v-1/audio", {"kind": "music"}),  # HP-082
    ("GET", "/studio/projects/v-1/captions", None),  # HP-083
    ("POST", "/studio/projects/v-1/captions", {"text": "hi"}),  # HP-084
    ("GET", "/studio/projects/v-1/versions", None),  # HP-085
    ("POST", "/studio/projects/v-1/versions", {}),  # HP-086
    ("GET", "/studio/projects/v-1/share", None),  # HP-087
    ("POST", "/studio/projects/v-1/share", {}),  # HP-088
    ("GET", "/studio/health", None),  # HP-089
    ("GET", "/v1/agentic/status", None),  # HP-090
    ("GET", "/v1/agentic/capabilities", None),  # HP-091
    ("GET", "/v1/agentic/catalog?kind=tools", None),  # HP-092
    ("POST", "/v1/agentic/invoke", {"tool": "web.search", "args": {"q": "cats"}}),  # HP-093
    ("GET", "/v1/agentic/suite", None),  # HP-094
    ("GET", "/v1/agentic/suite/home", None),  # HP-095
    ("POST", "/v1/agentic/sync", {}),  # HP-096
    ("POST", "/v1/agentic/register/tool", {"name": "t"}),  # HP-097
    ("POST", "/v1/agentic/register/agent", {"name": "a"}),  # HP-098
    ("POST", "/v1/agentic/register/gateway", {"name": "g"}),  # HP-099
    ("GET", "/v1/agentic/admin", None),  # HP-100
    ("GET", "/community/status", None),  # HP-101
    ("GET", "/community/registry?search=cat&tag=anime", None),  # HP-102
    ("GET", "/community/card/persona-1/1.0.0", None),  # HP-103
    ("GET", "/community/preview/persona-1/1.0.0", None),  # HP-104
    ("GET", "/community/download/persona-1/1.0.0", None),  # HP-105
    ("POST", "/civitai/search", {"query": "anime", "model_type": "image"}),  # HP-113
    ("POST", "/models/install", {"provider": "ollama", "model_type": "chat", "model_id": "llama3:8b"}),
    ("POST", "/models/delete", {"provider": "ollama", "model_id": "llama3:8b"}),
]


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> GatewayContext:
    profile = {
        "proxy": {"timeouts": {"default": 0.5, "llm": 10.0}},
        "images": {"waitSeconds": 20, "model": "diffusers/tiny-sd", "width": 64, "height": 64},
    }
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"homepilot": profile})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://homepilot.test") as session:
            yield session


async def test_every_seed_path_not_implemented_reaches_the_application_unchanged(
    http: httpx.AsyncClient, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    await app_service(store, endpoint=fake_homepilot.url)
    for method, target, body in PASSED_THROUGH:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        headers["X-API-Key"] = "app-key"
        count = len(fake_homepilot.seen)
        answer = await http.request(method, target, content=content, headers=headers)
        assert len(fake_homepilot.seen) == count + 1, f"{method} {target} did not reach the application"
        seen = fake_homepilot.last()
        path, _, query = target.partition("?")
        assert (seen.method, seen.path, seen.query) == (method, path, query), target
        assert seen.body == (content or b""), target
        assert seen.headers["x-api-key"] == "app-key", target
        assert (answer.status_code, answer.content) == (seen.status, seen.answer), target
    statuses = {(s.method, s.path): s.status for s in fake_homepilot.seen}
    assert statuses[("POST", "/projects")] == 201 and statuses[("GET", "/story/st-404")] == 404
    assert statuses[("POST", "/story/scene/image")] == 404  # HomePilot's "Scene not found", passed back


async def test_timeouts_per_route_class_and_an_unreachable_application(
    http: httpx.AsyncClient, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    """Here ``default`` is 0.5 s and ``llm`` 10 s: the same 1 s wait fails on an ordinary path and
    succeeds on one of HomePilot's LLM paths."""
    await app_service(store, endpoint=fake_homepilot.url)
    slow = await http.get("/conversations", params={"delay": "1"})
    assert slow.status_code == 504 and slow.json() == {
        "detail": "The HomePilot application did not answer within 0.5s"
    }
    thinking = await http.post("/story/next", params={"delay": "1"}, json={"session_id": "st-1"})
    assert thinking.status_code == 200 and thinking.json()["path"] == "/story/next"
    agentic = await http.post("/v1/agentic/invoke", params={"delay": "1"}, json={"tool": "x"})
    assert agentic.status_code == 200

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    await store.patch_status(
        resource_for("ServiceInstance"), "homepilot", {"endpoint": f"http://127.0.0.1:{port}"}
    )
    refused = await http.get("/conversations")
    assert refused.status_code == 502 and "could not be reached" in refused.json()["detail"]


async def test_a_streamed_answer_reaches_the_client_while_the_application_sends_it(
    ctx: GatewayContext, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    """On a real uvicorn: the application holds its stream after the first chunk until the test
    has received that chunk through the gateway; a buffering proxy would never deliver it."""
    await app_service(store, endpoint=fake_homepilot.url)
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            async with http.stream("GET", "/stream-gated?live=1") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                chunks = response.aiter_raw()
                first = await asyncio.wait_for(anext(chunks), 10)
                assert first == CHUNKS[0] and not fake_homepilot.gate.is_set()
                fake_homepilot.gate.set()
                rest = [chunk async for chunk in chunks]
            assert first + b"".join(rest) == b"".join(CHUNKS)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
    assert fake_homepilot.last().query == "live=1"


async def test_story_scene_image_generates_the_scene_image_and_persists_it_in_the_application(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore, fake_homepilot: FakeHomePilot
) -> None:
    fake_homepilot.stories["st-1"] = {
        "ok": True,
        "session_id": "st-1",
        "title": "Cats",
        "scenes": [
            {"idx": 1, "narration": "…", "image_prompt": "a cat on the moon", "negative_prompt": "dogs"},
        ],
    }
    # Bad input is FastAPI's 422 (and the application is not asked).
    invalid = await http.post("/story/scene/image", json={"session_id": "st-1", "scene_idx": "first"})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "scene_idx"]
    # The story lives in the application: without it running, the 503 names its ServiceInstance.
    down = await http.post("/story/scene/image", json={"session_id": "st-1", "scene_idx": 1})
    assert down.status_code == 503 and "ServiceInstance" in down.json()["detail"]

    await app_service(store, endpoint=fake_homepilot.url)
    unknown = await http.post("/story/scene/image", json={"session_id": "st-404", "scene_idx": 1})
    assert unknown.status_code == 404 and unknown.json() == {"ok": False, "error": "session not found"}
    no_scene = await http.post("/story/scene/image", json={"session_id": "st-1", "scene_idx": 7})
    assert no_scene.status_code == 404 and no_scene.json() == {"ok": False, "error": "Scene not found"}
    assert ctx.cache.list(GJ, ctx.store.namespace) == []

    call = asyncio.create_task(
        http.post(
            "/story/scene/image",
            json={"session_id": "st-1", "scene_idx": 1, "imgSeed": 5},
            headers={"X-API-Key": "app-key"},
        )
    )
    deadline = asyncio.get_running_loop().time() + 20
    while not ctx.cache.list(GJ, ctx.store.namespace):
        assert asyncio.get_running_loop().time() < deadline and not call.done()
        await asyncio.sleep(0.02)
    (job,) = ctx.cache.list(GJ, ctx.store.namespace)
    spec = job["spec"]
    assert job["metadata"]["labels"]["kubepilot.io/homepilot-feature"] == "scene-image"
    assert (spec["type"], spec["prompt"], spec["negativePrompt"]) == ("txt2img", "a cat on the moon", "dogs")
    assert (spec["model"], spec["width"], spec["height"], spec["seed"]) == ("diffusers/tiny-sd", 64, 64, 5)
    # The operator's part: the job finished with one image.
    outputs = [{"index": 0, "path": "out-0.png", "width": 64, "height": 64, "seed": 5}]
    await store.patch_status(GJ, job["metadata"]["name"], {"phase": "Completed", "outputs": outputs})
    answer = await asyncio.wait_for(call, 20)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    url = body["image_url"]
    assert url.startswith("http://homepilot.test/files/kubepilot/generations/") and url.endswith("/out-0.png")
    assert body == {
        "ok": True,
        "session_id": "st-1",
        "scene_idx": 1,
        "image_url": url,
        "media": {"images": [url]},
    }
    persisted = fake_homepilot.last()
    assert (persisted.method, persisted.path, persisted.headers["x-api-key"]) == (
        "POST",
        "/story/scene/image",
        "app-key",
    )
    assert json.loads(persisted.body) == {"session_id": "st-1", "scene_idx": 1, "image_url": url}
    assert fake_homepilot.stories["st-1"]["scenes"][0]["image_url"] == url


async def test_docs_list_story_scene_image(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    schema = json.dumps(spec["paths"]["/story/scene/image"]["post"]["requestBody"])
    assert "session_id" in schema and "scene_idx" in schema and "image_url" in schema
