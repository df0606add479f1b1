"""Finalizers, garbage collection by ownerReferences (all three policies) and namespace termination."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _exists(read: Callable[[], Any]) -> bool:
    try:
        read()
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _owner_and_children(core: client.CoreV1Api, namespace: str, block: bool = False) -> str:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": block,
    }
    for name in ("child-a", "child-b"):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "ownerReferences": [reference]}}
        )
    return str(owner.metadata.uid)


def test_finalizers_hold_an_object_until_removed(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "held", "finalizers": ["example.io/x"]}}
    )
    core.delete_namespaced_config_map("held", namespace)
    current = core.read_namespaced_config_map("held", namespace)
    assert current.metadata.deletion_timestamp is not None
    assert current.metadata.generation is None  # ConfigMaps have no generation on a real server
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    assert not _exists(lambda: core.read_namespaced_config_map("held", namespace))


def test_background_deletion_collects_dependents(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    _owner_and_children(core, namespace)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    _eventually(lambda: not _exists(lambda: core.read_namespaced_config_map("child-a", namespace)))
    assert not _exists(lambda: core.read_namespaced_config_map("child-b", namespace))


def test_foreground_deletion_waits_for_blocking_dependents(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    _owner_and_children(core, namespace, block=True)
    core.patch_namespaced_config_map("child-a", namespace, {"metadata": {"finalizers": ["example.io/hold"]}})
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    assert "foregroundDeletion" in core.read_namespaced_config_map("owner", namespace).metadata.finalizers
    assert not _exists(lambda: core.read_namespaced_config_map("child-b", namespace))
    owner = core.read_namespaced_config_map("owner", namespace)
    assert owner.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("child-a", namespace, {"metadata": {"finalizers": None}})
    _eventually(lambda: not _exists(lambda: core.read_namespaced_config_map("owner", namespace)))


def test_orphan_deletion_keeps_dependents_without_the_reference(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    _owner_and_children(core, namespace)
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    child = core.read_namespaced_config_map("child-a", namespace)
    assert child.metadata.owner_references is None


def test_dependents_with_another_live_owner_survive(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "o1"}})
    second = core.create_namespaced_config_map(namespace, {"metadata": {"name": "o2"}})
    references = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}
        for o in (first, second)
    ]
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "shared", "ownerReferences": references}}
    )
    core.delete_namespaced_config_map("o1", namespace)
    remaining = core.read_namespaced_config_map("shared", namespace).metadata.owner_references
    assert [r.name for r in remaining] == ["o2"]


def test_custom_resource_children_are_collected_with_their_owner(
    kube_api: Any, namespace: str, widget_crd: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    owner = custom.create_namespaced_custom_object(
        widget_crd,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": "parent"},
            "spec": {"size": "small"},
        },
    )
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {
                        "apiVersion": f"{widget_crd}/v1",
                        "kind": "Widget",
                        "name": "parent",
                        "uid": owner["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            }
        },
    )
    custom.delete_namespaced_custom_object(widget_crd, "v1", namespace, "widgets", "parent")
    _eventually(lambda: not _exists(lambda: core.read_namespaced_secret("owned", namespace)))


def test_delete_preconditions_are_enforced(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "p"}})
    with pytest.raises(client.ApiException) as raised:
        core.delete_namespaced_config_map("p", namespace, body={"preconditions": {"uid": "not-the-uid"}})
    assert raised.value.status == 409


def test_delete_collection_by_label(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    for name, labels in (("a", {"gone": "yes"}), ("b", {"gone": "yes"}), ("c", {})):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="gone=yes")
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["c"]


def test_namespace_deletion_terminates_then_removes_everything(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "plain"}})
    core.create_namespaced_config_map(
        "doomed", {"metadata": {"name": "held", "finalizers": ["example.io/x"]}}
    )
    core.delete_namespace("doomed")
    namespace = core.read_namespace("doomed")
    assert namespace.status.phase == "Terminating"
    assert not _exists(lambda: core.read_namespaced_config_map("plain", "doomed"))
    with pytest.raises(client.ApiException) as raised:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert raised.value.status == 403
    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
    _eventually(lambda: not _exists(lambda: core.read_namespace("doomed")))


def test_deletion_with_finalizers_bumps_the_generation_of_custom_resources(
    kube_api: Any, namespace: str, widget_crd: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(
        widget_crd,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": "held", "finalizers": ["example.io/x"]},
            "spec": {"size": "small"},
        },
    )
    custom.delete_namespaced_custom_object(widget_crd, "v1", namespace, "widgets", "held")
    held = custom.get_namespaced_custom_object(widget_crd, "v1", namespace, "widgets", "held")
    assert held["metadata"]["generation"] == 2
    assert held["metadata"]["deletionTimestamp"]
    custom.patch_namespaced_custom_object(
        widget_crd, "v1", namespace, "widgets", "held", {"metadata": {"finalizers": None}}
    )
    assert not _exists(
        lambda: custom.get_namespaced_custom_object(widget_crd, "v1", namespace, "widgets", "held")
    )
