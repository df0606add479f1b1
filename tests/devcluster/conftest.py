"""Fixtures for the devcluster tests: a running devcluster, a namespace per test, API clients."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kubepilot_devcluster.testing import DevCluster, devcluster, kube_api, namespace

__all__ = ["devcluster", "kube_api", "kubectl", "namespace", "widget_crd"]

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(devcluster: DevCluster, tmp_path: Path) -> Kubectl:
    """Run the real kubectl against the devcluster; ``check=False`` to inspect failures.

    Each test gets its own discovery cache, so one test's cached API list never hides another's CRDs.
    """

    def run(
        *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        command = [
            str(KUBECTL),
            "--kubeconfig",
            str(devcluster.kubeconfig),
            "--cache-dir",
            str(tmp_path / "kube-cache"),
            *args,
        ]
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return run


WIDGET_GROUP = "example.kubepilot.io"
WIDGET_CRD: dict[str, object] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{WIDGET_GROUP}"},
    "spec": {
        "group": WIDGET_GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
            "categories": ["kubepilot"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "description": "A Widget is the devcluster tests' sample resource.",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What the widget should be.",
                                "required": ["size"],
                                "x-kubernetes-validations": [
                                    {"rule": "self.replicas <= 10", "message": "replicas must be at most 10"},
                                    {
                                        "rule": "oldSelf.size != 'large' || self.size == 'large'",
                                        "message": "a large widget cannot shrink",
                                    },
                                ],
                                "properties": {
                                    "size": {
                                        "type": "string",
                                        "description": "How big the widget is.",
                                        "enum": ["small", "medium", "large"],
                                    },
                                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                    "label": {"type": "string", "maxLength": 10, "pattern": "^[a-z]+$"},
                                    "tags": {
                                        "type": "array",
                                        "maxItems": 3,
                                        "minItems": 1,
                                        "items": {"type": "string"},
                                    },
                                    "deadline": {"type": "string", "format": "date-time"},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}, "replicas": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="session")
def widget_crd(devcluster: DevCluster) -> str:
    """The sample Widget CRD, installed once per session; returns its API group."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(devcluster.kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        extensions = client.ApiextensionsV1Api(api)
        try:
            extensions.create_custom_resource_definition(WIDGET_CRD)
        except client.ApiException as error:
            if error.status != 409:
                raise
    return WIDGET_GROUP
