"""The Job controller (batch/v1): pods from the template until the completions succeed or the Job fails.

Supported: parallelism, completions (or none: the first success completes the Job), completionMode Indexed
(``JOB_COMPLETION_INDEX`` env, completion-index annotation and label, hostname ``<job>-<index>``),
backoffLimit (failed pods, plus container restarts under restartPolicy OnFailure), activeDeadlineSeconds,
suspend/resume, ttlSecondsAfterFinished, and the conditions Complete, Failed and Suspended.
Pods of a Job are found through their controlling ownerReference, not through ``spec.selector``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from .base import OwnerLoop
from .client import JOBS, PODS
from .events import record_event
from .objects import (
    condition,
    is_active,
    is_ready,
    merge_conditions,
    meta,
    now_iso,
    pod_from_template,
    random_suffix,
    status_changed,
    uid_of,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def condition_true(status: JsonObject, kind: str) -> JsonObject | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def pod_index(pod: JsonObject) -> int | None:
    raw = (meta(pod).get("annotations") or {}).get(INDEX_KEY) or (meta(pod).get("labels") or {}).get(
        INDEX_KEY
    )
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def format_indexes(indexes: set[int]) -> str:
    """Kubernetes' compressed index list, e.g. ``0-2,5``."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def restarts(pod: JsonObject) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount", 0)) for s in statuses)


class JobController(OwnerLoop):
    """Reconciles every Job against the pods it controls."""

    name = "job-controller"
    watched = (JOBS, PODS)
    owner = JOBS
    owned = PODS

    async def _event(self, job: JsonObject, reason: str, message: str, warning: bool = False) -> None:
        body = job | {"apiVersion": "batch/v1", "kind": "Job"}
        await record_event(self.client, body, reason, message, warning=warning, component="job-controller")

    async def _delete_pods(self, pods: list[JsonObject]) -> None:
        for pod in pods:
            await self.client.delete(PODS, meta(pod).get("namespace"), meta(pod)["name"])

    async def _write_status(self, job: JsonObject, status: JsonObject) -> None:
        if status_changed(job, status):
            await self.client.patch(
                JOBS, meta(job).get("namespace"), meta(job)["name"], {"status": status}, "status"
            )

    async def _finished(self, job: JsonObject, active: list[JsonObject]) -> None:
        """A finished Job: clean leftover pods, delete the Job when its TTL has run out."""
        status = job.get("status") or {}
        await self._delete_pods(active)
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        failed = condition_true(status, "Failed") or {}
        finished_at = parse_time(status.get("completionTime")) or parse_time(failed.get("lastTransitionTime"))
        if finished_at and (datetime.now(UTC) - finished_at).total_seconds() >= float(ttl):
            await self.client.delete(
                JOBS, meta(job).get("namespace"), meta(job)["name"], propagation="Background"
            )

    async def sync(self, job: JsonObject, pods: list[JsonObject]) -> None:
        if meta(job).get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        status = job.get("status") or {}
        active = [p for p in pods if is_active(p)]
        if condition_true(status, "Complete") or condition_true(status, "Failed"):
            await self._finished(job, active)
            return
        now = now_iso()
        conditions: list[JsonObject] = list(status.get("conditions") or [])
        if spec.get("suspend"):
            await self._delete_pods(active)
            conditions = merge_conditions(
                conditions, [condition("Suspended", True, "JobSuspended", "Job suspended", now)]
            )
            await self._write_status(
                job, {"conditions": conditions, "active": 0, "ready": 0, "startTime": None}
            )
            return
        if condition_true(status, "Suspended"):
            conditions = merge_conditions(
                conditions, [condition("Suspended", False, "JobResumed", "Job resumed", now)]
            )
        start_time = str(status.get("startTime") or now)
        succeeded_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        template_spec = (spec.get("template") or {}).get("spec") or {}
        failed = len(failed_pods)
        if template_spec.get("restartPolicy") == "OnFailure":
            failed += sum(restarts(p) for p in pods)
        succeeded = len(succeeded_pods)
        new_status: JsonObject = {
            "startTime": start_time,
            "active": len(active),
            "ready": sum(1 for p in active if is_ready(p)),
            "succeeded": max(succeeded, int(status.get("succeeded", 0))),
            "failed": max(failed, int(status.get("failed", 0))),
            "terminating": 0,
        }
        indexed = spec.get("completionMode") == "Indexed"
        completions = spec.get("completions")
        completed_indexes = {i for p in succeeded_pods if (i := pod_index(p)) is not None}
        if indexed:
            new_status["completedIndexes"] = format_indexes(completed_indexes)
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(start_time) or datetime.now(UTC)
        failure: tuple[str, str] | None = None
        if deadline is not None and (datetime.now(UTC) - started).total_seconds() >= float(deadline):
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        elif new_status["failed"] > int(spec.get("backoffLimit", 6)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        if failure is not None:
            await self._event(job, failure[0], failure[1], warning=True)
            await self._delete_pods(active)
            new_status["active"] = new_status["ready"] = 0
            new_status["conditions"] = merge_conditions(
                conditions, [condition("Failed", True, *failure, now)]
            )
            await self._write_status(job, new_status)
            return
        if indexed and completions is not None:
            complete = len(completed_indexes & set(range(int(completions)))) >= int(completions)
        elif completions is not None:
            complete = new_status["succeeded"] >= int(completions)
        else:
            complete = new_status["succeeded"] > 0 and not active
        if complete:
            await self._event(job, "Completed", "Job completed")
            await self._delete_pods(active)
            new_status["active"] = new_status["ready"] = 0
            new_status["completionTime"] = now
            new_status["conditions"] = merge_conditions(
                conditions,
                [
                    condition(
                        "Complete",
                        True,
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                        now,
                    )
                ],
            )
            await self._write_status(job, new_status)
            return
        created = await self._create_pods(job, active, completed_indexes, new_status["succeeded"])
        new_status["active"] += created
        if conditions:
            new_status["conditions"] = conditions
        await self._write_status(job, new_status)

    async def _create_pods(
        self, job: JsonObject, active: list[JsonObject], completed_indexes: set[int], succeeded: int
    ) -> int:
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if spec.get("completionMode") == "Indexed" and completions is not None:
            running = {i for p in active if (i := pod_index(p)) is not None}
            pending = [i for i in range(int(completions)) if i not in completed_indexes and i not in running]
            indexes: list[int | None] = list(pending[: max(parallelism - len(active), 0)])
        else:
            if completions is not None:
                wanted = min(parallelism, int(completions) - succeeded)
            else:
                wanted = parallelism if succeeded == 0 else 0
            indexes = [None] * max(wanted - len(active), 0)
        for index in indexes:
            pod = await self.client.create(PODS, meta(job).get("namespace"), self._pod_body(job, index))
            await self._event(job, "SuccessfulCreate", f"Created pod: {meta(pod).get('name')}")
        return len(indexes)

    def _pod_body(self, job: JsonObject, index: int | None) -> JsonObject:
        name = str(meta(job)["name"])
        labels = {
            "batch.kubernetes.io/controller-uid": uid_of(job),
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid_of(job),
            "job-name": name,
        }
        annotations: dict[str, str] = {}
        pod_name = f"{name}-{random_suffix()}"
        if index is not None:
            labels[INDEX_KEY] = annotations[INDEX_KEY] = str(index)
            pod_name = f"{name}-{index}-{random_suffix()}"
        pod = pod_from_template(job, "batch/v1", "Job", pod_name, labels, annotations)
        if index is not None:
            pod_spec = pod["spec"]
            pod_spec["hostname"] = f"{name}-{index}"
            for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
                env = container.setdefault("env", [])
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                    env.insert(0, {"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        return pod
