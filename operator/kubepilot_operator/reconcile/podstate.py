"""What a workload's pods and Job say about orchestration: scheduled, pulled, running, or why not.

Pod failures are never hidden (DESIGN §2): each known failure becomes a condition reason of its
own with the kubelet's message, so ``kubectl describe`` on the CR tells why nothing runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.workers.progress import AnyReport, parse_report

Obj = dict[str, Any]

IMAGE_PULL_REASONS = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName"}
CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass
class PodView:
    """The newest pod of a workload, summarised."""

    reason: str = R.PENDING.value
    message: str = ""
    running: bool = False
    ready: bool = False
    failing: bool = False
    """A reason a person must act on (image, scheduling, crash loop, OOM, eviction)."""
    pod_name: str = ""
    pod_ip: str = ""
    restart_count: int = 0
    last_exit_code: int | None = None
    final_report: AnyReport | None = None
    """The termination message, when it is a worker's final report (the intake's fallback)."""


def _created(pod: Obj) -> str:
    return str(pod.get("metadata", {}).get("creationTimestamp", ""))


def newest(pods: list[Obj]) -> Obj | None:
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")] or pods
    return max(live, key=_created, default=None)


def termination_report(pods: list[Obj]) -> AnyReport | None:
    """The last final report found in any pod's termination message (newest pod first)."""
    for pod in sorted(pods, key=_created, reverse=True):
        for status in pod.get("status", {}).get("containerStatuses") or []:
            for state_key in ("state", "lastState"):
                terminated = (status.get(state_key) or {}).get("terminated") or {}
                message = terminated.get("message") or ""
                if message.startswith("{"):
                    try:
                        return parse_report(message)
                    except (ValidationError, ValueError):
                        continue
    return None


def view(pods: list[Obj]) -> PodView:
    pod = newest(pods)
    result = PodView(final_report=termination_report(pods))
    if pod is None:
        result.message = "no pod yet"
        return result
    status = pod.get("status") or {}
    result.pod_name = str(pod["metadata"].get("name", ""))
    result.pod_ip = str(status.get("podIP", ""))
    if status.get("reason") == "Evicted":
        return _failing(result, R.EVICTED.value, str(status.get("message", "the pod was evicted")))
    for condition in status.get("conditions") or []:
        unschedulable = condition.get("reason") == "Unschedulable" and condition.get("status") == "False"
        if condition.get("type") == "PodScheduled" and unschedulable:
            return _failing(result, R.UNSCHEDULABLE.value, str(condition.get("message", "")))
    containers = status.get("containerStatuses") or []
    for container in containers:
        result.restart_count += int(container.get("restartCount", 0))
        for state_key in ("state", "lastState"):
            terminated = (container.get(state_key) or {}).get("terminated")
            if terminated and result.last_exit_code is None:
                result.last_exit_code = int(terminated.get("exitCode", 0))
    for container in containers:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = str(waiting.get("reason", ""))
        detail = f"{container.get('name')}: {reason}: {waiting.get('message', '')}".rstrip(": ")
        if reason in IMAGE_PULL_REASONS:
            return _failing(result, R.IMAGE_PULL_BACK_OFF.value, detail)
        if reason in CONFIG_REASONS:
            return _failing(result, R.CONTAINER_ERROR.value, detail)
        if reason == "CrashLoopBackOff":
            last = (container.get("lastState") or {}).get("terminated") or {}
            if last.get("reason") == "OOMKilled":
                return _failing(
                    result, R.OOM_KILLED.value, f"{container.get('name')} was killed: out of memory"
                )
            code = last.get("exitCode")
            return _failing(result, R.CRASH_LOOP_BACK_OFF.value, f"{detail} (last exit code {code})")
        terminated = state.get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return _failing(result, R.OOM_KILLED.value, f"{container.get('name')} was killed: out of memory")
    phase = status.get("phase", "Pending")
    if phase == "Running":
        result.running = True
        result.ready = all(c.get("ready") for c in containers) and bool(containers)
        result.reason = R.POD_RUNNING.value
        result.message = f"pod {result.pod_name} is running"
    elif phase in ("Succeeded", "Failed"):
        result.reason = R.COMPLETED.value if phase == "Succeeded" else R.CONTAINER_ERROR.value
        result.message = f"pod {result.pod_name} {phase.lower()} (exit code {result.last_exit_code})"
    else:
        result.message = f"pod {result.pod_name} is pending"
    return result


def _failing(result: PodView, reason: str, message: str) -> PodView:
    result.reason, result.message, result.failing = reason, message, True
    return result


@dataclass
class JobView:
    """A Job's outcome."""

    exists: bool = False
    complete: bool = False
    failed: bool = False
    suspended: bool = False
    reason: str = ""
    message: str = ""
    active: int = 0


def job_view(job: Obj | None) -> JobView:
    if job is None:
        return JobView()
    result = JobView(exists=True)
    status = job.get("status") or {}
    result.active = int(status.get("active", 0) or 0)
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        kind = condition.get("type")
        if kind == "Complete":
            result.complete = True
        elif kind == "Failed":
            result.failed = True
            reason = str(condition.get("reason", ""))
            result.reason = (
                R.DEADLINE_EXCEEDED.value
                if reason == "DeadlineExceeded"
                else (
                    R.BACKOFF_LIMIT_EXCEEDED.value
                    if reason == "BackoffLimitExceeded"
                    else reason or "JobFailed"
                )
            )
            result.message = str(condition.get("message", ""))
        elif kind == "Suspended":
            result.suspended = True
    return result
