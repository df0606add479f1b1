"""References between our objects: a ModelPull's files as a model, a TrainingRun's LoRA."""

from __future__ import annotations

import posixpath
from typing import Any

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_api.generationjob import GenerationJob
from kubepilot_operator.reconcile.context import Context

Obj = dict[str, Any]


class Unresolved(Exception):
    """A reference is not usable yet (or never will be: ``failed``)."""

    def __init__(self, message: str, reason: str, failed: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.failed = failed


def pulled_path(ctx: Context, namespace: str, name: str) -> str:
    """What a Completed ModelPull provides, relative to the models volume.

    One file: that file. Several: their common folder (a diffusers repository, a sharded model).
    """
    pull = ctx.cache.get("modelpulls", namespace, name)
    if pull is None:
        raise Unresolved(f"ModelPull {name} does not exist", R.WAITING_FOR_MODEL.value)
    phase = (pull.get("status") or {}).get("phase", "Pending")
    if phase in ("Failed", "Cancelled"):
        raise Unresolved(f"ModelPull {name} is {phase}", R.DEPENDENCY_FAILED.value, failed=True)
    if phase != "Completed":
        raise Unresolved(f"waiting for ModelPull {name} ({phase})", R.WAITING_FOR_MODEL.value)
    files = [str(f.get("path")) for f in (pull.get("status") or {}).get("files") or []]
    if len(files) == 1:
        return files[0]
    destination = (pull.get("spec") or {}).get("destination") or {}
    folder = posixpath.join(str(destination.get("modelType", "")), str(destination.get("subdir", "")))
    return posixpath.commonpath(files) if files else folder.rstrip("/")


def published_lora(ctx: Context, namespace: str, name: str) -> str:
    run = ctx.cache.get("trainingruns", namespace, name)
    if run is None:
        raise Unresolved(f"TrainingRun {name} does not exist", R.WAITING_FOR_DEPENDENCIES.value)
    status = run.get("status") or {}
    if status.get("phase") in ("Failed", "Stopped") and not status.get("publishedModel"):
        raise Unresolved(
            f"TrainingRun {name} is {status.get('phase')}", R.DEPENDENCY_FAILED.value, failed=True
        )
    if not status.get("publishedModel"):
        raise Unresolved(
            f"waiting for TrainingRun {name} to publish its LoRA", R.WAITING_FOR_DEPENDENCIES.value
        )
    return str(status["publishedModel"])


def resolve_model(ctx: Context, cr: Obj, job: GenerationJob) -> str:
    if job.spec.modelPullRef is not None:
        return pulled_path(ctx, cr["metadata"]["namespace"], job.spec.modelPullRef.name)
    return job.spec.model or ctx.settings.defaultGeneratorModel


def resolve_loras(ctx: Context, cr: Obj, job: GenerationJob) -> list[tuple[str, float]]:
    result = []
    for lora in job.spec.loras:
        if lora.trainingRunRef is not None:
            result.append(
                (published_lora(ctx, cr["metadata"]["namespace"], lora.trainingRunRef.name), lora.weight)
            )
        elif lora.path:
            result.append((lora.path, lora.weight))
    return result
