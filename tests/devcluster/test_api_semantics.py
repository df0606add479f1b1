"""Object semantics through the official kubernetes Python client: CRUD, conflicts, generation, status."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster

WIDGETS = ("example.kubepilot.io", "v1", "widgets")


def _widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.kubepilot.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": "small", **spec},
    }


def test_create_returns_the_stored_object_with_server_fields(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c1"}, "data": {"a": "1"}})
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert int(created.metadata.resource_version) > 0
    assert core.read_namespaced_config_map("c1", namespace).data == {"a": "1"}


def test_resource_versions_increase_cluster_wide(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    second = core.create_namespaced_secret(namespace, {"metadata": {"name": "b"}})
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)


def test_create_twice_is_409_already_exists_with_a_real_status_body(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    with pytest.raises(client.ApiException) as raised:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "dup"}})
    body = json.loads(raised.value.body)
    assert raised.value.status == 409
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "dup" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "dup", "kind": "configmaps"},
        "code": 409,
    }


def test_missing_object_is_404_not_found(kube_api: Any, namespace: str) -> None:
    with pytest.raises(client.ApiException) as raised:
        client.AppsV1Api(kube_api).read_namespaced_deployment("nope", namespace)
    body = json.loads(raised.value.body)
    assert raised.value.status == 404
    assert body["reason"] == "NotFound"
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    assert body["message"] == 'deployments.apps "nope" not found'


def test_update_with_a_stale_resource_version_is_409_conflict(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    stale = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"v": "1"}})
    fresh = core.read_namespaced_config_map("c", namespace)
    fresh.data = {"v": "2"}
    core.replace_namespaced_config_map("c", namespace, fresh)
    stale.data = {"v": "3"}
    with pytest.raises(client.ApiException) as raised:
        core.replace_namespaced_config_map("c", namespace, stale)
    assert raised.value.status == 409
    assert json.loads(raised.value.body)["reason"] == "Conflict"
    with pytest.raises(client.ApiException) as patched:
        core.patch_namespaced_config_map(
            "c",
            namespace,
            {"metadata": {"resourceVersion": stale.metadata.resource_version}, "data": {"v": "4"}},
        )
    assert patched.value.status == 409
    assert core.read_namespaced_config_map("c", namespace).data == {"v": "2"}


def test_generate_name_makes_a_unique_name(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    names = {
        core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "gen-"}}).metadata.name
        for _ in range(3)
    }
    assert len(names) == 3
    assert all(name.startswith("gen-") and len(name) == len("gen-") + 5 for name in names)


def test_invalid_names_are_422_with_causes(kube_api: Any, namespace: str) -> None:
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(kube_api).create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name"}})
    body = json.loads(raised.value.body)
    assert raised.value.status == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_generation_moves_with_the_spec_only(kube_api: Any, namespace: str, widget_crd: str) -> None:
    custom = client.CustomObjectsApi(kube_api)
    created = custom.create_namespaced_custom_object(*WIDGETS[:2], namespace, WIDGETS[2], _widget("g"))
    assert created["metadata"]["generation"] == 1
    labelled = custom.patch_namespaced_custom_object(
        *WIDGETS[:2], namespace, WIDGETS[2], "g", {"metadata": {"labels": {"x": "y"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    status = custom.patch_namespaced_custom_object_status(
        *WIDGETS[:2], namespace, WIDGETS[2], "g", {"status": {"phase": "Ready"}}
    )
    assert status["metadata"]["generation"] == 1
    resized = custom.patch_namespaced_custom_object(
        *WIDGETS[:2], namespace, WIDGETS[2], "g", {"spec": {"size": "medium"}}
    )
    assert resized["metadata"]["generation"] == 2


def test_status_subresource_is_separate_from_the_main_resource(
    kube_api: Any, namespace: str, widget_crd: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    created = custom.create_namespaced_custom_object(
        *WIDGETS[:2], namespace, WIDGETS[2], {**_widget("s"), "status": {"phase": "Ignored"}}
    )
    assert "status" not in created
    custom.patch_namespaced_custom_object(
        *WIDGETS[:2],
        namespace,
        WIDGETS[2],
        "s",
        {"spec": {"size": "large"}, "status": {"phase": "AlsoIgnored"}},
    )
    after_status = custom.patch_namespaced_custom_object_status(
        *WIDGETS[:2], namespace, WIDGETS[2], "s", {"spec": {"size": "medium"}, "status": {"phase": "Ready"}}
    )
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["spec"]["size"] == "large"


def test_no_op_writes_keep_the_resource_version(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    patched = core.patch_namespaced_config_map("same", namespace, {"data": {"a": "1"}})
    assert patched.metadata.resource_version == created.metadata.resource_version


def test_dry_run_validates_and_stores_nothing(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    answered = core.create_namespaced_config_map(namespace, {"metadata": {"name": "dry"}}, dry_run="All")
    assert answered.metadata.name == "dry"
    with pytest.raises(client.ApiException) as raised:
        core.read_namespaced_config_map("dry", namespace)
    assert raised.value.status == 404


def test_secret_string_data_is_folded_into_base64_data(kube_api: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"token": "abc"}})
    secret = core.read_namespaced_secret("s", namespace)
    assert secret.data == {"token": base64.b64encode(b"abc").decode()}
    assert secret.string_data is None
    assert secret.type == "Opaque"


def test_namespaces_get_a_default_service_account(kube_api: Any, namespace: str) -> None:
    accounts = client.CoreV1Api(kube_api).list_namespaced_service_account(namespace)
    assert [sa.metadata.name for sa in accounts.items] == ["default"]


def test_creating_in_a_missing_namespace_is_404(kube_api: Any) -> None:
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(kube_api).create_namespaced_config_map("does-not-exist", {"metadata": {"name": "x"}})
    assert raised.value.status == 404
    assert json.loads(raised.value.body)["message"] == 'namespaces "does-not-exist" not found'


def test_job_gets_a_generated_selector_and_defaults(kube_api: Any, namespace: str) -> None:
    job = client.BatchV1Api(kube_api).create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}
                }
            },
        },
    )
    uid = job.metadata.uid
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert job.spec.template.metadata.labels["job-name"] == "j"
    assert job.spec.backoff_limit == 6


def test_pod_with_no_containers_is_invalid(kube_api: Any, namespace: str) -> None:
    with pytest.raises(client.ApiException) as raised:
        client.CoreV1Api(kube_api).create_namespaced_pod(
            namespace, {"metadata": {"name": "p"}, "spec": {"containers": []}}
        )
    assert raised.value.status == 422
    assert json.loads(raised.value.body)["details"]["causes"][0]["field"] == "spec.containers"


def test_scale_subresource_reads_and_writes_replicas(kube_api: Any, namespace: str, widget_crd: str) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object(*WIDGETS[:2], namespace, WIDGETS[2], _widget("sc", replicas=2))
    scale = custom.get_namespaced_custom_object_scale(*WIDGETS[:2], namespace, WIDGETS[2], "sc")
    assert scale["spec"]["replicas"] == 2
    custom.patch_namespaced_custom_object_scale(
        *WIDGETS[:2], namespace, WIDGETS[2], "sc", {"spec": {"replicas": 5}}
    )
    assert (
        custom.get_namespaced_custom_object(*WIDGETS[:2], namespace, WIDGETS[2], "sc")["spec"]["replicas"]
        == 5
    )


def test_values_of_the_wrong_json_type_are_400_like_go_decoding(
    devcluster: DevCluster, namespace: str
) -> None:
    response = httpx.post(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps",
        json={"metadata": {"name": "typed"}, "data": {"a": 1}},
    )
    assert response.status_code == 400
    assert "cannot unmarshal number into Go struct field data.a of type string" in response.json()["message"]
    fine = httpx.post(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/services",
        json={"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}},
    )
    assert fine.status_code == 201, fine.text
