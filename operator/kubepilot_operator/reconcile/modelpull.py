"""ModelPull: finalizer, credentials check, shared pulls, pause/resume, cancel, the downloader Job."""

from __future__ import annotations

import json
import logging
from typing import Any

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.conditions import ConditionType as T
from kubepilot_api.modelpull import ModelPull
from kubepilot_api.workers.progress import DownloadReport, WorkState
from kubepilot_operator import kube
from kubepilot_operator.builders import modelpull as build
from kubepilot_operator.builders.common import job_drift
from kubepilot_operator.conditions import ConditionSet, timestamp
from kubepilot_operator.naming import FINALIZER
from kubepilot_operator.reconcile import podstate
from kubepilot_operator.reconcile.context import Context, copy_status
from kubepilot_operator.reconcile.storage import remove_files
from kubepilot_operator.workqueue import WorkKey

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PLURAL = build.PLURAL
TERMINAL = {"Completed", "Failed", "Cancelled"}
PROGRESS_REQUEUE = 10.0


def identity(ctx: Context, cr: Obj) -> str:
    """What makes two pulls the same files: source, destination and (for PVCs) the namespace."""
    spec = cr.get("spec") or {}
    scope = "" if ctx.settings.storage.models.shared_across_namespaces else cr["metadata"]["namespace"]
    return json.dumps([scope, spec.get("source"), spec.get("destination")], sort_keys=True)


def _live(cr: Obj) -> bool:
    status = cr.get("status") or {}
    spec = cr.get("spec") or {}
    return (
        not cr["metadata"].get("deletionTimestamp")
        and not spec.get("cancel")
        and status.get("phase")
        not in (
            "Failed",
            "Cancelled",
        )
    )


def leader(ctx: Context, cr: Obj) -> Obj:
    """The oldest live pull of the same files: it downloads, the others complete from it."""
    mine = identity(ctx, cr)
    same = [other for other in ctx.cache.all(PLURAL) if _live(other) and identity(ctx, other) == mine]
    if not same:
        return cr
    return min(same, key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]))


def held_elsewhere(ctx: Context, cr: Obj) -> set[str]:
    """Files listed by any other ModelPull that still exists (deleting this one keeps them)."""
    held: set[str] = set()
    uid = cr["metadata"]["uid"]
    for other in ctx.cache.all(PLURAL):
        if other["metadata"]["uid"] == uid or other["metadata"].get("deletionTimestamp"):
            continue
        held.update(str(f.get("path")) for f in (other.get("status") or {}).get("files") or [])
    return held


def _finalize(ctx: Context, key: WorkKey, cr: Obj) -> None:
    finalizers = list(cr["metadata"].get("finalizers") or [])
    if FINALIZER not in finalizers:
        return
    status = copy_status(cr)
    pull = ModelPull.model_validate(cr)
    conditions = ConditionSet(status.get("conditions"), cr["metadata"].get("generation", 0))
    root = ctx.settings.storage.models.local()
    files = [str(f.get("path")) for f in status.get("files") or []]
    if pull.spec.deletePolicy.value == "Retain" or not files:
        conditions.set(
            T.REMOVED, False, R.FILES_RETAINED, "files kept in the models store (deletePolicy Retain)"
        )
    elif root is None:
        conditions.set(T.REMOVED, False, R.FILES_RETAINED, "the operator has no access to the models volume")
    else:
        status["removal"] = remove_files(root, files, held_elsewhere(ctx, cr))
        removal = status["removal"]
        conditions.set(
            T.REMOVED,
            True,
            R.FILES_REMOVED,
            f"{removal['filesRemoved']} files removed, "
            f"{removal['filesKept']} kept (held by another ModelPull)",
        )
    status["phase"] = "Removing"
    status["conditions"] = conditions.to_list()
    updated = ctx.write_status(PLURAL, cr, status)
    ctx.remove_finalizer(PLURAL, updated, FINALIZER)
    ctx.reports.forget(key)


def _apply_report(status: Obj, report: DownloadReport | None) -> None:
    if report is None:
        return
    if report.progress is not None:
        status["progress"] = report.progress.to_dict()
    if report.resolvedRevision:
        status["resolvedRevision"] = report.resolvedRevision
    if report.files:
        status["files"] = [f.to_dict() for f in report.files[:200]]
    if report.error is not None:
        status["error"] = report.error.to_dict()


def reconcile(ctx: Context, key: WorkKey) -> float | None:
    cr = ctx.cache.get(PLURAL, key.namespace, key.name)
    if cr is None:
        ctx.reports.forget(key)
        return None
    if cr["metadata"].get("deletionTimestamp"):
        _finalize(ctx, key, cr)
        return None
    if FINALIZER not in (cr["metadata"].get("finalizers") or []):
        cr = ctx.patch_object(
            PLURAL, cr, {"metadata": {"finalizers": [*(cr["metadata"].get("finalizers") or []), FINALIZER]}}
        )
    pull = ModelPull.model_validate(cr)
    meta = cr["metadata"]
    generation = int(meta.get("generation", 0))
    status = copy_status(cr)
    status["observedGeneration"] = generation
    conditions = ConditionSet(status.get("conditions"), generation)
    job_name = build.job(ctx.settings, cr, suspend=False)["metadata"]["name"]
    job = ctx.cache.get("jobs", key.namespace, job_name)
    pods = ctx.cache.owned("pods", job["metadata"]["uid"]) if job else []
    pods_view = podstate.view(pods)
    jv = podstate.job_view(job)
    report = ctx.report(key, pods_view.final_report, cr)
    download_report = report if isinstance(report, DownloadReport) else None
    _apply_report(status, download_report)
    if download_report and download_report.progress:
        ctx.metrics.downloaded(key.namespace, key.name, download_report.progress.bytesDone)
    requeue: float | None = None
    phase = status.get("phase", "Pending")

    if phase in TERMINAL:
        # A cancelled pull keeps no Job: also one that finished on its own after the cancel (a
        # download that was done by then) or whose first deletion did not take.
        if job is not None and pull.spec.cancel and not job["metadata"].get("deletionTimestamp"):
            ctx.api.delete(kube.JOBS, key.namespace, job_name, propagation="Foreground")
    elif pull.spec.cancel:
        if job is not None:
            ctx.api.delete(kube.JOBS, key.namespace, job_name, propagation="Foreground")
        phase = "Cancelled"
        conditions.set(T.CANCELLED, True, R.USER_CANCELLED, "cancelled by the user")
        conditions.set(T.PROGRESSING, False, R.USER_CANCELLED, "cancelled")
        status["completedAt"] = timestamp()
    else:
        phase, requeue = _drive(ctx, cr, pull, status, conditions, job, jv, pods_view, download_report)
    status["phase"] = phase
    status["jobName"] = (
        job_name if job is not None or phase in ("Downloading", "Paused") else status.get("jobName", "")
    )
    if status.get("files") and phase == "Completed":
        status["installedSizeBytes"] = sum(max(0, int(f.get("sizeBytes", 0))) for f in status["files"])
    status["conditions"] = conditions.to_list()
    ctx.write_status(PLURAL, cr, status)
    acks = ctx.reports.acks(key)
    if acks:
        ctx.reports.recorded(key, acks)
    return requeue


def _credentials_missing(ctx: Context, cr: Obj, pull: ModelPull) -> str:
    ref = pull.spec.credentialsSecretRef
    if ref is None:
        return ""
    secret = ctx.api.get(kube.SECRETS, cr["metadata"]["namespace"], ref.name)
    if secret is None:
        return f"Secret {ref.name!r} does not exist"
    if ref.key not in (secret.get("data") or {}) and ref.key not in (secret.get("stringData") or {}):
        return f"Secret {ref.name!r} has no key {ref.key!r}"
    return ""


def _drive(
    ctx: Context,
    cr: Obj,
    pull: ModelPull,
    status: Obj,
    conditions: ConditionSet,
    job: Obj | None,
    jv: podstate.JobView,
    pods_view: podstate.PodView,
    report: DownloadReport | None,
) -> tuple[str, float | None]:
    """Phase and requeue of a pull that is neither finished nor cancelled."""
    namespace = cr["metadata"]["namespace"]
    if job is None:
        first = leader(ctx, cr)
        if first["metadata"]["uid"] != cr["metadata"]["uid"]:
            return _follow(status, conditions, first)
        missing = _credentials_missing(ctx, cr, pull)
        if missing:
            conditions.set(T.READY, False, R.SECRET_NOT_FOUND, missing)
            conditions.set(T.PROGRESSING, False, R.SECRET_NOT_FOUND, missing)
            return "Pending", 10.0
        conditions.remove(T.READY)
    ctx.ensure_worker_account(namespace)
    ctx.ensure_secret(cr, build.downloader_config(ctx.settings, cr))
    desired = build.job(ctx.settings, cr, suspend=pull.spec.paused)
    job = ctx.api.ensure(kube.JOBS, desired, job_drift, existing=job, likely_absent=job is None)
    ctx.cache.upsert("jobs", job)
    if jv.complete:
        if report is not None and report.state is WorkState.SUCCEEDED:
            conditions.set(T.READY, True, R.COMPLETED, f"{len(status.get('files') or [])} files verified")
            conditions.set(T.PROGRESSING, False, R.COMPLETED, "download complete")
            conditions.set(T.WORKLOAD_READY, False, R.COMPLETED, "the downloader finished")
            status.setdefault("completedAt", timestamp())
            status.pop("error", None)
            return "Completed", None
        # Exit 0 without a success report: the pod stopped (pause, cancel) or the report was lost.
        message = report.message if report else "the downloader exited without a final report"
        code = report.error.code if report and report.error else "NO_FINAL_REPORT"
        status["error"] = {"code": code, "message": message}
        conditions.set(T.FAILED, True, R.DOWNLOAD_FAILED, message)
        return "Failed", None
    if jv.failed:
        reason = jv.reason
        message = jv.message
        if report is not None and report.error is not None:
            reason, message = _reason_for(report.error.code), f"{report.error.code}: {report.error.message}"
        status["error"] = {
            "code": (report.error.code if report and report.error else reason.upper()),
            "message": message,
        }
        conditions.set(T.FAILED, True, reason, message)
        conditions.set(T.PROGRESSING, False, reason, message)
        status["completedAt"] = timestamp()
        ctx.metrics.child_failures.labels("ModelPull", reason).inc()
        return "Failed", None
    if pull.spec.paused:
        conditions.set(T.SUSPENDED, True, R.PAUSED, "paused: partial files are kept for resume")
        conditions.set(T.PROGRESSING, False, R.PAUSED, "paused")
        return "Paused", None
    if conditions.get(T.SUSPENDED) is not None:
        conditions.set(T.SUSPENDED, False, R.RUNNING, "resumed")
    ctx.orchestration(conditions, pods_view, "ModelPull")
    # Once started, a pull stays Downloading until its Job says how it ended (no flicker to Pending
    # between the pod's exit and the Job's completion).
    if pods_view.running or report is not None or status.get("startedAt"):
        status.setdefault("startedAt", timestamp())
        conditions.set(
            T.PROGRESSING, True, R.RUNNING, report.message if report and report.message else "downloading"
        )
        return "Downloading", PROGRESS_REQUEUE
    return "Pending", PROGRESS_REQUEUE


def _follow(status: Obj, conditions: ConditionSet, first: Obj) -> tuple[str, float | None]:
    name = first["metadata"]["name"]
    other = first.get("status") or {}
    if other.get("phase") == "Completed":
        for field in ("files", "resolvedRevision", "progress", "installedSizeBytes"):
            if field in other:
                status[field] = other[field]
        conditions.set(T.READY, True, R.SHARED_FILES, f"the files are shared with ModelPull {name}")
        conditions.set(T.PROGRESSING, False, R.SHARED_FILES, f"completed from ModelPull {name}")
        status.setdefault("completedAt", timestamp())
        return "Completed", None
    message = f"ModelPull {name} is downloading the same files; this one completes from it"
    conditions.set(T.PROGRESSING, False, R.WAITING_FOR_SHARED_PULL, message)
    if "progress" in other:
        status["progress"] = other["progress"]
    return "Pending", 5.0


def _reason_for(code: str) -> str:
    return {
        "AUTHENTICATION_FAILED": R.AUTHENTICATION_FAILED.value,
        "ACCESS_DENIED": R.AUTHENTICATION_FAILED.value,
        # The downloader reports MODEL_NOT_FOUND (no such repository, file or pattern match).
        "MODEL_NOT_FOUND": R.NOT_FOUND.value,
        "NOT_FOUND": R.NOT_FOUND.value,
        "CHECKSUM_MISMATCH": R.CHECKSUM_MISMATCH.value,
        "INSUFFICIENT_STORAGE": R.INSUFFICIENT_STORAGE.value,
    }.get(code, R.DOWNLOAD_FAILED.value)
