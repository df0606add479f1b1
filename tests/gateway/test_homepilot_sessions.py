"""Expired HomePilot edit sessions: their ConfigMaps (and GenerationJobs) are deleted, lazily when
read and by the gateway's sweep over its session index, and a session renewed meanwhile survives.

Real pieces: the devcluster (ConfigMaps with resourceVersion preconditions, GenerationJobs), the
gateway app over httpx's ASGI transport, its lifespan (which runs the sweep). Ageing a session is
done by rewriting its ``updated_at`` (and its index entry) in the cluster, instead of waiting out
a TTL. No operator runs: the edit job stays Pending, which is all the deletion needs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, NotFound, resource_for
from kubepilot_gateway.profiles.homepilot import create_app
from kubepilot_gateway.profiles.homepilot.sessions import (
    INDEX_KEY,
    INDEX_NAME,
    SessionStore,
    configmap_name,
    session_key,
)
from kubepilot_gateway.settings import Volumes
from tests.gateway.test_homepilot_edit_api import context, png, upload, volumes

__all__ = ["volumes"]  # the fixture shared with test_homepilot_api

GJ = resource_for("GenerationJob")
WEEK = 7 * 24 * 3600.0


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> GatewayContext:
    return context(kube, cache, store, namespace, volumes)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    transport = httpx.ASGITransport(app=app)  # lifespan not run: no sweep behind the test's back
    async with httpx.AsyncClient(transport=transport, base_url="http://homepilot.test") as session:
        yield session


async def age_session(kube: KubeClient, namespace: str, conversation_id: str, seconds: float) -> None:
    """Move the session's last update ``seconds`` into the past, as if it had been left alone."""
    path = CONFIGMAPS.path(namespace, configmap_name(conversation_id))
    found = await kube.request("GET", path)
    record = json.loads(found["data"]["session.json"])
    record["updated_at"] -= seconds
    found["data"]["session.json"] = json.dumps(record)
    await kube.request("PUT", path, body=found)


async def index(kube: KubeClient, namespace: str) -> dict[str, int]:
    found = await kube.request("GET", CONFIGMAPS.path(namespace, INDEX_NAME))
    entries: dict[str, int] = json.loads(found["data"][INDEX_KEY])
    return entries


async def age_index(kube: KubeClient, namespace: str, conversation_id: str, seconds: float) -> None:
    path = CONFIGMAPS.path(namespace, INDEX_NAME)
    found = await kube.request("GET", path)
    entries = json.loads(found["data"][INDEX_KEY])
    entries[session_key(conversation_id)] -= int(seconds)
    found["data"][INDEX_KEY] = json.dumps(entries)
    await kube.request("PUT", path, body=found)


async def exists(kube: KubeClient, namespace: str, conversation_id: str) -> bool:
    try:
        await kube.request("GET", CONFIGMAPS.path(namespace, configmap_name(conversation_id)))
    except NotFound:
        return False
    return True


async def test_expired_sessions_are_deleted_when_read_and_by_the_sweep(
    http: httpx.AsyncClient, ctx: GatewayContext, kube: KubeClient, namespace: str
) -> None:
    for session in ("s-old", "s-renewed", "s-lazy", "s-fresh"):
        assert (await upload(http, session, png())).status_code == 200
    assert set(await index(kube, namespace)) == {
        session_key(s) for s in ("s-old", "s-renewed", "s-lazy", "s-fresh")
    }
    # s-old has an edit job (Pending: no operator here) that must go with it.
    await http.post("/v1/edit-sessions/s-old/message", json={"message": "make it blue"})
    (job,) = ctx.cache.list(GJ, ctx.store.namespace)
    assert job["metadata"]["labels"]["kubepilot.io/homepilot-edit-session"] == session_key("s-old")

    # Read after its TTL: empty, and its ConfigMap deleted there and then.
    await age_session(kube, namespace, "s-lazy", WEEK + 60)
    lazy = (await http.get("/v1/edit-sessions/s-lazy")).json()
    assert lazy["active_image_url"] is None and lazy["versions"] == []
    assert not await exists(kube, namespace, "s-lazy")

    # A delete under a stale resourceVersion loses to the writer who renewed the session.
    store = SessionStore(ctx, WEEK)
    assert await store.remove(configmap_name("s-fresh"), "1") is False
    assert await exists(kube, namespace, "s-fresh")

    await age_session(kube, namespace, "s-old", WEEK + 60)
    await age_index(kube, namespace, "s-old", WEEK + 60)
    await age_index(kube, namespace, "s-renewed", WEEK + 60)  # the index is old, the session is not

    # The sweep runs once when the app starts (and every sweepSeconds after).
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 20
        while await exists(kube, namespace, "s-old"):
            assert time.monotonic() < deadline, "the sweep did not delete the expired session"
            await asyncio.sleep(0.05)
        while session_key("s-old") in await index(kube, namespace):
            assert time.monotonic() < deadline, "the sweep did not update its index"
            await asyncio.sleep(0.05)
    assert await exists(kube, namespace, "s-renewed") and await exists(kube, namespace, "s-fresh")
    entries = await index(kube, namespace)
    assert set(entries) == {session_key("s-renewed"), session_key("s-fresh")}  # s-lazy: gone, dropped
    assert time.time() - entries[session_key("s-renewed")] < 600  # refreshed from the session itself
    remaining = [
        j for j in ctx.cache.list(GJ, ctx.store.namespace) if not j["metadata"].get("deletionTimestamp")
    ]
    assert remaining == []
    assert (await http.get("/v1/edit-sessions/s-renewed")).json()["active_image_url"] is not None

    # A second sweep finds nothing more to do.
    assert await store.sweep() == []
