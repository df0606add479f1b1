"""The Deployment controller (apps/v1): one ReplicaSet per pod template, Recreate or RollingUpdate.

The ReplicaSet of the current template (label ``pod-template-hash``) is scaled to ``spec.replicas``. Under
RollingUpdate (the default) older ReplicaSets shrink as the new one's pods become ready; under Recreate
they go to zero first. Status carries what ``kubectl rollout status`` reads: observedGeneration, replicas,
updatedReplicas, readyReplicas, availableReplicas and the Progressing/Available conditions.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

from .base import OwnerLoop
from .client import DEPLOYMENTS, REPLICASETS
from .events import record_event
from .job import parse_time
from .objects import (
    condition,
    merge_conditions,
    meta,
    now_iso,
    owner_reference,
    status_changed,
    template_hash,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"


def revision(rs: JsonObject) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def _count(rs: JsonObject, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


class DeploymentController(OwnerLoop):
    """Reconciles Deployments to ReplicaSets."""

    name = "deployment-controller"
    watched = (DEPLOYMENTS, REPLICASETS)
    owner = DEPLOYMENTS
    owned = REPLICASETS

    def _new_replicaset(self, deployment: JsonObject, pod_hash: str, replicas: int, rev: int) -> JsonObject:
        spec = deployment.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        name = f"{meta(deployment)['name']}-{pod_hash}"
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta(deployment).get("namespace"),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(rev),
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                },
                "ownerReferences": [owner_reference(deployment, "apps/v1", "Deployment")],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template},
        }

    async def _scale(self, deployment: JsonObject, rs: JsonObject, replicas: int) -> None:
        current = int((rs.get("spec") or {}).get("replicas", 1))
        if current != replicas:
            direction = "up" if replicas > current else "down"
            await record_event(
                self.client,
                deployment | {"apiVersion": "apps/v1", "kind": "Deployment"},
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {meta(rs)['name']} from {current} to {replicas}",
                component="deployment-controller",
            )
            await self.client.patch(
                REPLICASETS, meta(rs).get("namespace"), meta(rs)["name"], {"spec": {"replicas": replicas}}
            )
            rs.setdefault("spec", {})["replicas"] = replicas

    async def sync(self, deployment: JsonObject, replicasets: list[JsonObject]) -> None:
        if meta(deployment).get("deletionTimestamp"):
            return
        namespace = meta(deployment).get("namespace")
        spec = deployment.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template") or {})
        new_rs = next(
            (rs for rs in replicasets if (meta(rs).get("labels") or {}).get(HASH_LABEL) == pod_hash), None
        )
        old = [rs for rs in replicasets if rs is not new_rs]
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        old_alive = sum(_count(rs, "replicas") for rs in old)
        new_target = 0 if recreate and old_alive > 0 else desired
        if new_rs is None:
            rev = max((revision(rs) for rs in replicasets), default=0) + 1
            new_rs = await self.client.create(
                REPLICASETS, namespace, self._new_replicaset(deployment, pod_hash, new_target, rev)
            )
            await record_event(
                self.client,
                deployment | {"apiVersion": "apps/v1", "kind": "Deployment"},
                "ScalingReplicaSet",
                f"Scaled up replica set {meta(new_rs)['name']} from 0 to {new_target}",
                component="deployment-controller",
            )
        else:
            await self._scale(deployment, new_rs, new_target)
        new_ready = _count(new_rs, "readyReplicas")
        # Old pods may stay only while the new ReplicaSet is short of ready pods.
        old_budget = 0 if recreate else max(desired - new_ready, 0)
        for rs in sorted(old, key=revision, reverse=True):
            keep = min(int((rs.get("spec") or {}).get("replicas", 0)), old_budget)
            old_budget -= keep
            await self._scale(deployment, rs, keep)
        new_revision = str(revision(new_rs))
        if (meta(deployment).get("annotations") or {}).get(REVISION) != new_revision:
            await self.client.patch(
                DEPLOYMENTS,
                namespace,
                meta(deployment)["name"],
                {"metadata": {"annotations": {REVISION: new_revision}}},
            )
        await self._prune_history(deployment, old)
        await self._write_status(deployment, new_rs, old, desired)

    async def _prune_history(self, deployment: JsonObject, old: list[JsonObject]) -> None:
        """Delete scaled-down old ReplicaSets beyond ``revisionHistoryLimit`` (oldest first)."""
        limit = int((deployment.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if not (rs.get("spec") or {}).get("replicas") and not _count(rs, "replicas")]
        for rs in sorted(idle, key=revision, reverse=True)[limit:]:
            await self.client.delete(REPLICASETS, meta(rs).get("namespace"), meta(rs)["name"])

    async def _write_status(
        self, deployment: JsonObject, new_rs: JsonObject, old: list[JsonObject], desired: int
    ) -> None:
        everything = [new_rs, *old]
        status: JsonObject = {
            "observedGeneration": int(meta(deployment).get("generation", 1)),
            "replicas": sum(_count(rs, "replicas") for rs in everything),
            "updatedReplicas": _count(new_rs, "replicas"),
            "readyReplicas": sum(_count(rs, "readyReplicas") for rs in everything),
            "availableReplicas": sum(_count(rs, "availableReplicas") for rs in everything),
        }
        available = status["availableReplicas"]
        status["unavailableReplicas"] = max(desired - available, 0)
        done = status["updatedReplicas"] >= desired and status["replicas"] <= status["updatedReplicas"]
        done = done and available >= desired
        now = now_iso()
        available_ok = available >= desired
        previous = deployment.get("status") or {}
        conditions = merge_conditions(
            list(previous.get("conditions") or []),
            [
                condition(
                    "Available",
                    available_ok,
                    "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if available_ok
                    else "Deployment does not have minimum availability.",
                    now,
                )
            ],
        )
        progressing = progressing_condition(deployment, status, done, str(meta(new_rs)["name"]))
        status["conditions"] = [c for c in conditions if c.get("type") != "Progressing"] + [progressing]
        if status_changed(deployment, status):
            await self.client.patch(
                DEPLOYMENTS,
                meta(deployment).get("namespace"),
                meta(deployment)["name"],
                {"status": status},
                "status",
            )


def progressing_condition(deployment: JsonObject, status: JsonObject, done: bool, rs_name: str) -> JsonObject:
    """The Progressing condition; False with ProgressDeadlineExceeded when a rollout stalls too long.

    Progress means any change of the replica counts or of the spec since the last pass; its time is
    kept in ``lastUpdateTime`` and compared with ``spec.progressDeadlineSeconds``.
    """
    previous_status = deployment.get("status") or {}
    previous = next(
        (c for c in previous_status.get("conditions") or [] if c.get("type") == "Progressing"), None
    )
    counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "observedGeneration")
    progressed = previous is None or any(previous_status.get(k) != status.get(k) for k in counts)
    now = now_iso()
    if done:
        wanted = (True, "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        last_update = now if progressed or previous is None else str(previous.get("lastUpdateTime") or now)
    else:
        progressed = progressed or (previous or {}).get("reason") == "NewReplicaSetAvailable"
        last_update = now if progressed else str((previous or {}).get("lastUpdateTime") or now)
        deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
        stalled = parse_time(last_update)
        elapsed = (datetime.now(UTC) - stalled).total_seconds() if stalled else 0.0
        if not progressed and deadline is not None and elapsed > float(deadline):
            wanted = (False, "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.')
        else:
            wanted = (True, "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
    ok, reason, message = wanted
    if previous is not None and (previous.get("status") == "True") == ok and previous.get("reason") == reason:
        return dict(previous) | {"lastUpdateTime": last_update}
    transition = now
    if previous is not None and (previous.get("status") == "True") == ok:
        transition = str(previous.get("lastTransitionTime") or now)
    return {
        "type": "Progressing",
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastUpdateTime": last_update,
        "lastTransitionTime": transition,
    }
