"""The informer's store on its own: version ordering, relist diffs, tombstones, merge patches, backoff."""

from __future__ import annotations

from typing import Any

from kubepilot_gateway.kube.backoff import Backoff
from kubepilot_gateway.kube.crstore import merge_patch_for
from kubepilot_gateway.kube.store import ObjectStore

JsonObject = dict[str, Any]


def obj(name: str, version: str, namespace: str = "ns", **spec: Any) -> JsonObject:
    return {
        "kind": "ModelPull",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
        "spec": spec,
    }


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = ObjectStore("ModelPull")
    assert store.upsert(obj("a", "10", step=2)) is not None
    assert store.upsert(obj("a", "9", step=1)) is None
    assert store.get("ns", "a") == obj("a", "10", step=2)


def test_the_same_version_is_announced_once() -> None:
    store = ObjectStore("ModelPull")
    first = store.upsert(obj("a", "5"))
    assert first is not None and first.type == "ADDED"
    assert store.upsert(obj("a", "5")) is None
    modified = store.upsert(obj("a", "6"))
    assert modified is not None and modified.type == "MODIFIED"
    assert modified.old == obj("a", "5")


def test_integer_versions_compare_numerically_not_as_text() -> None:
    store = ObjectStore("ModelPull")
    store.upsert(obj("a", "9"))
    assert store.upsert(obj("a", "10")) is not None


def test_opaque_versions_let_the_newest_arrival_win() -> None:
    store = ObjectStore("ModelPull")
    store.upsert(obj("a", "abc"))
    event = store.upsert(obj("a", "xyz"))
    assert event is not None and store.get("ns", "a") == obj("a", "xyz")


def test_relist_announces_what_changed_and_keeps_writes_newer_than_the_list() -> None:
    store = ObjectStore("ModelPull")
    for name in ("gone", "same", "changed"):
        store.upsert(obj(name, "3"))
    store.upsert(obj("written-later", "20"))
    events = store.replace([obj("same", "3"), obj("changed", "7"), obj("new", "8")], list_version="10")
    assert sorted((e.type, e.name) for e in events) == [
        ("ADDED", "new"),
        ("DELETED", "gone"),
        ("MODIFIED", "changed"),
    ]
    assert store.get("ns", "written-later") is not None
    assert [o["metadata"]["name"] for o in store.list()] == ["changed", "new", "same", "written-later"]


def test_a_deleted_object_does_not_return_on_a_lagging_event() -> None:
    store = ObjectStore("ModelPull")
    store.upsert(obj("a", "5"))
    gone = store.forget("ns", "a", "6")
    assert gone is not None and gone.type == "DELETED"
    assert store.upsert(obj("a", "5")) is None  # the watch catching up with an older version
    assert store.remove(obj("a", "6")) is None  # the watch's own DELETED: already announced
    recreated = store.upsert(obj("a", "9"))
    assert recreated is not None and recreated.type == "ADDED"


def test_a_deleted_event_older_than_a_recreation_is_ignored() -> None:
    store = ObjectStore("ModelPull")
    store.upsert(obj("a", "12"))
    assert store.remove(obj("a", "11")) is None
    assert store.get("ns", "a") is not None


def test_list_filters_by_namespace_and_labels() -> None:
    store = ObjectStore("Pod")
    labelled = obj("p1", "1")
    labelled["metadata"]["labels"] = {"app": "x", "tier": "a"}
    store.upsert(labelled)
    store.upsert(obj("p2", "2"))
    store.upsert(obj("p3", "3", namespace="other"))
    assert [o["metadata"]["name"] for o in store.list("ns")] == ["p1", "p2"]
    assert store.list(labels={"app": "x"}) == [labelled]
    assert store.list(labels={"app": "y"}) == []


def test_merge_patch_sets_changes_and_nulls_removals() -> None:
    old = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"items": [1, 2], "keep": True}}
    new = {"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"items": [1, 2, 3], "keep": True}}
    assert merge_patch_for(old, new) == {
        "metadata": {"labels": {"b": None, "c": "3"}},
        "spec": {"items": [1, 2, 3]},
    }
    assert merge_patch_for(old, old) == {}


def test_backoff_doubles_up_to_its_ceiling_with_jitter_below_it() -> None:
    exact = Backoff(0.1, 1.0, jitter=0.0)
    assert [round(exact.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    exact.reset()
    assert exact.next() == 0.1
    jittered = Backoff(0.1, 1.0, jitter=0.5, rng=lambda: 1.0)
    assert jittered.next() == 0.05
    for _ in range(2000):  # no overflow however long the server stays away
        assert 0 < jittered.next() <= 1.0
