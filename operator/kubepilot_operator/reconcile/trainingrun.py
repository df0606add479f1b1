"""TrainingRun: dependencies, the trainer Job, actions, stop/suspend, and publishing the LoRA.

Pull → train → generate closes here: a finished run's final LoRA is published into the models
volume's ``loras/`` folder through the content-addressed store ModelPulls use, and its path is
``status.publishedModel``, which GenerationJobs and services use like any pulled LoRA.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.conditions import ConditionType as T
from kubepilot_api.trainingrun import TrainerKind, TrainingRun
from kubepilot_api.workers.progress import TrainingReport, WorkState
from kubepilot_operator import kube
from kubepilot_operator.builders import trainingrun as build
from kubepilot_operator.builders.common import job_drift
from kubepilot_operator.conditions import ConditionSet, timestamp
from kubepilot_operator.reconcile import actions, podstate
from kubepilot_operator.reconcile.context import Context, copy_status
from kubepilot_operator.reconcile.dependencies import Unresolved, pulled_path
from kubepilot_operator.reconcile.storage import inside, publish
from kubepilot_operator.workqueue import WorkKey

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PLURAL = build.PLURAL
TERMINAL = {"Succeeded", "Failed", "Stopped"}
SPEC_STOP_NONCE = "spec.stop"
PROGRESS_REQUEUE = 10.0
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
"""What the built-in trainer reads as images (``kubepilot_workers.trainer.dataset``)."""
DATASET_SCAN_LIMIT = 10_000
"""Entries looked at before a dataset folder is taken as holding data (a huge folder is not empty)."""


def _has_training_files(folder: Path, images_only: bool) -> bool:
    """Whether the dataset folder holds anything to train on: an image (the built-in trainer) or any
    file (the other trainers, whose datasets may hold videos or configs). Bounded: a folder with
    more entries than the limit is taken as holding data."""
    seen = 0
    for _root, _dirs, files in os.walk(folder, followlinks=True):
        for name in files:
            if not images_only or Path(name).suffix.lower() in IMAGE_SUFFIXES:
                return True
        seen += len(files) + 1
        if seen > DATASET_SCAN_LIMIT:
            return True
    return False


def reconcile(ctx: Context, key: WorkKey) -> float | None:
    cr = ctx.cache.get(PLURAL, key.namespace, key.name)
    if cr is None or cr["metadata"].get("deletionTimestamp"):
        ctx.reports.forget(key)
        ctx.metrics.forget_training(key.namespace, key.name)
        return None
    run = TrainingRun.model_validate(cr)
    generation = int(cr["metadata"].get("generation", 0))
    status = copy_status(cr)
    status["observedGeneration"] = generation
    status["outputDir"] = build.output_dir(run)
    conditions = ConditionSet(status.get("conditions"), generation)
    acks = ctx.reports.acks(key)
    status["actions"] = actions.update(cr, status.get("actions") or {}, acks)
    if run.spec.stop and "stop" not in status["actions"]:
        status["actions"]["stop"] = {
            "requestedNonce": SPEC_STOP_NONCE,
            "state": "Pending",
            "requestedAt": timestamp(),
        }
    job_name = build.job(ctx.settings, cr, suspend=False)["metadata"]["name"]
    job = ctx.cache.get("jobs", key.namespace, job_name)
    pods = ctx.cache.owned("pods", job["metadata"]["uid"]) if job else []
    view = podstate.view(pods)
    report = ctx.report(key, view.final_report, cr)
    train_report = report if isinstance(report, TrainingReport) else None
    _apply_report(ctx, key, status, train_report)
    requeue: float | None = None
    if status.get("phase") not in TERMINAL:
        requeue = _drive(ctx, cr, run, status, conditions, job, view, train_report)
    if status.get("phase") in TERMINAL:
        _publish(ctx, run, status, conditions)
        conditions.set(T.WORKLOAD_READY, False, R.COMPLETED, "the trainer finished")
    pending = [name for name, state in status["actions"].items() if state.get("state") == "Pending"]
    if pending and status.get("phase") not in TERMINAL:
        conditions.set(
            T.ACTION_PENDING,
            True,
            R.ACTION_REQUESTED,
            f"waiting for the trainer: {', '.join(sorted(pending))}",
        )
    elif conditions.get(T.ACTION_PENDING) is not None:
        conditions.set(T.ACTION_PENDING, False, R.ACTION_ACKNOWLEDGED, "no action pending")
    if not status["actions"]:
        status.pop("actions")
    status["jobName"] = job_name if job is not None else status.get("jobName", "")
    status["conditions"] = conditions.to_list()
    ctx.write_status(PLURAL, cr, status)
    if acks:
        ctx.reports.recorded(key, acks)
    return requeue


def _apply_report(ctx: Context, key: WorkKey, status: Obj, report: TrainingReport | None) -> None:
    if report is None:
        return
    if report.progress is not None:
        status["progress"] = report.progress.to_dict()
        ctx.metrics.training_step.labels(key.namespace, key.name).set(report.progress.step)
        if report.progress.loss is not None:
            ctx.metrics.training_loss.labels(key.namespace, key.name).set(report.progress.loss)
    if report.metrics:
        status["metrics"] = dict(report.metrics)
    if report.checkpoints:
        status["checkpoints"] = [c.to_dict() for c in report.checkpoints[-20:]]
    if report.samples is not None:
        status["samples"] = report.samples.to_dict()
    if report.sampling is not None:
        status["sampling"] = report.sampling.to_dict()
    else:
        status.pop("sampling", None)
    if report.logFile:
        status["logFile"] = report.logFile
    if report.outputs:
        status["outputs"] = [o.to_dict() for o in report.outputs[:50]]
    if report.exitCode is not None:
        status["exitCode"] = report.exitCode


def _base_model(ctx: Context, cr: Obj, run: TrainingRun) -> str:
    reference = run.spec.baseModel
    if reference.modelPullRef is not None:
        return pulled_path(ctx, cr["metadata"]["namespace"], reference.modelPullRef.name)
    return reference.path or ""


def _drive(
    ctx: Context,
    cr: Obj,
    run: TrainingRun,
    status: Obj,
    conditions: ConditionSet,
    job: Obj | None,
    view: podstate.PodView,
    report: TrainingReport | None,
) -> float | None:
    namespace = cr["metadata"]["namespace"]
    status.setdefault("phase", "Pending")
    if job is None:
        try:
            base = _base_model(ctx, cr, run)
        except Unresolved as waiting:
            conditions.set(T.DEPENDENCIES_READY, False, waiting.reason, str(waiting))
            if waiting.failed:
                return _failed(status, conditions, R.DEPENDENCY_FAILED.value, str(waiting))
            return 5.0
        models = ctx.settings.storage.models.local()
        if models is not None and base and not (models / base).exists():
            message = f"base model {base!r} is not on the models volume; pull or copy it there"
            conditions.set(T.DEPENDENCIES_READY, False, R.WAITING_FOR_MODEL, message)
            return 5.0
        datasets = ctx.settings.storage.datasets.local()
        if datasets is not None:
            folder = inside(datasets, run.spec.dataset.path)
            if folder is None or not folder.is_dir():
                message = f"dataset folder {run.spec.dataset.path!r} does not exist on the datasets volume"
                conditions.set(T.DEPENDENCIES_READY, False, R.WAITING_FOR_DATASET, message)
                return 5.0
            images_only = run.spec.trainer is TrainerKind.KUBEPILOT_LORA
            if not _has_training_files(folder, images_only=images_only):
                what = f"images ({', '.join(sorted(IMAGE_SUFFIXES))})" if images_only else "files"
                message = (
                    f"dataset folder {run.spec.dataset.path!r} holds no {what}; add some and the run starts"
                )
                conditions.set(T.DEPENDENCIES_READY, False, R.WAITING_FOR_DATASET, message)
                return 5.0
        conditions.set(T.DEPENDENCIES_READY, True, R.COMPLETED, f"base model {base} and dataset are ready")
    else:
        base = _base_model(ctx, cr, run)
    master = ""
    if run.spec.workers > 1:
        wanted = build.rendezvous_service(ctx.settings, cr)
        cached = ctx.cache.get("services", namespace, wanted["metadata"]["name"])
        service = ctx.api.ensure(kube.SERVICES, wanted, existing=cached, likely_absent=True)
        ctx.cache.upsert("services", service)
        master = str(service.get("spec", {}).get("clusterIP", ""))
    ctx.ensure_worker_account(namespace)
    ctx.ensure_secret(cr, build.trainer_config(ctx.settings, cr, base))
    desired = build.job(ctx.settings, cr, suspend=run.spec.suspend, master_addr=master)
    job = ctx.api.ensure(kube.JOBS, desired, job_drift, existing=job, likely_absent=job is None)
    ctx.cache.upsert("jobs", job)
    jv = podstate.job_view(job)
    if report is not None and report.final:
        if jv.complete or jv.failed or not jv.active:
            return _final(ctx, status, conditions, report)
        return 1.0  # rank 0 is done; the other ranks are finishing: no phase change meanwhile
    if jv.complete:
        return _failed(
            status, conditions, R.TRAINING_FAILED.value, "the trainer exited without a final report"
        )
    if jv.failed:
        message = jv.message or "the trainer failed"
        ctx.metrics.child_failures.labels("TrainingRun", jv.reason).inc()
        return _failed(status, conditions, jv.reason, message)
    if run.spec.suspend:
        status["phase"] = "Suspended"
        conditions.set(T.SUSPENDED, True, R.SUSPENDED, "suspended: no pod runs")
        conditions.set(T.PROGRESSING, False, R.SUSPENDED, "suspended")
        return None
    if conditions.get(T.SUSPENDED) is not None:
        conditions.set(T.SUSPENDED, False, R.RUNNING, "resumed")
    ctx.orchestration(conditions, view, "TrainingRun")
    if run.spec.stop:
        status["phase"] = "Stopping"
        conditions.set(T.STOP_REQUESTED, True, R.STOPPED_BY_USER, "saving, then stopping")
        return 2.0
    if report is not None and report.state is WorkState.RUNNING:
        status["phase"] = "Running"
        status.setdefault("startedAt", timestamp())
        conditions.set(T.PROGRESSING, True, R.RUNNING, report.message or "training")
        return PROGRESS_REQUEUE
    status["phase"] = "Starting" if view.running or view.failing else status["phase"]
    return PROGRESS_REQUEUE


def _final(ctx: Context, status: Obj, conditions: ConditionSet, report: TrainingReport) -> float | None:
    status["completedAt"] = status.get("completedAt") or timestamp()
    if report.state is WorkState.SUCCEEDED:
        status["phase"] = "Succeeded"
        conditions.set(T.SUCCEEDED, True, R.COMPLETED, report.message or "training finished")
        conditions.set(T.PROGRESSING, False, R.COMPLETED, "finished")
        return None
    if report.state in (WorkState.STOPPED, WorkState.CANCELLED):
        status["phase"] = "Stopped"
        conditions.set(T.STOP_REQUESTED, True, R.STOPPED, report.message or "stopped")
        conditions.set(T.PROGRESSING, False, R.STOPPED, "stopped")
        return None
    error = report.error.to_dict() if report.error else {"code": "TRAINING_FAILED", "message": report.message}
    status["error"] = error
    return _failed(
        status, conditions, R.TRAINING_FAILED.value, f"{error['code']}: {error.get('message', '')}"
    )


def _failed(status: Obj, conditions: ConditionSet, reason: str, message: str) -> float | None:
    status["phase"] = "Failed"
    status["completedAt"] = status.get("completedAt") or timestamp()
    status.setdefault("error", {"code": reason.upper(), "message": message[:4096]})
    conditions.set(T.FAILED, True, reason, message)
    conditions.set(T.PROGRESSING, False, reason, message)
    return None


def _publish(ctx: Context, run: TrainingRun, status: Obj, conditions: ConditionSet) -> None:
    """Publish the final LoRA into ``loras/`` once (idempotent: same bytes, same path)."""
    if status.get("publishedModel") or status.get("phase") == "Failed":
        return
    finals = [o for o in status.get("outputs") or [] if str(o.get("path", "")).endswith(".safetensors")]
    models, outputs = ctx.settings.storage.models.local(), ctx.settings.storage.outputs.local()
    if not finals or models is None or outputs is None:
        return
    final = max(finals, key=lambda o: int(o.get("step", 0)))
    source = inside(outputs, str(final["path"]))
    if source is None or not source.is_file():
        conditions.set(T.READY, False, R.NOT_FOUND, f"final output {final['path']} is missing")
        return
    target = f"loras/{run.spec.output.name}.safetensors"
    digest = publish(models, source, target)
    status["publishedModel"] = target
    conditions.set(T.READY, True, R.COMPLETED, f"LoRA published as {target} (sha256 {digest[:12]})")
