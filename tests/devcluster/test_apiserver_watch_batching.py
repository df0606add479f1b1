"""Watch streams write every already-queued event at once: same lines, same order, fewer writes.

The API server runs in this test's event loop (the real :class:`DevClusterServer`, over real HTTP
with aiohttp's client), so a burst of writes made in one synchronous block is queued for the watcher
before its stream runs again: that is what makes the batching observable and the test deterministic.
The clients the devcluster serves (kubectl, the Python client, kopf) read lines, never HTTP chunks;
their watches are covered by ``test_list_watch.py``, ``test_kubectl.py`` and ``test_kopf_operator.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubepilot_devcluster.apiserver import listing
from kubepilot_devcluster.apiserver.cluster import WriteOptions
from kubepilot_devcluster.apiserver.server import DevClusterServer

NAMESPACE = "batching"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[DevClusterServer]:
    instance = DevClusterServer(tmp_path / "data")
    await instance.start()
    _create(instance, "namespaces", "", {"metadata": {"name": NAMESPACE}})
    try:
        yield instance
    finally:
        await instance.stop()


def _create(server: DevClusterServer, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    resource = server.registry.get("", "v1", plural)
    assert resource is not None
    return server.cluster.create(resource, namespace, body, WriteOptions())


def _config_map(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"index": name}}


class Stream:
    """A raw watch: the decoded events and how many HTTP chunks carried them."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[dict[str, Any]] = []
        self.chunks = 0
        self._buffer = b""

    async def read_until(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.events) < count:
                data, _end_of_chunk = await self.response.content.readchunk()
                if not data:
                    return  # the stream ended
                self.chunks += 1
                self._buffer += data
                *lines, self._buffer = self._buffer.split(b"\n")
                self.events.extend(json.loads(line) for line in lines if line)


async def _watch(session: aiohttp.ClientSession, server: DevClusterServer, query: str = "") -> Stream:
    url = f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true&resourceVersion="
    url += f"{server.store.resource_version}{query}"
    response = await session.get(url)
    assert response.status == 200
    # The watcher subscribes when the handler runs, after the headers went out: wait until it has.
    for _ in range(1000):
        if server.store.watcher_count:
            return Stream(response)
        await asyncio.sleep(0.01)
    raise AssertionError("the watch never subscribed")


async def test_a_burst_reaches_a_watcher_in_order_in_fewer_writes(server: DevClusterServer) -> None:
    async with aiohttp.ClientSession() as session:
        stream = await _watch(session, server)
        created = [_create(server, "configmaps", NAMESPACE, _config_map(f"cm-{i:03d}")) for i in range(50)]
        await stream.read_until(50)
    assert [e["type"] for e in stream.events] == ["ADDED"] * 50
    # Byte for byte the objects the writes returned, in resourceVersion order.
    assert [e["object"] for e in stream.events] == created
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in stream.events]
    assert versions == sorted(versions)
    assert stream.chunks < 50, "a burst queued at once should leave in fewer writes than events"


async def test_filtered_events_inside_a_batch_are_left_out(server: DevClusterServer) -> None:
    async with aiohttp.ClientSession() as session:
        stream = await _watch(session, server, "&labelSelector=keep%3Dyes")
        for i in range(20):
            labels = {"keep": "yes" if i % 2 == 0 else "no"}
            _create(server, "configmaps", NAMESPACE, _config_map(f"cm-{i:03d}", labels))
        await stream.read_until(10)
    names = [e["object"]["metadata"]["name"] for e in stream.events]
    assert names == [f"cm-{i:03d}" for i in range(0, 20, 2)]


async def test_a_stream_closed_mid_batch_delivers_the_events_queued_before(server: DevClusterServer) -> None:
    async with aiohttp.ClientSession() as session:
        stream = await _watch(session, server)
        for i in range(5):
            _create(server, "configmaps", NAMESPACE, _config_map(f"cm-{i}"))
        assert server.store.drop_watchers() == 1  # queued after the five events, in the same batch
        _create(server, "configmaps", NAMESPACE, _config_map("after-the-close"))
        await stream.read_until(6)
        assert await stream.response.content.read() == b""  # the stream ended
    assert [e["object"]["metadata"]["name"] for e in stream.events] == [f"cm-{i}" for i in range(5)]


async def test_more_events_than_one_batch_are_all_delivered(server: DevClusterServer) -> None:
    count = listing.WRITE_BATCH_MAX * 2 + 7
    async with aiohttp.ClientSession() as session:
        stream = await _watch(session, server)
        for i in range(count):
            _create(server, "configmaps", NAMESPACE, _config_map(f"cm-{i:04d}"))
        await stream.read_until(count)
    assert [e["object"]["metadata"]["name"] for e in stream.events] == [f"cm-{i:04d}" for i in range(count)]
    assert stream.chunks >= 3, "a batch is bounded: at least three writes for 2 * WRITE_BATCH_MAX + 7 events"


async def test_a_watch_from_now_sends_existing_objects_then_changes(server: DevClusterServer) -> None:
    count = listing.WRITE_BATCH_MAX + 3
    for i in range(count):
        _create(server, "configmaps", NAMESPACE, _config_map(f"old-{i:04d}"))
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{server.url}/api/v1/namespaces/{NAMESPACE}/configmaps?watch=true")
        stream = Stream(response)
        await stream.read_until(count)
        _create(server, "configmaps", NAMESPACE, _config_map("new"))
        await stream.read_until(count + 1)
    names = [e["object"]["metadata"]["name"] for e in stream.events]
    assert names == [f"old-{i:04d}" for i in range(count)] + ["new"]
    assert {e["type"] for e in stream.events} == {"ADDED"}
