"""Every PATCH flavour over real HTTP: JSON patch, merge patch, strategic merge (and its refusals)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster

DEPLOYMENT = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "nginx:1",
                        "env": [{"name": "A", "value": "1"}],
                        "ports": [{"containerPort": 80}],
                    },
                    {"name": "side", "image": "busybox:1"},
                ]
            },
        },
    },
}


def _patch(devcluster: DevCluster, path: str, content_type: str, body: Any) -> httpx.Response:
    return httpx.patch(
        f"{devcluster.url}{path}", content=json.dumps(body), headers={"Content-Type": content_type}
    )


def test_strategic_merge_merges_containers_and_env_by_name(
    devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, DEPLOYMENT)
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "env": [{"name": "B", "value": "2"}],
                            "ports": [{"containerPort": 81}],
                        },
                        {"name": "side", "$patch": "delete"},
                        {"name": "new", "image": "redis:7"},
                    ]
                }
            }
        }
    }
    response = _patch(
        devcluster,
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        "application/strategic-merge-patch+json",
        patch,
    )
    assert response.status_code == 200, response.text
    containers = response.json()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "new"]
    assert containers[0]["image"] == "nginx:1"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert [p["containerPort"] for p in containers[0]["ports"]] == [80, 81]


def test_strategic_merge_merges_conditions_by_type(devcluster: DevCluster, namespace: str) -> None:
    # Namespace status: no controller writes it, so the two patches below are the only writers.
    url = f"/api/v1/namespaces/{namespace}/status"
    first = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "NamespaceDeletionDiscoveryFailure", "status": "True"},
            ]
        }
    }
    assert _patch(devcluster, url, "application/strategic-merge-patch+json", first).status_code == 200
    second = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    conditions = _patch(devcluster, url, "application/strategic-merge-patch+json", second).json()["status"][
        "conditions"
    ]
    by_type = {c["type"]: c["status"] for c in conditions}
    assert by_type == {"Ready": "True", "NamespaceDeletionDiscoveryFailure": "True"}


def test_merge_patch_replaces_lists_and_null_deletes(
    devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, DEPLOYMENT)
    patch = {
        "metadata": {"labels": {"app": None, "tier": "x"}},
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "a"}]}}},
    }
    response = _patch(
        devcluster,
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        "application/merge-patch+json",
        patch,
    )
    body = response.json()
    assert body["metadata"]["labels"] == {"tier": "x"}
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["only"]


def test_json_patch_operations_apply_in_order(devcluster: DevCluster, kube_api: Any, namespace: str) -> None:
    client.CoreV1Api(kube_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "c"}, "data": {"a": "1"}}
    )
    ops = [
        {"op": "add", "path": "/data/b", "value": "2"},
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "3"},
        {"op": "move", "from": "/data/b", "path": "/data/c"},
        {"op": "copy", "from": "/data/c", "path": "/data/d"},
        {"op": "remove", "path": "/data/d"},
    ]
    response = _patch(
        devcluster, f"/api/v1/namespaces/{namespace}/configmaps/c", "application/json-patch+json", ops
    )
    assert response.json()["data"] == {"a": "3", "c": "2"}
    failed = _patch(
        devcluster,
        f"/api/v1/namespaces/{namespace}/configmaps/c",
        "application/json-patch+json",
        [{"op": "test", "path": "/data/a", "value": "nope"}],
    )
    assert failed.status_code == 422


def test_python_client_patches_custom_objects_with_merge_patch(
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
            "metadata": {"name": "w"},
            "spec": {"size": "small", "tags": ["a", "b"]},
        },
    )
    patched = custom.patch_namespaced_custom_object(
        widget_crd, "v1", namespace, "widgets", "w", {"spec": {"tags": ["c"]}}
    )
    assert patched["spec"]["tags"] == ["c"]


def test_strategic_merge_on_a_custom_resource_is_415(
    devcluster: DevCluster, kube_api: Any, namespace: str, widget_crd: str
) -> None:
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        widget_crd,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{widget_crd}/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": "small"},
        },
    )
    response = _patch(
        devcluster,
        f"/apis/{widget_crd}/v1/namespaces/{namespace}/widgets/w",
        "application/strategic-merge-patch+json",
        {"spec": {"size": "large"}},
    )
    assert response.status_code == 415
    assert response.json()["reason"] == "UnsupportedMediaType"


@pytest.mark.parametrize(
    "content_type", ["application/apply-patch+yaml", "application/vnd.kubernetes.protobuf"]
)
def test_unsupported_patch_media_types_are_415(
    devcluster: DevCluster, kube_api: Any, namespace: str, content_type: str
) -> None:
    client.CoreV1Api(kube_api).create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    response = _patch(devcluster, f"/api/v1/namespaces/{namespace}/configmaps/c", content_type, {"data": {}})
    assert response.status_code == 415
    assert response.json()["kind"] == "Status"
