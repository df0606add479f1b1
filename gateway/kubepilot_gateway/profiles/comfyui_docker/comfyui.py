"""ComfyUI executions as GenerationJobs: the pure translation (no cluster access here).

- An execution is a GenerationJob of type ``workflow`` named ``comfyui-<prompt_id>``, labelled with
  this profile and ``kubepilot.io/prompt-id``. The prompt id is a UUID4 (as ComfyUI's own) chosen at
  execute time, so it is stable for the job's life and resolves from the cache by name.
- The queue is this profile's unfinished executions: ``Processing`` is running, ``Pending`` (or no
  status yet) is pending unless its cancel was asked (cleared jobs leave the queue at once). Its
  order: running ones first (by start), then those a service has placed (``status.queuePosition``
  ≥ 1, ascending), then the rest by priority (higher first) and age. A job's ``number`` is its
  1-based place in that order (the seed's running job is 1, the next 2): it is the job's place in
  the queue now, so it moves up as jobs before it finish.
- History entries render ``status.outputs`` as ComfyUI names images: ``filename`` (the base name),
  ``subfolder`` (the folder relative to the outputs volume) and ``type: output``.
"""

from __future__ import annotations

import posixpath
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubepilot_api.constants import GROUP, LABEL_PROFILE

JsonObject = dict[str, Any]
PROFILE_NAME = "comfyui-docker"
LABEL_PROMPT_ID = f"{GROUP}/prompt-id"
ANNOTATION_SUBMITTED = f"{GROUP}/submitted-at"
"""When the gateway queued the job (UTC, microseconds): orders jobs created within one second,
which ``creationTimestamp`` cannot."""
NAME_PREFIX = "comfyui-"
TERMINAL = frozenset({"Completed", "Failed", "Cancelled"})
HISTORY_STATUS = {
    "Pending": "pending",
    "Processing": "running",
    "Completed": "completed",
    "Failed": "failed",
    "Cancelled": "cancelled",
}
PRIORITY_RANGE = (-100, 100)
"""A GenerationJob's ``spec.priority`` bounds: the seed's integer ``priority`` is passed through."""


def new_prompt_id() -> str:
    return str(uuid.uuid4())


def valid_prompt_id(value: str) -> bool:
    """A prompt id this profile hands out (a UUID, written in its canonical form)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def job_name(prompt_id: str) -> str:
    return f"{NAME_PREFIX}{prompt_id}"


def meta(job: JsonObject) -> JsonObject:
    return dict(job.get("metadata") or {})


def status(job: JsonObject) -> JsonObject:
    return dict(job.get("status") or {})


def phase(job: JsonObject) -> str:
    return str(status(job).get("phase") or "Pending")


def prompt_id(job: JsonObject) -> str:
    labels = meta(job).get("labels") or {}
    return str(labels.get(LABEL_PROMPT_ID) or meta(job).get("name", "").removeprefix(NAME_PREFIX))


def is_ours(job: JsonObject) -> bool:
    """A workflow execution this profile created."""
    labels = meta(job).get("labels") or {}
    return (
        labels.get(LABEL_PROFILE) == PROFILE_NAME
        and bool(labels.get(LABEL_PROMPT_ID))
        and (job.get("spec") or {}).get("type") == "workflow"
    )


def unfinished(job: JsonObject) -> bool:
    return phase(job) not in TERMINAL and not meta(job).get("deletionTimestamp")


def new_generation_job(
    prompt: str,
    graph: JsonObject,
    *,
    priority: int,
    service: str | None,
    auto_start: bool,
    ttl_seconds: int | None,
) -> JsonObject:
    """The GenerationJob of one execution; ``service`` is the ComfyUI ServiceInstance to run on (None:
    the operator runs it on the diffusers generator as a one-shot Job)."""
    spec: JsonObject = {"type": "workflow", "workflow": graph, "priority": priority}
    if service is not None:
        spec["serviceRef"] = {"name": service}
        spec["autoStartService"] = auto_start
    if ttl_seconds is not None:
        spec["ttlSecondsAfterFinished"] = ttl_seconds
    return {
        "metadata": {
            "name": job_name(prompt),
            "labels": {LABEL_PROFILE: PROFILE_NAME, LABEL_PROMPT_ID: prompt},
            "annotations": {ANNOTATION_SUBMITTED: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        },
        "spec": spec,
    }


def _queue_key(job: JsonObject) -> tuple[int, int, int, str, str]:
    position = int(status(job).get("queuePosition", -1))
    annotations = meta(job).get("annotations") or {}
    created = str(annotations.get(ANNOTATION_SUBMITTED) or meta(job).get("creationTimestamp") or "")
    name = str(meta(job).get("name") or "")
    if phase(job) == "Processing":
        return (0, 0, 0, str(status(job).get("startedAt") or created), name)
    priority = int((job.get("spec") or {}).get("priority") or 0)
    if position >= 1:
        return (1, position, -priority, created, name)
    return (2, 0, -priority, created, name)


def queued(job: JsonObject) -> bool:
    """In the queue: ours, unfinished, and not a pending job whose cancel was asked (a cleared job
    leaves the queue at once, as in ComfyUI; a running one stays until its interrupt lands)."""
    if not is_ours(job) or not unfinished(job):
        return False
    return phase(job) == "Processing" or not (job.get("spec") or {}).get("cancel")


def queue_order(jobs: list[JsonObject]) -> list[JsonObject]:
    """This profile's queued executions in queue order (running first)."""
    return sorted((job for job in jobs if queued(job)), key=_queue_key)


def numbers(ordered: list[JsonObject]) -> dict[str, int]:
    """Prompt id → its ``number`` (1-based place in ``ordered``)."""
    return {prompt_id(job): index for index, job in enumerate(ordered, start=1)}


def queue_view(jobs: list[JsonObject]) -> JsonObject:
    """``GET /api/comfyui/queue``: arrays of ``{prompt_id, number}``."""
    ordered = queue_order(jobs)
    rows = [{"prompt_id": prompt_id(job), "number": n} for n, job in enumerate(ordered, start=1)]
    running = [row for row, job in zip(rows, ordered, strict=True) if phase(job) == "Processing"]
    pending = [row for row, job in zip(rows, ordered, strict=True) if phase(job) != "Processing"]
    return {"queue_running": running, "queue_pending": pending}


def queue_update(jobs: list[JsonObject]) -> JsonObject:
    """The WebSocket's ``queue_update``: the counts as integers and the first running task."""
    ordered = queue_order(jobs)
    running = [job for job in ordered if phase(job) == "Processing"]
    current = {"prompt_id": prompt_id(running[0]), "type": "image_generation"} if running else None
    return {
        "type": "queue_update",
        "data": {
            "queue_pending": len(ordered) - len(running),
            "queue_running": len(running),
            "current_task": current,
        },
    }


def queue_signature(jobs: list[JsonObject]) -> tuple[tuple[str, str], ...]:
    """What a ``queue_update`` reflects (who is queued, in which phase): equal means nothing to send."""
    return tuple((prompt_id(job), phase(job)) for job in queue_order(jobs))


def relative_output(path: str, outputs_root: Path) -> str:
    """An output's path relative to the outputs volume (as the operator records it, or made so)."""
    if posixpath.isabs(path):
        try:
            return Path(path).relative_to(outputs_root).as_posix()
        except ValueError:
            return path.lstrip("/")
    return posixpath.normpath(path)


def output_images(job: JsonObject, outputs_root: Path) -> list[JsonObject]:
    """``status.outputs`` as ComfyUI's image records."""
    images = []
    for item in sorted(status(job).get("outputs") or [], key=lambda o: int(o.get("index", 0))):
        relative = relative_output(str(item.get("path") or ""), outputs_root)
        if not relative:
            continue
        folder, filename = posixpath.split(relative)
        images.append({"filename": filename, "subfolder": folder, "type": "output"})
    return images


def backend(job: JsonObject) -> str:
    """Which engine runs it: ``comfyui`` (a ComfyUI service) or ``diffusers`` (our generator);
    ``pending`` while the operator has not placed it."""
    state = status(job)
    if (job.get("spec") or {}).get("serviceRef") or state.get("assignedService"):
        return "comfyui"
    if state.get("jobName"):
        return "diffusers"
    return "diffusers" if phase(job) in TERMINAL else "pending"


def history_entry(job: JsonObject, outputs_root: Path) -> JsonObject:
    """``GET /api/comfyui/history/{prompt_id}``: the seed's fields, plus ``backend`` and, for a failed
    or cancelled execution, ``error`` (code and message)."""
    state = status(job)
    entry: JsonObject = {
        "prompt_id": prompt_id(job),
        "status": HISTORY_STATUS.get(phase(job), phase(job).lower()),
        "outputs": {"images": output_images(job, outputs_root)},
        "started": state.get("startedAt"),
        "completed": state.get("completedAt"),
        "backend": backend(job),
    }
    if phase(job) == "Failed":
        error = state.get("error") or {}
        entry["error"] = {
            "code": str(error.get("code") or "EXECUTION_FAILED"),
            "message": str(error.get("message") or ""),
        }
    elif phase(job) == "Cancelled":
        entry["error"] = {
            "code": str((job.get("spec") or {}).get("cancelReason") or "UserCancelled"),
            "message": "cancelled",
        }
    return entry


def progress_message(job: JsonObject) -> JsonObject:
    """``workflow_progress`` from ``status.progress``: ``value`` / ``max`` is the overall fraction
    (``max`` 1.0, as the seed shows), ``node`` the node executing; ``step`` / ``total_steps`` /
    ``percent`` are ours."""
    progress = status(job).get("progress") or {}
    percent = int(progress.get("percent", -1))
    return {
        "type": "workflow_progress",
        "data": {
            "prompt_id": prompt_id(job),
            "node": str(progress.get("currentNode") or "") or None,
            "value": round(max(percent, 0) / 100, 4),
            "max": 1.0,
            "type": "executing",
            "step": int(progress.get("step", 0)),
            "total_steps": int(progress.get("totalSteps", -1)),
            "percent": percent,
        },
    }


def output_message(job: JsonObject, outputs_root: Path) -> JsonObject:
    return {
        "type": "workflow_output",
        "data": {"prompt_id": prompt_id(job), "output": {"images": output_images(job, outputs_root)}},
    }


def failure_message(job: JsonObject) -> JsonObject:
    error = status(job).get("error") or {}
    return {
        "type": "error",
        "data": {
            "code": "EXECUTION_FAILED",
            "message": str(error.get("message") or "The workflow execution failed"),
            "details": {"prompt_id": prompt_id(job), "error": str(error.get("code") or "")},
        },
    }


def workflow_events(old: JsonObject | None, new: JsonObject, outputs_root: Path) -> list[JsonObject]:
    """The ``workflows`` channel's messages for one change of an execution: progress while it runs,
    ``workflow_output`` once it completes with images, an ``error`` when it fails."""
    if not is_ours(new):
        return []
    before = phase(old) if old is not None else None
    now = phase(new)
    messages: list[JsonObject] = []
    if now not in TERMINAL:
        progress = status(new).get("progress")
        if progress and progress != (status(old).get("progress") if old is not None else None):
            messages.append(progress_message(new))
    elif before is not None and before != now:  # a job first seen finished is no news
        if now == "Completed":
            if status(new).get("progress"):
                messages.append(progress_message(new))
            if status(new).get("outputs"):
                messages.append(output_message(new, outputs_root))
        elif now == "Failed":
            messages.append(failure_message(new))
    return messages
