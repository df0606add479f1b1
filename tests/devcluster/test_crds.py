"""CustomResourceDefinitions: serving, structural-schema validation, defaults, pruning, CEL rules."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster

GROUP, VERSION, PLURAL = "example.kubepilot.io", "v1", "widgets"


def _create(kube_api: Any, namespace: str, spec: dict[str, Any], name: str = "w") -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def _rejection(kube_api: Any, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(client.ApiException) as raised:
        _create(kube_api, namespace, spec)
    body: dict[str, Any] = json.loads(raised.value.body)
    assert raised.value.status == body["code"]
    return body


def test_a_new_crd_is_established_and_discoverable(
    devcluster: DevCluster, kube_api: Any, widget_crd: str
) -> None:
    crd = client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(f"widgets.{GROUP}")
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    resources = httpx.get(f"{devcluster.url}/apis/{GROUP}/{VERSION}").json()["resources"]
    widgets = next(r for r in resources if r["name"] == "widgets")
    assert widgets["shortNames"] == ["wd"]
    assert widgets["categories"] == ["kubepilot"]
    assert widgets["namespaced"] is True
    assert {r["name"] for r in resources} == {"widgets", "widgets/status", "widgets/scale"}
    groups = httpx.get(f"{devcluster.url}/apis").json()["groups"]
    assert GROUP in {g["name"] for g in groups}


def test_defaults_are_applied(kube_api: Any, namespace: str, widget_crd: str) -> None:
    assert _create(kube_api, namespace, {"size": "small"})["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ({"size": "huge"}, "spec.size", "FieldValueNotSupported"),
        ({}, "spec.size", "FieldValueRequired"),
        ({"size": "small", "replicas": -1}, "spec.replicas", "FieldValueInvalid"),
        ({"size": "small", "replicas": "two"}, "spec.replicas", "FieldValueTypeInvalid"),
        ({"size": "small", "label": "waytoolongalabel"}, "spec.label", "FieldValueTooLong"),
        ({"size": "small", "label": "UPPER"}, "spec.label", "FieldValueInvalid"),
        ({"size": "small", "tags": ["a", "b", "c", "d"]}, "spec.tags", "FieldValueTooMany"),
        ({"size": "small", "tags": []}, "spec.tags", "FieldValueInvalid"),
        ({"size": "small", "deadline": "tomorrow"}, "spec.deadline", "FieldValueInvalid"),
    ],
)
def test_schema_violations_are_422_with_causes(
    kube_api: Any, namespace: str, widget_crd: str, spec: dict[str, Any], field: str, reason: str
) -> None:
    body = _rejection(kube_api, namespace, spec)
    assert body["code"] == 422
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "Widget"
    assert {"field": field, "reason": reason} in [
        {"field": c["field"], "reason": c["reason"]} for c in body["details"]["causes"]
    ]


def test_a_valid_date_time_is_accepted(kube_api: Any, namespace: str, widget_crd: str) -> None:
    created = _create(kube_api, namespace, {"size": "small", "deadline": "2030-01-02T03:04:05Z"})
    assert created["spec"]["deadline"] == "2030-01-02T03:04:05Z"


def test_cel_rule_failure_reports_the_rule_message(kube_api: Any, namespace: str, widget_crd: str) -> None:
    body = _rejection(kube_api, namespace, {"size": "small", "replicas": 11})
    assert body["code"] == 422
    assert "replicas must be at most 10" in body["message"]
    assert body["details"]["causes"][0]["field"] == "spec"


def test_transition_rules_see_the_old_object_on_update_only(
    kube_api: Any, namespace: str, widget_crd: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    _create(kube_api, namespace, {"size": "large"})
    with pytest.raises(client.ApiException) as raised:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": "small"}}
        )
    assert raised.value.status == 422
    assert "a large widget cannot shrink" in json.loads(raised.value.body)["message"]
    _create(kube_api, namespace, {"size": "small"}, name="grows")
    grown = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "grows", {"spec": {"size": "large"}}
    )
    assert grown["spec"]["size"] == "large"


def test_unknown_fields_are_pruned_but_preserved_where_declared(
    kube_api: Any, namespace: str, widget_crd: str
) -> None:
    created = _create(
        kube_api, namespace, {"size": "small", "bogus": 1, "extra": {"anything": {"goes": True}}}
    )
    assert "bogus" not in created["spec"]
    assert created["spec"]["extra"] == {"anything": {"goes": True}}


def test_strict_field_validation_rejects_unknown_fields(
    devcluster: DevCluster, namespace: str, widget_crd: str
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": "s"},
        "spec": {"size": "small", "bogus": 1, "other": 2},
    }
    url = f"{devcluster.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/widgets"
    strict = httpx.post(url, params={"fieldValidation": "Strict"}, json=body)
    assert strict.status_code == 400
    assert strict.json()["message"].endswith(
        'strict decoding error: unknown field "spec.bogus", unknown field "spec.other"'
    )
    warned = httpx.post(url, params={"fieldValidation": "Warn"}, json=body)
    assert warned.status_code == 201
    assert warned.headers.get_list("Warning") == [
        '299 - "unknown field \\"spec.bogus\\""',
        '299 - "unknown field \\"spec.other\\""',
    ]


def test_strict_field_validation_covers_built_in_kinds(devcluster: DevCluster, namespace: str) -> None:
    response = httpx.post(
        f"{devcluster.url}/api/v1/namespaces/{namespace}/configmaps",
        params={"fieldValidation": "Strict"},
        json={"metadata": {"name": "c", "bogus": 1}, "data": {}, "dta": {}},
    )
    assert response.status_code == 400
    assert 'unknown field "dta"' in response.json()["message"]
    assert 'unknown field "metadata.bogus"' in response.json()["message"]


def test_deleting_a_crd_stops_serving_it_and_removes_its_objects(
    devcluster: DevCluster, kube_api: Any
) -> None:
    extensions = client.ApiextensionsV1Api(kube_api)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.tmp.kubepilot.io"},
        "spec": {
            "group": "tmp.kubepilot.io",
            "scope": "Cluster",
            "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    extensions.create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(kube_api)
    custom.create_cluster_custom_object(
        "tmp.kubepilot.io",
        "v1",
        "gizmos",
        {"apiVersion": "tmp.kubepilot.io/v1", "kind": "Gizmo", "metadata": {"name": "g"}, "anything": [1]},
    )
    assert custom.get_cluster_custom_object("tmp.kubepilot.io", "v1", "gizmos", "g")["anything"] == [1]
    extensions.delete_custom_resource_definition("gizmos.tmp.kubepilot.io")
    assert httpx.get(f"{devcluster.url}/apis/tmp.kubepilot.io/v1/gizmos").status_code == 404
    extensions.create_custom_resource_definition(crd)
    assert custom.list_cluster_custom_object("tmp.kubepilot.io", "v1", "gizmos")["items"] == []


def test_invalid_crd_is_rejected(kube_api: Any) -> None:
    with pytest.raises(client.ApiException) as raised:
        client.ApiextensionsV1Api(kube_api).create_custom_resource_definition(
            {
                "metadata": {"name": "wrong.example.io"},
                "spec": {
                    "group": "example.io",
                    "scope": "Namespaced",
                    "names": {"plural": "things", "kind": "Thing"},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {"openAPIV3Schema": {"type": "object"}},
                        }
                    ],
                },
            }
        )
    assert raised.value.status == 422
    assert json.loads(raised.value.body)["details"]["causes"][0]["field"] == "metadata.name"


def test_nulls_of_non_nullable_fields_are_dropped_then_defaulted(
    kube_api: Any, namespace: str, widget_crd: str
) -> None:
    created = _create(kube_api, namespace, {"size": "small", "replicas": None, "label": None})
    assert created["spec"] == {"size": "small", "replicas": 1}


def test_rules_added_later_ratchet_unchanged_values(kube_api: Any, namespace: str) -> None:
    """Validation ratcheting (KEP-4008): a value an update leaves alone is not judged again."""
    extensions = client.ApiextensionsV1Api(kube_api)
    group, plural = "ratchet.kubepilot.io", "gadgets"

    def crd(rules: list[dict[str, str]]) -> dict[str, Any]:
        spec_schema: dict[str, Any] = {
            "type": "object",
            "properties": {"size": {"type": "integer"}, "note": {"type": "string"}},
        }
        if rules:
            spec_schema["x-kubernetes-validations"] = rules
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": plural, "singular": "gadget", "kind": "Gadget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": spec_schema,
                                    "status": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            }
                        },
                    }
                ],
            },
        }

    extensions.create_custom_resource_definition(crd([]))
    try:
        custom = client.CustomObjectsApi(kube_api)
        for _ in range(50):
            try:
                custom.list_namespaced_custom_object(group, "v1", namespace, plural)
                break
            except client.ApiException:
                time.sleep(0.1)
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"size": 50},
        }
        custom.create_namespaced_custom_object(group, "v1", namespace, plural, body)
        current = extensions.read_custom_resource_definition(f"{plural}.{group}")
        updated = crd([{"rule": "self.size <= 10", "message": "size must be at most 10"}])
        updated["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(f"{plural}.{group}", updated)

        labelled = custom.patch_namespaced_custom_object(
            group, "v1", namespace, plural, "g", {"metadata": {"labels": {"seen": "yes"}}}
        )
        assert labelled["metadata"]["labels"] == {"seen": "yes"}
        custom.patch_namespaced_custom_object_status(
            group, "v1", namespace, plural, "g", {"status": {"ok": True}}
        )
        with pytest.raises(client.ApiException) as raised:
            custom.patch_namespaced_custom_object(
                group, "v1", namespace, plural, "g", {"spec": {"note": "x"}}
            )
        assert raised.value.status == 422
        assert "size must be at most 10" in json.loads(raised.value.body)["message"]
    finally:
        extensions.delete_custom_resource_definition(f"{plural}.{group}")


def _post_raw(devcluster: DevCluster, namespace: str, raw: str, content_type: str) -> httpx.Response:
    url = f"{devcluster.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return httpx.post(url, content=raw.encode(), headers={"Content-Type": content_type}, timeout=10)


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
@pytest.mark.parametrize("number", [str(2**63), str(-(2**63) - 1), str(2**70)])
def test_an_integer_beyond_int64_is_a_422_as_the_api_servers_decoder_reads_it(
    devcluster: DevCluster, namespace: str, widget_crd: str, number: str, content_type: str
) -> None:
    """The API server decodes JSON integers as int64, else float64, which an integer field refuses.
    (It used to overflow the CEL adapter: a 500.)"""
    raw = (
        f'{{"apiVersion": "{GROUP}/{VERSION}", "kind": "Widget", "metadata": {{"name": "big"}}, '
        f'"spec": {{"size": "small", "replicas": {number}}}}}'
    )
    answer = _post_raw(devcluster, namespace, raw, content_type)
    assert answer.status_code == 422, answer.text
    assert "spec.replicas" in answer.json()["message"] and "integer" in answer.json()["message"]


def test_the_largest_int64_is_an_integer(devcluster: DevCluster, namespace: str, widget_crd: str) -> None:
    """Not refused as a number: a CEL rule then judges it (replicas at most 10), a 422 of its own."""
    raw = (
        f'{{"apiVersion": "{GROUP}/{VERSION}", "kind": "Widget", "metadata": {{"name": "max"}}, '
        f'"spec": {{"size": "small", "replicas": {2**63 - 1}}}}}'
    )
    answer = _post_raw(devcluster, namespace, raw, "application/json")
    assert answer.status_code == 422 and "replicas must be at most 10" in answer.json()["message"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(
    devcluster: DevCluster, namespace: str, widget_crd: str, literal: str
) -> None:
    raw = (
        f'{{"apiVersion": "{GROUP}/{VERSION}", "kind": "Widget", "metadata": {{"name": "n"}}, '
        f'"spec": {{"x": {literal}}}}}'
    )
    answer = _post_raw(devcluster, namespace, raw, "application/json")
    assert answer.status_code == 400 and answer.json()["reason"] == "BadRequest"


def test_a_patch_with_an_integer_beyond_int64_is_a_422(
    devcluster: DevCluster, kube_api: Any, namespace: str, widget_crd: str
) -> None:
    _create(kube_api, namespace, {"size": "small"}, name="patched")
    url = f"{devcluster.url}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/patched"
    answer = httpx.patch(
        url,
        content=f'{{"spec": {{"replicas": {2**64}}}}}'.encode(),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    assert answer.status_code == 422, answer.text
