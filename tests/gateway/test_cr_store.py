"""The CR store against the devcluster: read-your-writes, conflict retries, typed errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.kube import (
    AlreadyExists,
    ClusterCache,
    Conflict,
    CrStore,
    Invalid,
    NotFound,
    resource_for,
)
from tests.gateway.helpers import Recorder, eventually, model_pull, outside

MODELPULLS = resource_for("ModelPull")


def version(obj: dict[str, Any] | None) -> int:
    assert obj is not None
    return int(obj["metadata"]["resourceVersion"])


async def test_a_created_object_is_in_the_cache_when_create_returns(
    store: CrStore, cache: ClusterCache
) -> None:
    created = await store.create(MODELPULLS, model_pull("a"))
    cached = cache.get(MODELPULLS, "a")  # no await in between: the watch has had no chance yet
    assert cached is not None and version(cached) == version(created)


async def test_a_patch_is_in_the_cache_when_patch_returns_and_announced_once(
    store: CrStore, cache: ClusterCache
) -> None:
    recorder = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    await store.create(MODELPULLS, model_pull("a"))
    patched = await store.patch(MODELPULLS, "a", {"spec": {"displayName": "A"}})
    cached = cache.get(MODELPULLS, "a")
    assert cached is not None and cached["spec"]["displayName"] == "A"
    assert version(cached) == version(patched)

    # The watch then delivers the same two versions; they are recognised and not re-announced.
    await eventually(
        lambda: cache.informer(MODELPULLS).resource_version == str(version(patched)), what="watch"
    )
    await asyncio.sleep(0.05)
    assert recorder.types_for("a") == ["ADDED", "MODIFIED"]
    await recorder.close()


async def test_a_json_patch_and_a_status_patch_are_read_back_at_once(
    store: CrStore, cache: ClusterCache
) -> None:
    await store.create(MODELPULLS, model_pull("a"))
    await store.patch(
        MODELPULLS,
        "a",
        [{"op": "add", "path": "/metadata/labels", "value": {"team": "x"}}],
        patch_type="json",
    )
    assert cache.get(MODELPULLS, "a")["metadata"]["labels"] == {"team": "x"}  # type: ignore[index]
    written = await store.patch_status(MODELPULLS, "a", {"phase": "Downloading"})
    assert written["status"]["phase"] == "Downloading"
    assert cache.get(MODELPULLS, "a")["status"]["phase"] == "Downloading"  # type: ignore[index]


async def test_a_deleted_object_leaves_the_cache_when_delete_returns(
    store: CrStore, cache: ClusterCache
) -> None:
    recorder = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    await store.create(MODELPULLS, model_pull("a"))
    assert await store.delete(MODELPULLS, "a") is None
    assert cache.get(MODELPULLS, "a") is None
    await asyncio.sleep(0.2)  # the watch's own ADDED and DELETED must not bring it back
    assert cache.get(MODELPULLS, "a") is None
    assert recorder.types_for("a") == ["ADDED", "DELETED"]
    await recorder.close()


async def test_injected_conflicts_on_patch_are_retried(
    store: CrStore, cache: ClusterCache, devcluster: DevCluster
) -> None:
    await store.create(MODELPULLS, model_pull("a"))
    devcluster.inject_fault("409", count=2, verb="patch", resource="modelpulls")
    patched = await store.patch(MODELPULLS, "a", {"spec": {"displayName": "A"}})
    assert patched["spec"]["displayName"] == "A"
    assert devcluster.admin("GET", "faults")["faults"] == []  # both conflicts were met and retried


async def test_conflicts_beyond_the_retry_budget_reach_the_caller(
    store: CrStore, devcluster: DevCluster
) -> None:
    await store.create(MODELPULLS, model_pull("a"))
    devcluster.inject_fault("409", count=store.conflict_retries + 1, verb="patch", resource="modelpulls")
    with pytest.raises(Conflict):
        await store.patch(MODELPULLS, "a", {"spec": {"displayName": "A"}})


async def test_a_patch_pinned_to_an_old_version_conflicts_without_retry(store: CrStore) -> None:
    created = await store.create(MODELPULLS, model_pull("a"))
    await store.patch(MODELPULLS, "a", {"spec": {"displayName": "newer"}})
    stale = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "spec": {"displayName": "x"},
    }
    with pytest.raises(Conflict, match="modified"):
        await store.patch(MODELPULLS, "a", stale)
    assert (await store.get(MODELPULLS, "a"))["spec"]["displayName"] == "newer"


async def test_mutate_rereads_and_reapplies_after_a_real_conflict(
    store: CrStore, cache: ClusterCache, kube_api: Any, namespace: str
) -> None:
    await store.create(MODELPULLS, model_pull("a"))
    calls = 0

    def add_label(obj: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes between our read and our write
            outside(kube_api).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "modelpulls", "a", {"spec": {"displayName": "theirs"}}
            )
        obj["metadata"].setdefault("labels", {})["ours"] = "yes"

    written = await store.mutate(MODELPULLS, "a", add_label)
    assert calls == 2
    assert written["metadata"]["labels"] == {"ours": "yes"}
    assert written["spec"]["displayName"] == "theirs"  # their write survived ours
    assert cache.get(MODELPULLS, "a")["metadata"]["labels"] == {"ours": "yes"}  # type: ignore[index]


async def test_mutate_retries_injected_conflicts_and_skips_empty_changes(
    store: CrStore, devcluster: DevCluster
) -> None:
    created = await store.create(MODELPULLS, model_pull("a"))
    devcluster.inject_fault("409", count=2, verb="patch", resource="modelpulls")
    written = await store.mutate(
        MODELPULLS, "a", lambda obj: {**obj, "spec": {**obj["spec"], "displayName": "B"}}
    )
    assert written["spec"]["displayName"] == "B"
    unchanged = await store.mutate(MODELPULLS, "a", lambda obj: None)
    assert version(unchanged) == version(written) > version(created)


async def test_api_errors_are_typed_with_the_servers_message(store: CrStore) -> None:
    with pytest.raises(NotFound):
        await store.get(MODELPULLS, "missing")
    with pytest.raises(NotFound):
        await store.patch(MODELPULLS, "missing", {"spec": {"displayName": "x"}})
    with pytest.raises(NotFound):
        await store.delete(MODELPULLS, "missing")
    assert await store.delete(MODELPULLS, "missing", missing_ok=True) is None

    await store.create(MODELPULLS, model_pull("a"))
    with pytest.raises(AlreadyExists) as exists:
        await store.create(MODELPULLS, model_pull("a"))
    assert exists.value.code == 409 and "already exists" in exists.value.message

    broken = model_pull("b")
    del broken["spec"]["source"]["huggingFace"]
    with pytest.raises(Invalid) as invalid:
        await store.create(MODELPULLS, broken)
    assert invalid.value.code == 422
    assert "type HuggingFace needs huggingFace" in invalid.value.message


async def test_a_throttled_request_is_retried_after_retry_after(
    store: CrStore, devcluster: DevCluster
) -> None:
    await store.create(MODELPULLS, model_pull("a"))
    devcluster.inject_fault("429", count=1, verb="get", resource="modelpulls")
    started = time.monotonic()
    got = await store.get(MODELPULLS, "a")
    assert got["metadata"]["name"] == "a"
    assert time.monotonic() - started >= 0.9  # the devcluster says Retry-After: 1
