"""What every reconciler works with, and the helpers they share: status writes, events, Secrets."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.conditions import ConditionType as T
from kubepilot_api.workers.progress import AnyReport
from kubepilot_operator import kube, tokens
from kubepilot_operator.builders.common import secret_drift, workload_secret
from kubepilot_operator.cache import ObjectCache
from kubepilot_operator.conditions import ConditionSet, timestamp
from kubepilot_operator.metrics import Metrics
from kubepilot_operator.naming import MANAGED_BY
from kubepilot_operator.reconcile.podstate import PodView
from kubepilot_operator.reports import ReportStore
from kubepilot_operator.settings import Settings
from kubepilot_operator.workqueue import WorkKey

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass
class Context:
    settings: Settings
    api: kube.Kube
    cache: ObjectCache
    reports: ReportStore
    metrics: Metrics
    intake_key: bytes
    enqueue: Any = None
    """Callable[[WorkKey, float], None]: ask for another pass of some object (set by the app)."""
    _service_accounts: set[str] = field(default_factory=set)
    _secrets: dict[tuple[str, str], str] = field(default_factory=dict)

    def token(self, cr: Obj) -> str:
        return tokens.derive(self.intake_key, tokens.subject(cr))

    def report(
        self, key: WorkKey, pods_final: AnyReport | None = None, cr: Obj | None = None
    ) -> AnyReport | None:
        """The latest pushed report (of the object's current token, given ``cr``), else the final
        report from a termination message."""
        pushed = self.reports.latest(key, tokens.subject(cr) if cr is not None else None)
        if pushed is not None and (pushed.final or pods_final is None):
            return pushed
        return pods_final or pushed

    def ensure_worker_account(self, namespace: str) -> None:
        """The namespace's worker ServiceAccount: no role is ever bound to it."""
        if namespace in self._service_accounts:
            return
        self.api.create(
            kube.SERVICEACCOUNTS,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": self.settings.workerServiceAccount,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
                },
                "automountServiceAccountToken": False,
            },
        )
        self._service_accounts.add(namespace)

    def ensure_secret(self, cr: Obj, config: Obj | None) -> None:
        """The workload's token-and-config Secret, written only when its content changes.

        Secrets are not watched (the operator must not list every Secret), so what this process
        last wrote is remembered: an unchanged Secret costs no call, a new one a single create.
        """
        desired = workload_secret(cr, self.token(cr), config)
        key = (desired["metadata"]["namespace"], desired["metadata"]["name"])
        digest = dumps(desired["data"])
        if self._secrets.get(key) == digest:
            return
        self.api.ensure(kube.SECRETS, desired, secret_drift, likely_absent=key not in self._secrets)
        self._secrets[key] = digest

    def write_status(self, plural: str, cr: Obj, status: Obj) -> Obj:
        """Write ``status`` when it differs from the stored one (merge patch; removed keys nulled)."""
        old = cr.get("status") or {}
        if status == old:
            return cr
        patch = {key: None for key in old if key not in status}
        patch.update(status)
        meta = cr["metadata"]
        updated = self.api.patch(
            kube.custom(plural), meta["namespace"], meta["name"], {"status": patch}, subresource="status"
        )
        self.cache.upsert(plural, updated)
        # An object's first status is not a transition worth an Event; every later phase change is.
        if old.get("phase") and old.get("phase") != status.get("phase"):
            self.event(
                cr,
                "Warning" if status.get("phase") in ("Failed", "Error") else "Normal",
                str(status.get("phase")),
                _phase_message(status),
            )
        return updated

    def patch_object(self, plural: str, cr: Obj, body: Any, content_type: str = kube.MERGE_PATCH) -> Obj:
        meta = cr["metadata"]
        updated = self.api.patch(
            kube.custom(plural), meta["namespace"], meta["name"], body, content_type=content_type
        )
        self.cache.upsert(plural, updated)
        # A spec or metadata change is the patched object's business: its echo queues nothing (it is
        # already cached), so queue it here. A GenerationJob starting its service relies on this.
        if self.enqueue is not None:
            self.enqueue(WorkKey(plural, meta["namespace"], meta["name"]))
        return updated

    def remove_finalizer(self, plural: str, cr: Obj, finalizer: str) -> None:
        """Drop one finalizer, only if it is still where we saw it (a JSON patch with a test)."""
        finalizers = list(cr["metadata"].get("finalizers") or [])
        if finalizer not in finalizers:
            return
        index = finalizers.index(finalizer)
        remove = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        self.patch_object(plural, cr, remove, content_type=kube.JSON_PATCH)

    def orchestration(self, conditions: ConditionSet, pods_view: PodView, kind: str) -> None:
        """WorkloadReady from the pods; a new failure reason is counted once."""
        previous = conditions.get(T.WORKLOAD_READY)
        if pods_view.failing:
            if previous is None or previous.get("reason") != pods_view.reason:
                self.metrics.child_failures.labels(kind, pods_view.reason).inc()
            conditions.set(T.WORKLOAD_READY, False, pods_view.reason, pods_view.message)
        elif pods_view.running:
            conditions.set(T.WORKLOAD_READY, True, R.POD_RUNNING, pods_view.message)
        else:
            conditions.set(T.WORKLOAD_READY, False, R.PENDING, pods_view.message)

    def event(self, cr: Obj, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the CR; a failure to record one never fails a reconcile."""
        meta = cr["metadata"]
        now = timestamp()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": cr.get("apiVersion"),
                "kind": cr.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason[:128] or "Updated",
            "message": message[:1024],
            "type": type_,
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.request("POST", kube.EVENTS, meta["namespace"], body=body)
        except Exception as error:  # events are best effort by design
            log.debug("could not record an event on %s/%s: %s", meta["namespace"], meta["name"], error)


def _phase_message(status: Obj) -> str:
    """The message of the condition that best explains the phase, in order of importance."""
    by_type = {c.get("type"): c for c in status.get("conditions") or []}
    terminal = ("Removed", "Failed", "Cancelled", "Succeeded", "Ready", "Available", "Suspended")
    for kind in terminal:
        condition = by_type.get(kind)
        if condition is not None and condition.get("status") == "True":
            return str(condition.get("message") or condition.get("reason"))
    for kind in ("WorkloadReady", "DependenciesReady", "Scheduled", "Progressing", "Removed"):
        condition = by_type.get(kind)
        if condition is not None and condition.get("message"):
            return str(condition["message"])
    return f"phase {status.get('phase')}"


def copy_status(cr: Obj) -> Obj:
    return copy.deepcopy(cr.get("status") or {})


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
