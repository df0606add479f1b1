"""The seed's ComfyUI Integration endpoints (CD-12…17) over GenerationJobs of type ``workflow``.

``GET /api/comfyui/health``, ``POST /api/comfyui/execute``, ``GET /api/comfyui/queue``,
``GET /api/comfyui/history/{prompt_id}``, ``DELETE /api/comfyui/queue?type=pending|running|all``
and ``POST /api/comfyui/interrupt`` (see ``executions`` for the backend and the errors, ``comfyui``
for the shapes). Beyond the seed: ``GET /api/comfyui/history`` lists finished executions (newest
first, ``max_items``); history entries carry ``backend`` (and ``error`` when one failed or was
cancelled); the interrupt answer names the ``prompt_ids`` it interrupted. A history entry of an
unfinished execution has its current status (``pending`` / ``running``) and no images. An unknown
prompt id is 404 ``PROMPT_NOT_FOUND``; bad input 400 ``INVALID_REQUEST``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from kubepilot_gateway.profiles.comfyui_docker import comfyui as cf
from kubepilot_gateway.profiles.comfyui_docker.errors import JsonInputError, api_error, parse_json
from kubepilot_gateway.profiles.comfyui_docker.executions import CLEAR_TYPES, Executions, invalid_workflow
from kubepilot_gateway.profiles.comfyui_docker.routes_workflows import read_limited

JsonObject = dict[str, Any]


def parse_priority(value: Any) -> int:
    """The seed's integer ``priority`` (default 0), within the GenerationJob's bounds."""
    low, high = cf.PRIORITY_RANGE
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise api_error(
            400, "INVALID_REQUEST", f"priority is an integer from {low} to {high}", {"field": "priority"}
        )
    return value


def create_router(executions: Executions) -> APIRouter:
    router = APIRouter()

    @router.get("/api/comfyui/health")
    async def comfyui_health() -> JsonObject:
        """CD-12: the backend's state and this profile's queue counts."""
        return executions.health()

    @router.post("/api/comfyui/execute")
    async def execute(request: Request) -> JsonObject:
        """CD-13: one GenerationJob of type ``workflow``."""
        raw = await read_limited(request, executions.settings.workflowMaxBytes)
        try:
            body = parse_json(raw)
        except JsonInputError as error:
            raise api_error(400, "INVALID_REQUEST", f"The body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise api_error(400, "INVALID_REQUEST", "The body is a JSON object with workflow and priority")
        graph = body.get("workflow")
        if graph is None:
            raise invalid_workflow("workflow (a ComfyUI API-format graph) is required", field="workflow")
        if isinstance(graph, str):  # a graph sent as JSON text
            try:
                graph = parse_json(graph)
            except JsonInputError as error:
                raise invalid_workflow(f"workflow is not valid JSON: {error}", field="workflow") from error
        return await executions.execute(graph, parse_priority(body.get("priority")))

    @router.get("/api/comfyui/queue")
    async def queue() -> JsonObject:
        """CD-14: running and pending executions with their place in the queue."""
        return cf.queue_view(executions.jobs())

    @router.delete("/api/comfyui/queue")
    async def clear_queue(type: str = "pending") -> JsonObject:  # the seed's parameter name
        """CD-16: cancel the pending (default), running or all executions."""
        if type not in CLEAR_TYPES:
            raise api_error(
                400, "INVALID_REQUEST", "type is all, pending or running", {"field": "type", "value": type}
            )
        return {"cleared": await executions.clear(type), "status": "success"}

    @router.post("/api/comfyui/interrupt")
    async def interrupt() -> JsonObject:
        """CD-17: interrupt the running execution."""
        return {"status": "interrupted", "prompt_ids": await executions.interrupt()}

    @router.get("/api/comfyui/history")
    async def history(max_items: int = Query(default=100, ge=1, le=10_000)) -> JsonObject:
        """Ours: finished executions, newest first."""
        done = [job for job in executions.jobs() if cf.phase(job) in cf.TERMINAL]
        done.sort(key=lambda job: str(cf.status(job).get("completedAt") or ""), reverse=True)
        rows = [cf.history_entry(job, executions.outputs_root) for job in done[:max_items]]
        return {"history": rows, "total": len(done)}

    @router.get("/api/comfyui/history/{prompt_id}")
    async def history_one(prompt_id: str) -> JsonObject:
        """CD-15: one execution's state, images and times."""
        return cf.history_entry(executions.job(prompt_id), executions.outputs_root)

    return router
