"""GenerationJob: the operator is the scheduler (DESIGN §3).

A job goes to a Running ServiceInstance that executes jobs and serves its model (least queued
first), or to the one it names (started first when ``autoStartService`` asks), or else to a
one-shot generator Job. Dispatch is idempotent by the job's uid; a service that dies or forgets
the job gets it again; cancel leaves the queue or interrupts the backend.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.conditions import ConditionType as T
from kubepilot_api.generationjob import GenerationJob, GenerationType
from kubepilot_api.workers.executor import JOBS_PATH, ExecutorJob
from kubepilot_api.workers.progress import GenerationReport, WorkState
from kubepilot_api.workers.workflow import WorkflowError, translate
from kubepilot_operator import kube
from kubepilot_operator.builders import generationjob as build
from kubepilot_operator.builders.common import inputs_dir, job_drift, report_url
from kubepilot_operator.conditions import ConditionSet, timestamp
from kubepilot_operator.naming import FINALIZER
from kubepilot_operator.reconcile import podstate
from kubepilot_operator.reconcile.context import Context, copy_status
from kubepilot_operator.reconcile.dependencies import Unresolved, resolve_loras, resolve_model
from kubepilot_operator.reconcile.serviceinstance import executor_url, parse_time
from kubepilot_operator.reconcile.storage import inside
from kubepilot_operator.workqueue import WorkKey

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PLURAL = build.PLURAL
TERMINAL = {"Completed", "Failed", "Cancelled"}
EXECUTOR_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
POLL_SECONDS = 5.0

_http = httpx.Client(timeout=EXECUTOR_TIMEOUT, transport=httpx.HTTPTransport(retries=2))


def reconcile(ctx: Context, key: WorkKey) -> float | None:
    cr = ctx.cache.get(PLURAL, key.namespace, key.name)
    if cr is None:
        ctx.reports.forget(key)
        return None
    job = GenerationJob.model_validate(cr)
    finalizers = list(cr["metadata"].get("finalizers") or [])
    if cr["metadata"].get("deletionTimestamp"):
        if FINALIZER in finalizers:
            _remove_outputs(ctx, cr)
        ctx.reports.forget(key)
        return None
    if not job.spec.retainFilesOnDelete and FINALIZER not in finalizers:
        cr = ctx.patch_object(PLURAL, cr, {"metadata": {"finalizers": [*finalizers, FINALIZER]}})
    generation = int(cr["metadata"].get("generation", 0))
    status = copy_status(cr)
    status["observedGeneration"] = generation
    conditions = ConditionSet(status.get("conditions"), generation)
    if status.get("phase") in TERMINAL:
        return _expire(ctx, cr, job, status)
    oneshot = ctx.cache.get("jobs", key.namespace, status["jobName"]) if status.get("jobName") else None
    pods = ctx.cache.owned("pods", oneshot["metadata"]["uid"]) if oneshot else []
    view = podstate.view(pods)
    report = ctx.report(key, view.final_report, cr)
    gen_report = report if isinstance(report, GenerationReport) else None
    _apply_report(status, gen_report)
    requeue: float | None
    if gen_report is not None and gen_report.final:
        requeue = _finish(ctx, cr, status, conditions, gen_report)
    elif job.spec.cancel:
        requeue = _cancel(ctx, cr, job, status, conditions, oneshot)
    elif status.get("assignedService"):
        requeue = _follow_service(ctx, cr, status, conditions, gen_report)
    elif status.get("jobName"):
        requeue = _follow_oneshot(ctx, cr, status, conditions, view, oneshot, gen_report)
    else:
        requeue = _schedule(ctx, cr, job, status, conditions)
    status["conditions"] = conditions.to_list()
    ctx.write_status(PLURAL, cr, status)
    if status.get("phase") in TERMINAL:
        created = parse_time(cr["metadata"].get("creationTimestamp"))
        if created is not None and (cr.get("status") or {}).get("phase") not in TERMINAL:
            elapsed = (datetime.now(UTC) - created).total_seconds()
            ctx.metrics.generation_seconds.labels(job.spec.type.value).observe(elapsed)
        if job.spec.ttlSecondsAfterFinished is not None:
            return float(job.spec.ttlSecondsAfterFinished) + 0.5
    return requeue


def _remove_outputs(ctx: Context, cr: Obj) -> None:
    """``retainFilesOnDelete: false``: the job's image folder goes with it, then the finalizer."""
    outputs = ctx.settings.storage.outputs.local()
    folder = inside(outputs, build.output_dir(cr)) if outputs is not None else None
    if folder is not None and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    ctx.remove_finalizer(PLURAL, cr, FINALIZER)


def _expire(ctx: Context, cr: Obj, job: GenerationJob, status: Obj) -> float | None:
    """TTL cleanup of a finished job (the images stay on the outputs volume)."""
    ttl = job.spec.ttlSecondsAfterFinished
    finished = parse_time(status.get("completedAt"))
    if ttl is None or finished is None:
        return None
    left = ttl - (datetime.now(UTC) - finished).total_seconds()
    if left > 0:
        return left + 0.5
    ctx.api.delete(kube.custom(PLURAL), cr["metadata"]["namespace"], cr["metadata"]["name"])
    return None


def _apply_report(status: Obj, report: GenerationReport | None) -> None:
    if report is None:
        return
    if report.progress is not None:
        status["progress"] = report.progress.to_dict()
    if report.outputs:
        status["outputs"] = [o.to_dict() for o in report.outputs]
    if report.timings is not None:
        status["timings"] = report.timings.to_dict()
    if report.state is WorkState.RUNNING:
        status["phase"] = "Processing"
        status["queuePosition"] = 0
        status.setdefault("startedAt", timestamp())


def _finish(
    ctx: Context, cr: Obj, status: Obj, conditions: ConditionSet, report: GenerationReport
) -> float | None:
    status["completedAt"] = status.get("completedAt") or timestamp()
    status["queuePosition"] = -1
    outcome = {WorkState.SUCCEEDED: R.COMPLETED, WorkState.CANCELLED: R.USER_CANCELLED}.get(
        report.state, R.GENERATION_FAILED
    )
    conditions.set(T.PROGRESSING, False, outcome, report.message or report.state.value)
    if report.state is WorkState.SUCCEEDED:
        status["phase"] = "Completed"
        conditions.set(T.SUCCEEDED, True, R.COMPLETED, f"{len(status.get('outputs') or [])} images written")
    elif report.state in (WorkState.CANCELLED, WorkState.STOPPED):
        status["phase"] = "Cancelled"
        reason = (cr.get("spec") or {}).get("cancelReason", R.USER_CANCELLED.value)
        conditions.set(T.CANCELLED, True, reason, report.message or "cancelled")
    else:
        status["phase"] = "Failed"
        error = (
            report.error.to_dict()
            if report.error
            else {"code": "GENERATION_FAILED", "message": report.message}
        )
        status["error"] = error
        failure = R.NOT_FOUND if error["code"] == "MODEL_NOT_FOUND" else R.GENERATION_FAILED
        conditions.set(T.FAILED, True, failure, f"{error['code']}: {error.get('message', '')}")
    return None


def _cancel(
    ctx: Context, cr: Obj, job: GenerationJob, status: Obj, conditions: ConditionSet, oneshot: Obj | None
) -> float | None:
    reason = job.spec.cancelReason
    service = status.get("assignedService")
    if service:
        si = ctx.cache.get("serviceinstances", cr["metadata"]["namespace"], service)
        url = executor_url(ctx, si) if si else ""
        if url:
            try:
                response = _http.post(f"{url}{JOBS_PATH}/{cr['metadata']['uid']}/cancel")
                if response.status_code == 200:
                    remote = ExecutorJob.model_validate(response.json())
                    if remote.state.value in ("Queued", "Cancelled"):
                        return _cancelled(status, conditions, reason, f"removed from {service}'s queue")
                    conditions.set(T.PROGRESSING, True, reason, f"interrupting on {service}")
                    return 1.0  # the executor's final report ends it
                if response.status_code == 404:
                    return _cancelled(status, conditions, reason, "cancelled")
            except (httpx.HTTPError, ValueError, ValidationError) as error:
                log.info("cancel on %s: %s", service, error)
        return _cancelled(status, conditions, reason, f"cancelled; service {service} did not answer")
    if oneshot is not None:
        ctx.api.delete(
            kube.JOBS, cr["metadata"]["namespace"], oneshot["metadata"]["name"], propagation="Foreground"
        )
    return _cancelled(status, conditions, reason, "cancelled")


def _cancelled(status: Obj, conditions: ConditionSet, reason: str, message: str) -> float | None:
    status.update(phase="Cancelled", queuePosition=-1, completedAt=timestamp())
    conditions.set(T.CANCELLED, True, reason, message)
    conditions.set(T.PROGRESSING, False, reason, message)
    return None


def _candidates(ctx: Context, cr: Obj, model: str) -> list[Obj]:
    """Running, ready services that execute jobs and serve this model, least queued first.

    A workflow goes to ComfyUI services first; a graph the diffusers generator can translate also
    goes to running generator services (warm, so no one-shot pod start), whatever model they serve:
    the graph names its own checkpoint.
    """
    spec = cr.get("spec") or {}
    wants_workflow = spec.get("type") == "workflow"
    generator_can_run = wants_workflow and _translatable(ctx, spec.get("workflow") or {})
    comfy: list[Obj] = []
    result = []
    for si in ctx.cache.all("serviceinstances", cr["metadata"]["namespace"]):
        state = si.get("status") or {}
        if state.get("phase") != "Running" or not state.get("ready"):
            continue
        entry = ctx.settings.services.get(str((si.get("spec") or {}).get("serviceType")))
        if entry is None or entry.executor == "none":
            continue
        if entry.adapterBackend == "comfyui":
            if wants_workflow:
                comfy.append(si)
            continue
        if wants_workflow:
            if generator_can_run and entry.executor == "native":
                result.append(si)
            continue
        models = (si.get("spec") or {}).get("models") or []
        if model and models and model not in models:
            continue
        result.append(si)

    def load(si: Obj) -> tuple[int, str]:
        queue = (si.get("status") or {}).get("queue") or {}
        return int(queue.get("pending", 0)) + int(queue.get("running", 0)), si["metadata"]["name"]

    return sorted(comfy, key=load) + sorted(result, key=load)


def _translatable(ctx: Context, graph: Obj) -> bool:
    try:
        translate(graph, ctx.settings.storage.models.mountPath, inputs_root=inputs_dir(ctx.settings))
    except WorkflowError:
        return False
    return True


def _schedule(
    ctx: Context, cr: Obj, job: GenerationJob, status: Obj, conditions: ConditionSet
) -> float | None:
    status.setdefault("phase", "Pending")
    try:
        model = resolve_model(ctx, cr, job)
        loras = resolve_loras(ctx, cr, job)
    except Unresolved as waiting:
        conditions.set(T.DEPENDENCIES_READY, False, waiting.reason, str(waiting))
        if waiting.failed:
            status.update(
                phase="Failed",
                completedAt=timestamp(),
                error={"code": "DEPENDENCY_FAILED", "message": str(waiting)},
            )
            conditions.set(T.FAILED, True, R.DEPENDENCY_FAILED, str(waiting))
            return None
        return 5.0
    conditions.set(T.DEPENDENCIES_READY, True, R.COMPLETED, "model and LoRAs are available")
    request = build.request(ctx.settings, cr, model, loras)
    namespace = cr["metadata"]["namespace"]
    if job.spec.serviceRef is not None:
        si = ctx.cache.get("serviceinstances", namespace, job.spec.serviceRef.name)
        if si is None:
            conditions.set(
                T.SCHEDULED,
                False,
                R.WAITING_FOR_SERVICE,
                f"ServiceInstance {job.spec.serviceRef.name} does not exist",
            )
            return 5.0
        if not (si.get("spec") or {}).get("running") and job.spec.autoStartService:
            ctx.patch_object("serviceinstances", si, {"spec": {"running": True}})
        if (si.get("status") or {}).get("phase") != "Running" or not (si.get("status") or {}).get("ready"):
            conditions.set(
                T.SCHEDULED,
                False,
                R.WAITING_FOR_SERVICE,
                f"waiting for ServiceInstance {si['metadata']['name']} to run",
            )
            return 3.0
        candidates = [si]
    else:
        candidates = _candidates(ctx, cr, model)
    unreachable = []
    for si in candidates:
        outcome = _dispatch(ctx, cr, si, request, status, conditions)
        if outcome == "dispatched":
            return POLL_SECONDS
        unreachable.append(si["metadata"]["name"])
    if unreachable or job.spec.serviceRef is not None:
        # A service that did not answer may still have taken the job: try again (dispatch is
        # idempotent by uid) rather than run it a second time as a one-shot Job.
        message = f"ServiceInstance {', '.join(unreachable)} did not take the job yet; retrying"
        conditions.set(T.SCHEDULED, False, R.BACKEND_UNAVAILABLE, message if unreachable else "waiting")
        return 1.0
    missing = _missing_files(ctx, job, model, loras)
    if missing:
        # A one-shot pod would only start to find the file absent: say so now, without a pod.
        message = f"not on the models volume: {', '.join(missing)}"
        status.update(
            phase="Failed",
            completedAt=timestamp(),
            queuePosition=-1,
            error={"code": "MODEL_NOT_FOUND", "message": message},
        )
        conditions.set(T.DEPENDENCIES_READY, False, R.NOT_FOUND, message)
        conditions.set(T.PROGRESSING, False, R.NOT_FOUND, message)
        conditions.set(T.FAILED, True, R.NOT_FOUND, message)
        return None
    return _start_oneshot(ctx, cr, request, status, conditions)


def _missing_files(ctx: Context, job: GenerationJob, model: str, loras: list[tuple[str, float]]) -> list[str]:
    """The model and LoRA paths a one-shot generator would load that are not on the models volume.

    Only when the operator sees the volume; a workflow names its files in its graph, and an upscale
    job loads no model.
    """
    root = ctx.settings.storage.models.local()
    if root is None:
        return []
    wanted = [path for path, _ in loras]
    if model and job.spec.type not in (GenerationType.WORKFLOW, GenerationType.UPSCALE):
        wanted.insert(0, model)
    # Joined as the request joins them (not resolved: a link to another disk is a fine model).
    return [path for path in wanted if not (root / path).exists()]


def _dispatch(ctx: Context, cr: Obj, si: Obj, request: Any, status: Obj, conditions: ConditionSet) -> str:
    """Hand the job to one service: ``dispatched`` (or refused for good), else ``unreachable``."""
    url = executor_url(ctx, si)
    if not url:
        return "unreachable"
    submit = build.submission(ctx.settings, cr, request, report_url(ctx.settings, cr, PLURAL), ctx.token(cr))
    name = si["metadata"]["name"]
    try:
        response = _http.post(f"{url}{JOBS_PATH}", json=submit.to_dict())
    except httpx.HTTPError as error:
        log.info("dispatch of %s to %s failed: %s", cr["metadata"]["name"], name, error)
        return "unreachable"
    if response.status_code == 422:
        status.update(
            phase="Failed",
            completedAt=timestamp(),
            error={"code": "INVALID_REQUEST", "message": response.text[:4000]},
        )
        conditions.set(T.FAILED, True, R.INVALID_SPEC, f"{name} refused the job: {response.text[:1000]}")
        return "dispatched"
    if response.status_code not in (200, 201, 202):
        log.info("dispatch of %s to %s: HTTP %d", cr["metadata"]["name"], name, response.status_code)
        return "unreachable"
    remote = ExecutorJob.model_validate(response.json())
    status.update(assignedService=name, queuePosition=remote.queuePosition)
    if remote.state.value == "Running":
        status["phase"] = "Processing"
    conditions.set(T.SCHEDULED, True, R.DISPATCHED, f"dispatched to ServiceInstance {name}")
    ctx.event(cr, "Normal", "Dispatched", f"dispatched to ServiceInstance {name}")
    return "dispatched"


def _follow_service(
    ctx: Context, cr: Obj, status: Obj, conditions: ConditionSet, report: GenerationReport | None
) -> float | None:
    """Keep a dispatched job honest: a stopped or restarted service gets it again or drops it, and a
    job the executor finished ends even when its final report never reached the intake."""
    name = status["assignedService"]
    si = ctx.cache.get("serviceinstances", cr["metadata"]["namespace"], name)
    url = executor_url(ctx, si) if si and (si.get("status") or {}).get("phase") == "Running" else ""
    remote: ExecutorJob | None = None
    lost = not url  # the service is gone or not running
    if url:
        try:
            response = _http.get(f"{url}{JOBS_PATH}/{cr['metadata']['uid']}")
            if response.status_code == 200:
                remote = ExecutorJob.model_validate(response.json())
            lost = response.status_code == 404  # a restarted service does not know the job
        except (httpx.HTTPError, ValueError, ValidationError) as error:
            log.info("polling %s for %s: %s", name, cr["metadata"]["name"], error)
    if remote is None and not lost:
        # A running service that did not answer this once (busy, a slow network) still has the job:
        # rescheduling it would run it twice and strand the first run's reports (their token is
        # the old attempt's), so ask again.
        return POLL_SECONDS
    if remote is not None and remote.state.value in ("Succeeded", "Failed", "Cancelled"):
        final = _report_of(remote)
        _apply_report(status, final)
        return _finish(ctx, cr, status, conditions, final)
    if remote is None:
        # The service is gone, stopped or restarted without the job: schedule it again.
        status.pop("assignedService", None)
        status["phase"] = "Pending"
        status["queuePosition"] = -1
        status["attempt"] = int(status.get("attempt", 0)) + 1
        ctx.reports.forget(WorkKey(PLURAL, cr["metadata"]["namespace"], cr["metadata"]["name"]))
        message = f"ServiceInstance {name} lost the job; rescheduling"
        log.info("%s/%s: %s", cr["metadata"]["namespace"], cr["metadata"]["name"], message)
        conditions.set(T.SCHEDULED, False, R.BACKEND_UNAVAILABLE, message)
        ctx.event(cr, "Warning", "Rescheduled", message)
        return 0.5
    status["queuePosition"] = remote.queuePosition
    if remote.state.value == "Running":
        status["phase"] = "Processing"
        status.setdefault("startedAt", timestamp())
    return POLL_SECONDS


def _report_of(remote: ExecutorJob) -> GenerationReport:
    """The final report a finished executor job stands for (its own report did not arrive)."""
    state = {"Succeeded": WorkState.SUCCEEDED, "Cancelled": WorkState.CANCELLED}.get(
        remote.state.value, WorkState.FAILED
    )
    return GenerationReport(
        sequence=0,
        time=timestamp(),
        state=state,
        final=True,
        message=f"the executor reports the job {remote.state.value.lower()}",
        error=remote.error,
        progress=remote.progress,
        outputs=remote.outputs,
    )


def _refuse_unrunnable_workflow(request: Any, ctx: Context, status: Obj, conditions: ConditionSet) -> bool:
    """A workflow the diffusers generator cannot run fails here, before a pod is started for it.

    The generator translates with the same function; running it here saves a pod's start and says
    at once which node types are missing (the job would fail with the same INVALID_WORKFLOW).
    """
    if request.type != GenerationType.WORKFLOW:
        return False
    try:
        translate(
            request.workflow or {},
            ctx.settings.storage.models.mountPath,
            inputs_root=inputs_dir(ctx.settings),
        )
    except WorkflowError as error:
        message = f"{error.code}: {error.message}"
        status.update(
            phase="Failed",
            completedAt=timestamp(),
            queuePosition=-1,
            error={"code": error.code, "message": error.message},
        )
        conditions.set(T.PROGRESSING, False, R.GENERATION_FAILED, message)
        conditions.set(T.FAILED, True, R.GENERATION_FAILED, message)
        return True
    return False


def _start_oneshot(
    ctx: Context, cr: Obj, request: Any, status: Obj, conditions: ConditionSet
) -> float | None:
    if _refuse_unrunnable_workflow(request, ctx, status, conditions):
        return None
    ctx.ensure_worker_account(cr["metadata"]["namespace"])
    ctx.ensure_secret(cr, build.oneshot_config(ctx.settings, cr, request))
    desired = build.oneshot_job(ctx.settings, cr)
    created = ctx.api.ensure(kube.JOBS, desired, job_drift, likely_absent=True)
    ctx.cache.upsert("jobs", created)
    status.update(jobName=created["metadata"]["name"], queuePosition=0)
    conditions.set(T.WORKLOAD_READY, False, R.PENDING, "no pod yet")
    conditions.set(
        T.SCHEDULED, True, R.ONE_SHOT_JOB, f"runs as the one-shot Job {created['metadata']['name']}"
    )
    return None  # the Job's and its pod's events bring the next pass


def _follow_oneshot(
    ctx: Context,
    cr: Obj,
    status: Obj,
    conditions: ConditionSet,
    view: podstate.PodView,
    oneshot: Obj | None,
    report: GenerationReport | None,
) -> float | None:
    jv = podstate.job_view(oneshot)
    ctx.orchestration(conditions, view, "GenerationJob")
    if jv.failed or (oneshot is None and status.get("jobName")):
        reason = jv.reason or R.GENERATION_FAILED.value
        message = jv.message or "the generator Job is gone"
        status.update(
            phase="Failed",
            completedAt=timestamp(),
            queuePosition=-1,
            error={"code": reason.upper(), "message": message},
        )
        conditions.set(T.FAILED, True, reason, message)
        ctx.metrics.child_failures.labels("GenerationJob", reason).inc()
        return None
    if view.running:
        status["phase"] = "Processing"
        status.setdefault("startedAt", timestamp())
    return None
