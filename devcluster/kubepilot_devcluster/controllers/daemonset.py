"""The DaemonSet controller (apps/v1): one pod per DaemonSet on the node, replaced on template change."""

from __future__ import annotations

import logging
from typing import Any

from ..kubelet.scheduler import node_labels
from .base import OwnerLoop
from .client import DAEMONSETS, PODS, KubeClient
from .objects import (
    is_active,
    is_ready,
    meta,
    pod_from_template,
    random_suffix,
    status_changed,
    template_hash,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
REVISION_LABEL = "controller-revision-hash"


class DaemonSetController(OwnerLoop):
    """Keeps exactly one up-to-date pod of each DaemonSet on the node (when its nodeSelector allows)."""

    name = "daemonset-controller"
    watched = (DAEMONSETS, PODS)
    owner = DAEMONSETS
    owned = PODS

    def __init__(self, client: KubeClient, node_name: str) -> None:
        super().__init__(client)
        self.node_name = node_name
        self.labels = node_labels(node_name)

    async def sync(self, ds: JsonObject, pods: list[JsonObject]) -> None:
        if meta(ds).get("deletionTimestamp"):
            return
        namespace = meta(ds).get("namespace")
        template = (ds.get("spec") or {}).get("template") or {}
        selector = (template.get("spec") or {}).get("nodeSelector") or {}
        wanted = 0 if any(self.labels.get(k) != v for k, v in selector.items()) else 1
        revision = template_hash(template)
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded") and not meta(pod).get(
                "deletionTimestamp"
            ):
                await self.client.delete(PODS, namespace, meta(pod)["name"])
        active = [p for p in pods if is_active(p)]
        current = [p for p in active if (meta(p).get("labels") or {}).get(REVISION_LABEL) == revision]
        doomed = [p for p in active if p not in current] + current[wanted:]
        for pod in doomed:
            await self.client.delete(PODS, namespace, meta(pod)["name"])
        current = current[:wanted]
        # Replace only once the outdated pod is gone, like a rolling update with maxUnavailable 1.
        terminating = [p for p in pods if meta(p).get("deletionTimestamp")]
        if wanted and not current and not doomed and not terminating:
            body = pod_from_template(
                ds,
                "apps/v1",
                "DaemonSet",
                f"{meta(ds)['name']}-{random_suffix()}",
                {REVISION_LABEL: revision, "pod-template-generation": str(meta(ds).get("generation", 1))},
            )
            body["spec"]["nodeName"] = self.node_name
            current = [await self.client.create(PODS, namespace, body)]
        ready = sum(1 for p in current if is_ready(p))
        scheduled = len(current) + len([p for p in doomed if p not in current])
        status = {
            "desiredNumberScheduled": wanted,
            "currentNumberScheduled": min(scheduled, wanted) if wanted else 0,
            "updatedNumberScheduled": len(current),
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": max(wanted - ready, 0),
            "numberMisscheduled": 0 if wanted else len(active),
            "observedGeneration": int(meta(ds).get("generation", 1)),
        }
        if status_changed(ds, status):
            await self.client.patch(DAEMONSETS, namespace, meta(ds)["name"], {"status": status}, "status")
