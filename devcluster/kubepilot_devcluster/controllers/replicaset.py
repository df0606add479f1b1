"""The ReplicaSet controller (apps/v1): keeps ``spec.replicas`` active pods from the template."""

from __future__ import annotations

import logging
from typing import Any

from .base import OwnerLoop
from .client import PODS, REPLICASETS
from .events import record_event
from .objects import (
    is_active,
    is_ready,
    meta,
    pod_from_template,
    random_suffix,
    status_changed,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]


def scale_down_order(pods: list[JsonObject]) -> list[JsonObject]:
    """Pods to remove first when scaling down: unscheduled, then not ready, then the newest."""
    newest_first = sorted(pods, key=lambda p: str(meta(p).get("creationTimestamp", "")), reverse=True)
    return sorted(newest_first, key=lambda p: (bool((p.get("spec") or {}).get("nodeName")), is_ready(p)))


class ReplicaSetController(OwnerLoop):
    """Creates and deletes pods so that each ReplicaSet has its desired number of active pods."""

    name = "replicaset-controller"
    watched = (REPLICASETS, PODS)
    owner = REPLICASETS
    owned = PODS

    async def _event(self, rs: JsonObject, reason: str, message: str) -> None:
        body = rs | {"apiVersion": "apps/v1", "kind": "ReplicaSet"}
        await record_event(self.client, body, reason, message, component="replicaset-controller")

    async def sync(self, rs: JsonObject, pods: list[JsonObject]) -> None:
        if meta(rs).get("deletionTimestamp"):
            return
        namespace = meta(rs).get("namespace")
        for pod in pods:
            if (pod.get("status") or {}).get("phase") == "Failed" and not meta(pod).get("deletionTimestamp"):
                await self.client.delete(PODS, namespace, meta(pod)["name"])
        active = [p for p in pods if is_active(p)]
        desired = int((rs.get("spec") or {}).get("replicas", 1))
        if len(active) < desired:
            for _ in range(desired - len(active)):
                body = pod_from_template(rs, "apps/v1", "ReplicaSet", f"{meta(rs)['name']}-{random_suffix()}")
                created = await self.client.create(PODS, namespace, body)
                active.append(created)
                await self._event(rs, "SuccessfulCreate", f"Created pod: {meta(created).get('name')}")
        elif len(active) > desired:
            ordered = scale_down_order(active)
            doomed = ordered[: len(active) - desired]
            for pod in doomed:
                await self.client.delete(PODS, namespace, meta(pod)["name"])
                await self._event(rs, "SuccessfulDelete", f"Deleted pod: {meta(pod)['name']}")
            active = [p for p in active if p not in doomed]
        ready = sum(1 for p in active if is_ready(p))
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": len(active),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": int(meta(rs).get("generation", 1)),
        }
        if status_changed(rs, status):
            await self.client.patch(REPLICASETS, namespace, meta(rs)["name"], {"status": status}, "status")
