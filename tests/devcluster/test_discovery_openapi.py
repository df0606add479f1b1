"""Discovery and OpenAPI documents, and kubepilot's own generated CRDs served through them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster
from tests.devcluster.conftest import Kubectl

REPO_CRDS = sorted((Path(__file__).resolve().parents[2] / "crds").glob("kubepilot.io_*.yaml"))

MODEL_PULL = """
apiVersion: kubepilot.io/v1alpha1
kind: ModelPull
metadata:
  name: sdxl
spec:
  source:
    type: HuggingFace
    huggingFace: {repo: stabilityai/sdxl-turbo}
  destination: {modelType: checkpoints}
"""


def test_version_and_core_discovery(devcluster: DevCluster) -> None:
    assert httpx.get(f"{devcluster.url}/version").json()["major"] == "1"
    assert httpx.get(f"{devcluster.url}/api").json()["versions"] == ["v1"]
    core = httpx.get(f"{devcluster.url}/api/v1").json()
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods == {
        "name": "pods",
        "singularName": "pod",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        "storageVersionHash": pods["storageVersionHash"],
        "shortNames": ["po"],
        "categories": ["all"],
    }
    subresources = {r["name"] for r in core["resources"] if "/" in r["name"]}
    assert {"pods/log", "pods/status", "pods/binding", "namespaces/status"} <= subresources


def test_group_discovery_lists_every_built_in_group(devcluster: DevCluster) -> None:
    groups = {g["name"]: g for g in httpx.get(f"{devcluster.url}/apis").json()["groups"]}
    for name in (
        "apps",
        "batch",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
    ):
        assert groups[name]["preferredVersion"]["version"] == "v1"
    apps = httpx.get(f"{devcluster.url}/apis/apps/v1").json()
    assert {"deployments", "deployments/status", "deployments/scale", "replicasets", "daemonsets"} <= {
        r["name"] for r in apps["resources"]
    }


def test_aggregated_discovery_only_is_refused(devcluster: DevCluster) -> None:
    response = httpx.get(
        f"{devcluster.url}/apis",
        headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"},
    )
    assert response.status_code == 406


def test_openapi_v3_documents_carry_schemas_and_field_validation(devcluster: DevCluster) -> None:
    root = httpx.get(f"{devcluster.url}/openapi/v3").json()
    assert "api/v1" in root["paths"]
    document = httpx.get(devcluster.url + root["paths"]["apis/apps/v1"]["serverRelativeURL"]).json()
    deployment = document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deployment["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]


def test_openapi_v2_is_json(devcluster: DevCluster) -> None:
    document = httpx.get(f"{devcluster.url}/openapi/v2", headers={"Accept": "application/json"}).json()
    assert document["swagger"] == "2.0"
    assert document["definitions"]["io.k8s.api.core.v1.Pod"]["type"] == "object"
    protobuf_only = httpx.get(
        f"{devcluster.url}/openapi/v2",
        headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"},
    )
    assert protobuf_only.status_code == 406


def test_custom_resources_appear_in_openapi_v3(devcluster: DevCluster, widget_crd: str) -> None:
    root = httpx.get(f"{devcluster.url}/openapi/v3").json()
    document = httpx.get(devcluster.url + root["paths"][f"apis/{widget_crd}/v1"]["serverRelativeURL"]).json()
    widget = document["components"]["schemas"]["io.kubepilot.example.v1.Widget"]
    assert widget["properties"]["spec"]["properties"]["size"]["enum"] == ["small", "medium", "large"]
    patch = document["paths"]["/apis/example.kubepilot.io/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]


def test_protobuf_bodies_of_unknown_kinds_are_415(devcluster: DevCluster) -> None:
    response = httpx.post(
        f"{devcluster.url}/api/v1/namespaces/default/configmaps",
        content=b"k8s\x00garbage",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    assert response.status_code == 415
    assert response.json()["reason"] == "UnsupportedMediaType"


def test_kubepilot_crds_from_the_repository_serve_and_validate(
    kubectl: Kubectl, kube_api: Any, namespace: str
) -> None:
    assert REPO_CRDS, "the repository's generated CRDs (crds/kubepilot.io_*.yaml) are missing"
    for path in REPO_CRDS:
        kubectl("apply", "-f", str(path))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=10s")
    kubectl("-n", namespace, "apply", "-f", "-", stdin=MODEL_PULL)
    pulled = json.loads(kubectl("-n", namespace, "get", "mp", "sdxl", "-o", "json").stdout)
    assert pulled["spec"]["source"]["huggingFace"]["revision"] == "main"
    assert "sdxl" in kubectl("-n", namespace, "get", "kubepilot").stdout
    assert "Where the weights come from." in kubectl("explain", "modelpull.spec.source").stdout
    broken = yaml.safe_load(MODEL_PULL)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["source"] = {"type": "Civitai"}
    rejected = kubectl("-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump(broken), check=False)
    assert rejected.returncode != 0
    assert "type Civitai needs civitai" in rejected.stderr
    custom = client.CustomObjectsApi(kube_api)
    try:
        custom.patch_namespaced_custom_object(
            "kubepilot.io",
            "v1alpha1",
            namespace,
            "modelpulls",
            "sdxl",
            {"spec": {"source": {"huggingFace": {"repo": "other/repo"}}}},
        )
    except client.ApiException as error:
        assert error.status == 422
        assert "source" in json.loads(error.body)["message"]
    else:
        raise AssertionError("changing an immutable source was accepted")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_repository_examples_apply_and_list_under_the_kubepilot_category(
    kubectl: Kubectl, namespace: str
) -> None:
    assert sorted(EXAMPLES.glob("*.yaml")), "the repository's examples/ are missing"
    for path in REPO_CRDS:
        kubectl("apply", "-f", str(path))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=10s")
    applied = kubectl("-n", namespace, "apply", "-f", str(EXAMPLES)).stdout.splitlines()
    assert len(applied) == len(sorted(EXAMPLES.glob("*.yaml")))
    assert all(line.endswith(" created") for line in applied)
    listed = kubectl("-n", namespace, "get", "kubepilot", "-o", "name").stdout.split()
    assert len(listed) == len(applied)
    assert "unchanged" in kubectl("-n", namespace, "apply", "-f", str(EXAMPLES)).stdout
