"""The devcluster's scheduler for its single node: resource fit and node selectors."""

from __future__ import annotations

import os
import platform
from decimal import Decimal
from typing import Any

from .quantity import parse_quantity

JsonObject = dict[str, Any]
TERMINAL_PHASES = ("Succeeded", "Failed")


def host_capacity() -> dict[str, str]:
    """cpu and memory of this machine, used when node.yaml gives none."""
    cpu = str(os.cpu_count() or 1)
    try:
        memory = str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        memory = "8Gi"
    return {"cpu": cpu, "memory": memory}


def node_labels(node_name: str) -> dict[str, str]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }


def _container_requests(container: JsonObject) -> dict[str, Decimal]:
    resources = container.get("resources") or {}
    # Kubernetes defaults requests to limits when only limits are given.
    merged = dict(resources.get("limits") or {}) | dict(resources.get("requests") or {})
    out: dict[str, Decimal] = {}
    for key, value in merged.items():
        try:
            out[str(key)] = parse_quantity(value)
        except ValueError:
            continue
    return out


def pod_requests(pod: JsonObject) -> dict[str, Decimal]:
    """Effective requests: max(sum over containers, max over init containers), plus one 'pods'."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for container in spec.get("containers") or []:
        for key, value in _container_requests(container).items():
            total[key] = total.get(key, Decimal(0)) + value
    for container in spec.get("initContainers") or []:
        for key, value in _container_requests(container).items():
            total[key] = max(total.get(key, Decimal(0)), value)
    total["pods"] = total.get("pods", Decimal(0)) + 1
    return total


def occupies_node(pod: JsonObject, node_name: str) -> bool:
    """Whether the pod holds resources on the node (bound and not finished)."""
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase")
    return spec.get("nodeName") == node_name and phase not in TERMINAL_PHASES


def used_resources(pods: list[JsonObject], node_name: str) -> dict[str, Decimal]:
    used: dict[str, Decimal] = {}
    for pod in pods:
        if occupies_node(pod, node_name):
            for key, value in pod_requests(pod).items():
                used[key] = used.get(key, Decimal(0)) + value
    return used


def unschedulable_reason(
    pod: JsonObject, capacity: dict[str, str], used: dict[str, Decimal], labels: dict[str, str]
) -> str | None:
    """None when the pod fits the node; otherwise the scheduler's message for it."""
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    missing = []
    for key, wanted in sorted(pod_requests(pod).items()):
        if wanted <= 0:
            continue
        if key in ("cpu", "memory", "ephemeral-storage") and key not in capacity:
            continue
        try:
            available = parse_quantity(capacity.get(key, "0")) - used.get(key, Decimal(0))
        except ValueError:
            available = Decimal(0)
        if wanted > available:
            missing.append(f"1 Insufficient {key}" if key != "pods" else "1 Too many pods")
    if missing:
        return f"0/1 nodes are available: {', '.join(missing)}."
    return None
