"""OT-15 … OT-17 routes (``samples`` has the reading); ``/list`` and ``/latest`` are declared before
``/{sample_id}`` so they are never taken for an id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from kubepilot_gateway import runslot
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import resource_for
from kubepilot_gateway.profiles.onetrainer import samples
from kubepilot_gateway.profiles.onetrainer import session as ot

JsonObject = dict[str, Any]
TRAINING_RUNS = resource_for("TrainingRun")


def create_router(ctx: GatewayContext, prefix: str) -> APIRouter:
    router = APIRouter()
    namespace = ctx.store.namespace

    def current_samples() -> list[JsonObject]:
        runs = ctx.cache.list(TRAINING_RUNS, namespace, labels={ot.LABEL_SLOT: prefix})
        run = runslot.current_run(prefix, runs)
        if run is None:
            return []
        prompts = samples.default_prompts(run) if samples.is_builtin(run) else None
        return samples.scan(samples.samples_dir(ctx.settings.volumes.outputs, run), prompts)

    @router.get("/api/samples/list")
    async def samples_list() -> JsonObject:
        """OT-15: the current session's samples, newest first."""
        return {"samples": current_samples()}

    @router.get("/api/samples/latest")
    async def samples_latest(count: Annotated[int, Query(ge=0, le=samples.MAX_SAMPLES)] = 10) -> JsonObject:
        """OT-16: the ``count`` newest."""
        return {"samples": current_samples()[:count]}

    @router.get("/api/samples/{sample_id}")
    async def sample_by_id(sample_id: str) -> JsonObject:
        """OT-17."""
        for sample in current_samples():
            if sample["id"] == sample_id:
                return sample
        raise HTTPException(status_code=404, detail=f"Sample not found: {sample_id}")

    return router
