"""List and watch through the Python client and raw HTTP: selectors, pagination, resume, 410 Gone."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from kubernetes import client, watch

from kubepilot_devcluster.testing import DevCluster


def _labelled(core: client.CoreV1Api, namespace: str) -> None:
    for name, labels in [
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db", "env": "prod"}),
        ("c", {"tier": "web"}),
        ("d", {}),
    ]:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "c"]),
        ("tier==web,env=prod", ["a"]),
        ("tier!=web", ["b", "d"]),
        ("tier in (web, db)", ["a", "b", "c"]),
        ("tier notin (web)", ["b", "d"]),
        ("env", ["a", "b"]),
        ("!env", ["c", "d"]),
    ],
)
def test_label_selectors(kube_api: Any, namespace: str, selector: str, expected: list[str]) -> None:
    core = client.CoreV1Api(kube_api)
    _labelled(core, namespace)
    found = core.list_namespaced_config_map(namespace, label_selector=selector)
    assert [item.metadata.name for item in found.items] == expected


def test_field_selectors_on_pods_and_events(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    for name in ("p1", "p2"):
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "x"}], "nodeSelector": {"nowhere": "true"}},
            },
        )
    assert [
        p.metadata.name for p in core.list_namespaced_pod(namespace, field_selector="metadata.name=p2").items
    ] == ["p2"]
    assert len(core.list_namespaced_pod(namespace, field_selector="status.phase=Pending").items) == 2
    assert core.list_namespaced_pod(namespace, field_selector="status.phase!=Pending").items == []
    assert core.list_namespaced_pod(namespace, field_selector="spec.nodeName=elsewhere").items == []
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "e1"},
            "reason": "Test",
            "message": "m",
            "involvedObject": {"kind": "Pod", "name": "p1", "namespace": namespace},
        },
    )
    events = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=p1,involvedObject.kind=Pod,reason=Test"
    )
    assert [e.metadata.name for e in events.items] == ["e1"]


def test_unsupported_field_selector_is_400(devcluster: DevCluster, namespace: str) -> None:
    response = httpx.get(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps", params={"fieldSelector": "data.x=1"}
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "BadRequest"


def test_limit_and_continue_page_through_everything(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    for index in range(7):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"cm-{index}"}})
    first = core.list_namespaced_config_map(namespace, limit=3)
    assert first.metadata.remaining_item_count == 4
    names = [item.metadata.name for item in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names.extend(item.metadata.name for item in page.items)
        token = page.metadata._continue
    assert names == [f"cm-{index}" for index in range(7)]


def test_list_carries_a_resource_version(kube_api: Any, namespace: str) -> None:
    listed = client.CoreV1Api(kube_api).list_namespaced_config_map(namespace)
    assert int(listed.metadata.resource_version) > 0


def test_watch_resumes_from_a_resource_version(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}, "data": {"v": "1"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"v": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=1
    ):
        seen.append((event["type"], event["object"].data))
    assert seen == [("ADDED", {"v": "1"}), ("MODIFIED", {"v": "2"}), ("DELETED", {"v": "2"})]


def test_watch_streams_live_events(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    stream = watch.Watch()
    seen: list[str] = []

    def create_later() -> None:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "live"}})

    timer = threading.Timer(0.3, create_later)
    timer.start()
    try:
        for event in stream.stream(core.list_namespaced_config_map, namespace, timeout_seconds=5):
            seen.append(f"{event['type']} {event['object'].metadata.name}")
            if event["object"].metadata.name == "live":
                stream.stop()
    finally:
        timer.cancel()
    assert "ADDED live" in seen


def test_watch_from_a_compacted_version_gets_410_gone(
    devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    old = core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}}).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "y"}})
    devcluster.compact()
    response = httpx.get(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps",
        params={"watch": "1", "resourceVersion": old},
    )
    event = json.loads(response.text.splitlines()[0])
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    with pytest.raises(client.ApiException) as raised:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, resource_version=old, timeout_seconds=1
        ):
            pass
    assert raised.value.status == 410


def test_send_initial_events_ends_with_a_bookmark(
    devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    client.CoreV1Api(kube_api).create_namespaced_config_map(namespace, {"metadata": {"name": "i"}})
    response = httpx.get(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps",
        params={
            "watch": "true",
            "sendInitialEvents": "true",
            "allowWatchBookmarks": "true",
            "resourceVersionMatch": "NotOlderThan",
            "timeoutSeconds": "1",
        },
    )
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_legacy_watch_path_streams_events(devcluster: DevCluster, kube_api: Any, namespace: str) -> None:
    client.CoreV1Api(kube_api).create_namespaced_config_map(namespace, {"metadata": {"name": "legacy"}})
    response = httpx.get(
        f"{devcluster.url}/api/v1/watch/namespaces/{namespace}/configmaps", params={"timeoutSeconds": "1"}
    )
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "legacy")]


def test_table_output_has_columns_and_rows(devcluster: DevCluster, kube_api: Any, namespace: str) -> None:
    client.CoreV1Api(kube_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "t"}, "data": {"a": "1"}}
    )
    response = httpx.get(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    table = response.json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["t", 1]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_filtered_watch_reports_objects_entering_and_leaving_the_selection(
    devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "m", "labels": {"team": "a"}}})
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"team": "b"}}})
    core.patch_namespaced_config_map("m", namespace, {"metadata": {"labels": {"team": "a"}}})
    core.patch_namespaced_config_map("m", namespace, {"data": {"x": "1"}})
    response = httpx.get(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps",
        params={"watch": "1", "resourceVersion": start, "labelSelector": "team=a", "timeoutSeconds": "1"},
    )
    assert [json.loads(line)["type"] for line in response.text.splitlines()] == [
        "ADDED",
        "DELETED",
        "ADDED",
        "MODIFIED",
    ]


def test_continue_pages_show_the_list_as_of_the_first_page(
    devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    for name in ("a", "b", "c", "d"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"v": "1"}})
    first = core.list_namespaced_config_map(namespace, limit=2)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "e"}})
    core.delete_namespaced_config_map("d", namespace)
    core.patch_namespaced_config_map("c", namespace, {"data": {"v": "2"}})
    rest = core.list_namespaced_config_map(namespace, limit=10, _continue=first.metadata._continue)
    assert [(c.metadata.name, c.data["v"]) for c in rest.items] == [("c", "1"), ("d", "1")]
    devcluster.compact()
    with pytest.raises(client.ApiException) as raised:
        core.list_namespaced_config_map(namespace, limit=10, _continue=first.metadata._continue)
    assert raised.value.status == 410
    assert json.loads(raised.value.body)["reason"] == "Expired"
