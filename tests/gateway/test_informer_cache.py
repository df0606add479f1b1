"""The informer cache against the devcluster: list, watch, dropped streams, 410 Gone, errors."""

from __future__ import annotations

import asyncio
from typing import Any

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.bus import Lagged, ResourceEvent
from kubepilot_gateway.kube import JOBS, ClusterCache, CrStore, Informer, KubeClient, resource_for
from tests.gateway.conftest import FAST_WATCH
from tests.gateway.helpers import Recorder, eventually, model_pull, outside

MODELPULLS = resource_for("ModelPull")


def names(cache: ClusterCache, kind: str = "ModelPull") -> set[str]:
    return {o["metadata"]["name"] for o in cache.list(kind)}


async def watching(cache: ClusterCache, kube_api: Any, namespace: str, marker: str) -> None:
    """Wait until the ModelPull watch stream is live (it delivered an object created now)."""
    outside(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelpulls", model_pull(marker)
    )
    await eventually(lambda: cache.get("ModelPull", marker) is not None, what=f"{marker} via the watch")


async def test_informer_lists_existing_objects_then_follows_creates_updates_and_deletes(
    kube: KubeClient, kube_api: Any, namespace: str
) -> None:
    api = outside(kube_api)
    for name in ("before-1", "before-2"):
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull(name))
    async with ClusterCache(kube, namespace=namespace, settings=FAST_WATCH) as cache:
        recorder = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
        await asyncio.wait_for(cache.wait_synced(), 10)
        assert cache.synced
        assert names(cache) == {"before-1", "before-2"}
        await eventually(lambda: recorder.seen("ADDED", "before-2"), what="initial ADDED")

        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull("later"))
        await eventually(lambda: recorder.seen("ADDED", "later"), what="ADDED later")
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelpulls", "later", {"spec": {"displayName": "Later"}}
        )
        await eventually(lambda: recorder.seen("MODIFIED", "later"), what="MODIFIED later")
        assert cache.get("ModelPull", "later")["spec"]["displayName"] == "Later"  # type: ignore[index]
        modified = next(e for e in recorder.events if e.type == "MODIFIED")
        assert modified.old is not None and modified.old["spec"]["displayName"] == ""

        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", "before-1")
        await eventually(lambda: recorder.seen("DELETED", "before-1"), what="DELETED before-1")
        assert names(cache) == {"before-2", "later"}
        assert recorder.types_for("later") == ["ADDED", "MODIFIED"]
        assert cache.staleness_seconds < 5
        await recorder.close()


async def test_cache_holds_the_jobs_behind_our_kinds(
    cache: ClusterCache, kube: KubeClient, namespace: str
) -> None:
    job = {
        "metadata": {"name": "pull-job", "labels": {"kubepilot.io/name": "x"}},
        "spec": {
            "suspend": True,  # no pod: only the Job object matters here
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            },
        },
    }
    await kube.request("POST", JOBS.path(namespace), body={"apiVersion": "batch/v1", "kind": "Job", **job})
    await eventually(lambda: cache.get("Job", "pull-job") is not None, what="the Job in the cache")
    assert [j["metadata"]["name"] for j in cache.list(JOBS, labels={"kubepilot.io/name": "x"})] == [
        "pull-job"
    ]
    assert cache.get("Job", "pull-job")["kind"] == "Job"  # type: ignore[index]
    assert cache.sizes()["Job"] == 1


async def test_informer_resumes_after_a_dropped_watch_without_missing_an_event(
    cache: ClusterCache, devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    informer = cache.informer(MODELPULLS)
    await watching(cache, kube_api, namespace, "marker")
    recorder = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    lists_before = informer.stats.lists
    watches_before = informer.stats.watches

    # No await from here to the end of the block: the informer cannot run, so these changes happen
    # while its stream is gone and it must catch up from the version it last saw.
    assert devcluster.drop_watches() >= 1
    api = outside(kube_api)
    for index in range(5):
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull(f"m{index}"))
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", "marker")

    await eventually(lambda: recorder.seen("DELETED", "marker"), what="the changes made while dropped")
    assert [e.name for e in recorder.events if e.type == "ADDED"] == [f"m{i}" for i in range(5)]
    assert names(cache) == {f"m{i}" for i in range(5)}
    assert informer.stats.watches > watches_before
    assert informer.stats.lists == lists_before  # resumed, not re-listed
    await recorder.close()


async def test_informer_relists_after_410_and_announces_what_it_missed(
    cache: ClusterCache, devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    informer = cache.informer(MODELPULLS)
    api = outside(kube_api)
    for name in ("keep", "change", "remove"):
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull(name))
    await watching(cache, kube_api, namespace, "marker")
    await eventually(lambda: names(cache) >= {"keep", "change", "remove"}, what="the first objects")
    recorder = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    lists_before = informer.stats.lists

    # Changes behind the informer's back, then the history they were in is forgotten: resuming
    # from the version the informer holds now gets an ERROR event with 410 Gone.
    devcluster.drop_watches()
    api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelpulls", "change", {"spec": {"displayName": "Changed"}}
    )
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", "remove")
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull("new"))
    devcluster.compact()

    await eventually(lambda: informer.stats.lists > lists_before, what="a re-list")
    await eventually(lambda: len(recorder.events) >= 3, what="the synthetic events")
    assert informer.stats.expired >= 1
    assert sorted((e.type, e.name) for e in recorder.events) == [
        ("ADDED", "new"),
        ("DELETED", "remove"),
        ("MODIFIED", "change"),
    ]
    assert names(cache) == {"keep", "change", "new", "marker"}
    assert cache.get("ModelPull", "change")["spec"]["displayName"] == "Changed"  # type: ignore[index]

    # And the watch carries on from the list's version afterwards.
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull("after"))
    await eventually(lambda: recorder.seen("ADDED", "after"), what="events after the re-list")
    await recorder.close()


async def test_informer_relists_when_the_watch_request_itself_is_refused_with_410(
    cache: ClusterCache, devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    informer = cache.informer(MODELPULLS)
    await watching(cache, kube_api, namespace, "marker")
    lists_before = informer.stats.lists
    devcluster.inject_fault("410", count=1, verb="watch", resource="modelpulls")
    devcluster.drop_watches()
    outside(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelpulls", model_pull("x")
    )
    await eventually(lambda: cache.get("ModelPull", "x") is not None, what="x after the 410")
    assert informer.stats.expired == 1
    assert informer.stats.lists == lists_before + 1


async def test_informer_backs_off_on_errors_and_recovers(
    kube: KubeClient, devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    # The first LIST fails four times (two connection resets, two 500s) before one succeeds.
    devcluster.inject_fault("reset", count=2, verb="list", resource="modelpulls")
    devcluster.inject_fault("500", count=2, verb="list", resource="modelpulls")
    outside(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelpulls", model_pull("a")
    )
    informer = Informer(kube, MODELPULLS, namespace=namespace, settings=FAST_WATCH)
    informer.start()
    try:
        await asyncio.wait_for(informer.wait_synced(), 10)
        assert informer.stats.errors == 4
        assert [o["metadata"]["name"] for o in informer.list()] == ["a"]
        devcluster.inject_fault("reset", count=3, verb="watch", resource="modelpulls")
        devcluster.drop_watches()
        outside(kube_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelpulls", model_pull("b")
        )
        await eventually(lambda: informer.get("b") is not None, what="b after the resets")
        assert informer.stats.errors >= 7
        assert informer.stats.lists == 1
    finally:
        await informer.stop()


async def test_staleness_counts_from_the_last_event_or_bookmark(cache: ClusterCache, store: CrStore) -> None:
    informer = cache.informer(MODELPULLS)
    await asyncio.sleep(0.3)
    assert informer.staleness_seconds >= 0.3
    await store.create(MODELPULLS, model_pull("fresh"))
    await eventually(lambda: informer.staleness_seconds < 0.3, what="staleness reset by the watch event")
    assert cache.staleness_seconds >= informer.staleness_seconds


async def test_bus_fed_by_the_informer_reaches_every_subscriber_and_a_slow_one_lags(
    cache: ClusterCache, store: CrStore
) -> None:
    fast = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    also_fast = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    slow = cache.bus.subscribe(kinds=["ModelPull"], queue_size=10)
    created = [f"m{index:03d}" for index in range(100)]
    for name in created:
        await store.create(MODELPULLS, model_pull(name))
    await asyncio.sleep(0.5)  # let the watch deliver its copies of the same versions
    for recorder in (fast, also_fast):
        assert [e.name for e in recorder.events] == created  # each version announced exactly once
        assert not any(isinstance(item, Lagged) for item in recorder.items)
    assert await anext(slow) == Lagged(90)
    tail = [await anext(slow) for _ in range(10)]
    assert [e.name for e in tail if isinstance(e, ResourceEvent)] == created[90:]
    slow.close()
    await fast.close()
    await also_fast.close()


async def test_periodic_resync_relists_without_announcing_unchanged_objects(
    kube: KubeClient, kube_api: Any, namespace: str
) -> None:
    outside(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelpulls", model_pull("a")
    )
    settings = FAST_WATCH.model_copy(update={"resyncSeconds": 1.0})
    informer = Informer(kube, MODELPULLS, namespace=namespace, settings=settings)
    seen: list[ResourceEvent] = []
    informer.add_sink(seen.append)
    informer.start()
    try:
        await asyncio.wait_for(informer.wait_synced(), 10)
        await eventually(lambda: informer.stats.lists >= 2, within=4, what="a periodic re-list")
        assert [(e.type, e.name) for e in seen] == [("ADDED", "a")]
    finally:
        await informer.stop()
