"""Subresources with their own shapes: ``pods/binding`` and ``<resource>/scale``."""

from __future__ import annotations

from typing import Any

from kubepilot_devcluster.apiserver.cluster import Cluster, WriteOptions
from kubepilot_devcluster.apiserver.errors import cause, conflict, invalid, not_found
from kubepilot_devcluster.apiserver.resources import ResourceType
from kubepilot_devcluster.apiserver.timeutil import now_rfc3339
from kubepilot_devcluster.apiserver.values import clone

JsonObject = dict[str, Any]


def bind(cluster: Cluster, resource: ResourceType, namespace: str, name: str, binding: Any) -> JsonObject:
    """``pods/binding``: assign the pod to a node, as the scheduler does."""
    target = (binding.get("target") or {}) if isinstance(binding, dict) else {}
    node = target.get("name")
    if not node:
        raise invalid("", "Binding", name, [cause("target.name", "Required value", "FieldValueRequired")])
    current = cluster.store.get(resource.storage_key, namespace, name)
    if current is None:
        raise not_found(resource.group, resource.plural, name)
    assigned = (current.get("spec") or {}).get("nodeName")
    if assigned:
        raise conflict("", "pods", name, f'pod {name} is already assigned to node "{assigned}"')
    bound = clone(current)
    bound.setdefault("spec", {})["nodeName"] = node
    conditions = [
        c for c in (bound.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"
    ]
    conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()})
    bound["status"]["conditions"] = conditions
    bound["metadata"]["resourceVersion"] = str(cluster.store.next_resource_version())
    cluster.store.put(resource.storage_key, bound, "MODIFIED")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _scale_paths(resource: ResourceType) -> tuple[str, str, str]:
    if resource.crd_version is not None:
        scale = (resource.crd_version.get("subresources") or {}).get("scale") or {}
        return (
            scale.get("specReplicasPath", ".spec.replicas").lstrip("."),
            scale.get("statusReplicasPath", ".status.replicas").lstrip("."),
            str(scale.get("labelSelectorPath", "")).lstrip("."),
        )
    return ("spec.replicas", "status.replicas", "")


def _dig(obj: JsonObject, path: str) -> Any:
    if not path:
        return None
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def get_scale(cluster: Cluster, resource: ResourceType, namespace: str, name: str) -> JsonObject:
    """The object's ``autoscaling/v1`` Scale view."""
    obj = cluster.get(resource, namespace, name)
    spec_path, status_path, selector_path = _scale_paths(resource)
    meta = obj["metadata"]
    selector = _dig(obj, selector_path)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": _dig(obj, spec_path) or 0},
        "status": {"replicas": _dig(obj, status_path) or 0, **({"selector": selector} if selector else {})},
    }


def set_scale(
    cluster: Cluster, resource: ResourceType, namespace: str, name: str, replicas: Any, options: WriteOptions
) -> JsonObject:
    """Write the replica count through the main resource (so generation and validation apply)."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid("autoscaling", "Scale", name, [cause("spec.replicas", "Invalid value: must be >= 0")])
    spec_path, _, _ = _scale_paths(resource)
    new = clone(cluster.get(resource, namespace, name))
    target = new
    parts = spec_path.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = replicas
    cluster.update(resource, namespace, name, new, None, options)
    return get_scale(cluster, resource, namespace, name)
