"""The control plane's REST client against the devcluster: CRUD helpers and a watch that survives faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kubepilot_devcluster.controllers.client import CONFIGMAPS, ApiError, KubeClient
from kubepilot_devcluster.testing import DevCluster


async def _until(check: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}


async def test_crud_helpers_report_missing_objects_and_errors(devcluster: DevCluster, namespace: str) -> None:
    async with KubeClient(devcluster.url) as client:
        created = await client.create(CONFIGMAPS, namespace, _configmap("one"))
        assert created["metadata"]["uid"]
        patched = await client.patch(CONFIGMAPS, namespace, "one", {"data": {"k": "changed"}})
        assert patched is not None and patched["data"] == {"k": "changed"}
        items, resource_version = await client.list(CONFIGMAPS, namespace)
        assert [i["metadata"]["name"] for i in items] == ["one"] and resource_version
        with pytest.raises(ApiError) as conflict:
            await client.create(CONFIGMAPS, namespace, _configmap("one"))
        assert conflict.value.status == 409 and conflict.value.reason == "AlreadyExists"
        assert await client.delete(CONFIGMAPS, namespace, "one") is True
        assert await client.delete(CONFIGMAPS, namespace, "one") is False
        assert await client.get(CONFIGMAPS, namespace, "one") is None
        assert await client.patch(CONFIGMAPS, namespace, "one", {"data": {}}) is None


async def test_watch_resumes_after_dropped_streams_resets_and_410(
    devcluster: DevCluster, namespace: str
) -> None:
    seen: list[tuple[str, str]] = []
    async with KubeClient(devcluster.url) as client:

        async def consume() -> None:
            async for event in client.watch_forever(CONFIGMAPS, namespace):
                if event.type == "RELISTED":
                    names = sorted(i["metadata"]["name"] for i in event.obj["items"])
                    seen.append(("RELISTED", ",".join(names)))
                else:
                    seen.append((event.type, event.obj["metadata"]["name"]))

        task = asyncio.create_task(consume())
        try:
            await _until(lambda: ("RELISTED", "") in seen, "the initial list")
            await client.create(CONFIGMAPS, namespace, _configmap("a"))
            await _until(lambda: ("ADDED", "a") in seen, "a live event")
            await asyncio.to_thread(devcluster.drop_watches)
            await client.create(CONFIGMAPS, namespace, _configmap("b"))
            await _until(lambda: ("ADDED", "b") in seen, "an event after the stream was dropped")
            await asyncio.to_thread(devcluster.inject_fault, "410", 1, "watch", "configmaps")
            await asyncio.to_thread(devcluster.drop_watches)
            await _until(lambda: ("RELISTED", "a,b") in seen, "a relist after 410 Gone")
            await asyncio.to_thread(devcluster.inject_fault, "reset", 1, "watch", "configmaps")
            await asyncio.to_thread(devcluster.drop_watches)
            await client.create(CONFIGMAPS, namespace, _configmap("c"))
            await _until(lambda: ("ADDED", "c") in seen, "an event after a reset connection")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert seen.count(("ADDED", "a")) == 1 and seen.count(("ADDED", "b")) == 1
