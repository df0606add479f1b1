"""A small kopf operator for the devcluster tests (loaded by ``kopf run``, not collected by pytest).

It uses finalizers (a delete handler), status patches, an adopted child ConfigMap (``kopf.adopt``)
and annotation-based progress storage, the kopf features our operator relies on.
"""

from __future__ import annotations

import os
from typing import Any

import kopf
import kubernetes

GROUP, VERSION, PLURAL = "example.kubepilot.io", "v1", "widgets"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # $KUBECONFIG is read now, not when the kubernetes library was first imported.
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubepilot.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kubepilot.io")
    settings.persistence.finalizer = "kubepilot.io/widget-cleanup"
    settings.watching.server_timeout = 10
    kubernetes.config.load_kube_config(config_file=os.environ["KUBECONFIG"])


@kopf.on.create(GROUP, VERSION, PLURAL)
def create_child(spec: Any, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> dict[str, str]:
    child: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config"},
        "data": {"size": spec["size"]},
    }
    kopf.adopt(child)
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, child)
    patch.status["phase"] = "Ready"
    return {"child": child["metadata"]["name"]}


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.size")
def resize_child(new: Any, name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    kubernetes.client.CoreV1Api().patch_namespaced_config_map(
        f"{name}-config", namespace, {"data": {"size": new}}
    )
    patch.status["phase"] = f"Resized-{new}"


@kopf.on.delete(GROUP, VERSION, PLURAL)
def record_deletion(name: str, namespace: str, **_: Any) -> None:
    kubernetes.client.CoreV1Api().create_namespaced_config_map(
        namespace, {"metadata": {"name": f"{name}-deleted"}, "data": {"by": "kopf"}}
    )
