"""ServiceInstance: Deployment and Service, start/stop/restart, culling, phase from the pod."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.conditions import ConditionType as T
from kubepilot_api.serviceinstance import ServiceInstance
from kubepilot_api.workers.progress import ServiceReport
from kubepilot_operator import kube
from kubepilot_operator.builders import serviceinstance as build
from kubepilot_operator.conditions import ConditionSet, timestamp
from kubepilot_operator.naming import RESTART_ANNOTATION, selector
from kubepilot_operator.reconcile import actions, podstate
from kubepilot_operator.reconcile.context import Context, copy_status
from kubepilot_operator.workqueue import WorkKey

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PLURAL = build.PLURAL
STOP_REASON_ANNOTATION = "kubepilot.io/stop-reason"
"""Set with ``spec.running: false`` by whoever stopped the service (culling, the shutdown schedule)."""
RUNNING_REQUEUE = 15.0


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def service_pods(ctx: Context, cr: Obj) -> list[Obj]:
    meta = cr["metadata"]
    return ctx.cache.with_labels(
        "pods", meta["namespace"], selector(cr["kind"], meta["name"], build.COMPONENT)
    )


def executor_url(ctx: Context, cr: Obj) -> str:
    """Base URL of the service's executor API (cluster IP of its Service), or '' when it has none."""
    si = ServiceInstance.model_validate(cr)
    entry = ctx.settings.services.get(si.spec.serviceType.value)
    if entry is None or entry.executor == "none" or not entry.executorPort:
        return ""
    name = build.service(ctx.settings, cr)["metadata"]["name"]
    service = ctx.cache.get("services", cr["metadata"]["namespace"], name) or ctx.api.get(
        kube.SERVICES, cr["metadata"]["namespace"], name
    )
    ip = (service or {}).get("spec", {}).get("clusterIP", "")
    return f"http://{ip}:{entry.executorPort}" if ip and ip != "None" else ""


def stop(ctx: Context, cr: Obj, reason: str, message: str) -> Obj:
    """Stop a service on the operator's own initiative (culling, schedule): spec.running false."""
    ctx.event(cr, "Normal", reason, message)
    return ctx.patch_object(
        PLURAL,
        cr,
        {"metadata": {"annotations": {STOP_REASON_ANNOTATION: reason}}, "spec": {"running": False}},
    )


def reconcile(ctx: Context, key: WorkKey) -> float | None:
    cr = ctx.cache.get(PLURAL, key.namespace, key.name)
    if cr is None or cr["metadata"].get("deletionTimestamp"):
        ctx.reports.forget(key)
        return None
    si = ServiceInstance.model_validate(cr)
    meta = cr["metadata"]
    generation = int(meta.get("generation", 0))
    status = copy_status(cr)
    status["observedGeneration"] = generation
    conditions = ConditionSet(status.get("conditions"), generation)
    acks = ctx.reports.acks(key)
    status["actions"] = actions.update(cr, status.get("actions") or {}, acks)
    report = ctx.reports.latest(key)
    if isinstance(report, ServiceReport):
        if report.lastActivityTime is not None:
            status["lastActivityTime"] = report.lastActivityTime.strftime("%Y-%m-%dT%H:%M:%SZ")
        if report.installedVersion:
            status.setdefault("version", {})["installed"] = report.installedVersion
    try:
        entry = build.catalog_entry(ctx.settings, si)
        model = si.spec.models[0] if si.spec.models else ctx.settings.defaultGeneratorModel
        config = build.worker_config(ctx.settings, cr, model)
        restart = (status["actions"].get("restart") or {}).get("requestedNonce", "")
        replicas = 1 if si.spec.running else 0
        desired = build.deployment(ctx.settings, cr, replicas=replicas, restart_nonce=restart)
    except ValueError as error:
        status["phase"] = "Error"
        conditions.set(T.DEGRADED, True, R.INVALID_SPEC, str(error))
        conditions.set(T.AVAILABLE, False, R.INVALID_SPEC, str(error))
        status["conditions"] = conditions.to_list()
        ctx.write_status(PLURAL, cr, status)
        return None
    ctx.ensure_worker_account(key.namespace)
    ctx.ensure_secret(cr, config)
    deployment = ctx.api.ensure(
        kube.DEPLOYMENTS,
        desired,
        build.deployment_drift,
        existing=ctx.cache.get("deployments", key.namespace, desired["metadata"]["name"]),
        likely_absent=True,
    )
    ctx.cache.upsert("deployments", deployment)
    wanted_service = build.service(ctx.settings, cr)
    service = ctx.api.ensure(
        kube.SERVICES,
        wanted_service,
        existing=ctx.cache.get("services", key.namespace, wanted_service["metadata"]["name"]),
        likely_absent=True,
    )
    ctx.cache.upsert("services", service)
    every_pod = service_pods(ctx, cr)
    pods = [p for p in every_pod if not p["metadata"].get("deletionTimestamp")]
    view = podstate.view(pods)
    ip = service.get("spec", {}).get("clusterIP", "")
    ports = build.ports(si, entry)
    status["endpoint"] = f"http://{ip}:{ports[0][1]}" if ip and ports else ""
    status["podName"] = view.pod_name
    status["restartCount"] = view.restart_count
    if view.last_exit_code is not None:
        status["lastExitCode"] = view.last_exit_code
    installed = (
        si.spec.version or desired["spec"]["template"]["spec"]["containers"][0]["image"].rpartition(":")[2]
    )
    version = status.setdefault("version", {})
    version.setdefault("installed", installed)
    if si.spec.version:
        version["installed"] = si.spec.version
    version["latest"] = entry.latestVersion or version.get("installed", "")
    version["updateAvailable"] = bool(entry.latestVersion) and entry.latestVersion != version.get("installed")
    status["queue"], activity = _queue(ctx, cr)
    if activity and activity > str(status.get("lastActivityTime") or ""):
        status["lastActivityTime"] = activity
    # A stopped service is Stopping until its last pod is gone, terminating ones included: their
    # processes may still run through the grace period (ControlPilot's STOPPED means none runs).
    requeue = _phase(
        ctx, cr, si, status, conditions, view, deployment, every_pod if not si.spec.running else pods
    )
    restart_state = status["actions"].get("restart") or {}
    if restart_state.get("state") == "Pending" and status.get("phase") == "Running":
        # Done once the ready pod is one made from the template that carries this nonce.
        newest = podstate.newest(pods) or {}
        rolled = (newest.get("metadata", {}).get("annotations") or {}).get(RESTART_ANNOTATION) == restart
        if rolled and view.ready:
            actions.complete(status["actions"], "restart", True, f"restarted: pod {view.pod_name}")
    if not status["actions"]:
        status.pop("actions")
    status["conditions"] = conditions.to_list()
    ctx.write_status(PLURAL, cr, status)
    if acks:
        ctx.reports.recorded(key, acks)
    if si.spec.running and STOP_REASON_ANNOTATION in (meta.get("annotations") or {}):
        ctx.patch_object(PLURAL, cr, {"metadata": {"annotations": {STOP_REASON_ANNOTATION: None}}})
    culled, due = _cull(ctx, cr, si, status)
    if culled:
        return 1.0
    return min(filter(None, [requeue, due]), default=None)


def _queue(ctx: Context, cr: Obj) -> tuple[Obj, str]:
    """Jobs on this service by phase, and the latest job activity (a job counts as activity)."""
    name = cr["metadata"]["name"]
    jobs = [
        j
        for j in ctx.cache.all("generationjobs", cr["metadata"]["namespace"])
        if (j.get("status") or {}).get("assignedService") == name
    ]
    phases = [(j.get("status") or {}).get("phase") for j in jobs]
    moments = [
        str(moment)
        for j in jobs
        for moment in (j["metadata"].get("creationTimestamp"), (j.get("status") or {}).get("completedAt"))
        if moment
    ]
    return {"pending": phases.count("Pending"), "running": phases.count("Processing")}, max(
        moments, default=""
    )


def _phase(
    ctx: Context,
    cr: Obj,
    si: ServiceInstance,
    status: Obj,
    conditions: ConditionSet,
    view: podstate.PodView,
    deployment: Obj,
    pods: list[Obj],
) -> float | None:
    stop_reason = (cr["metadata"].get("annotations") or {}).get(STOP_REASON_ANNOTATION, "")
    if not si.spec.running:
        reason = stop_reason or R.STOPPED_BY_USER.value
        status["phase"] = "Stopping" if pods else "Stopped"
        status["ready"] = False
        conditions.set(T.AVAILABLE, False, reason, "stopped" if not pods else "stopping")
        conditions.set(T.WORKLOAD_READY, False, R.STOPPED, "no pod runs while stopped")
        conditions.remove(T.DEGRADED)
        status.pop("startedAt", None)
        return 2.0 if pods else None
    ctx.orchestration(conditions, view, "ServiceInstance")
    status["ready"] = view.ready
    if view.failing:
        status["phase"] = "Error"
        conditions.set(T.DEGRADED, True, view.reason, view.message)
        conditions.set(T.AVAILABLE, False, view.reason, view.message)
        return 5.0
    conditions.remove(T.DEGRADED)
    if view.ready:
        status["phase"] = "Running"
        status.setdefault("startedAt", timestamp())
        conditions.set(T.AVAILABLE, True, R.ENDPOINT_READY, f"{status.get('endpoint')} answers")
        return None
    status["phase"] = "Starting"
    conditions.set(T.AVAILABLE, False, R.ENDPOINT_NOT_READY, view.message)
    return 5.0


def _cull(ctx: Context, cr: Obj, si: ServiceInstance, status: Obj) -> tuple[bool, float | None]:
    """Stop a running service that idled or ran past its maximum.

    Returns whether it did, and otherwise the seconds until the next check is due.
    """
    if not si.spec.running or status.get("phase") != "Running":
        return False, None
    now = datetime.now(UTC)
    started = parse_time(status.get("startedAt"))
    if started is None:
        return False, None
    due: list[float] = []
    if si.spec.maxDurationSeconds:
        left = si.spec.maxDurationSeconds - (now - started).total_seconds()
        if left <= 0:
            message = f"stopped after running {si.spec.maxDurationSeconds}s (maxDurationSeconds)"
            stop(ctx, cr, R.MAX_DURATION.value, message)
            return True, None
        due.append(left)
    if si.spec.idleTimeoutSeconds:
        busy = status["queue"]["pending"] or status["queue"]["running"]
        last = parse_time(status.get("lastActivityTime"))
        activity = max(started, last) if last else started
        left = si.spec.idleTimeoutSeconds - (now - activity).total_seconds()
        if not busy and left <= 0:
            stop(
                ctx, cr, R.IDLE_TIMEOUT.value, f"stopped after {si.spec.idleTimeoutSeconds}s without activity"
            )
            return True, None
        due.append(max(left, 1.0) if not busy else RUNNING_REQUEUE)
    return False, (min(min(due), RUNNING_REQUEUE) if due else None)
