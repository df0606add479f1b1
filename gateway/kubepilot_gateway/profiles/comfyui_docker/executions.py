"""ComfyUI executions over the cluster: the backend choice, execute, cancel, health.

- **Backend.** When a ServiceInstance with ``serviceType: comfyui`` exists in the namespace (a
  Running, ready one preferred, else the first by name), an execution names it in
  ``spec.serviceRef`` and the operator dispatches the graph to its ComfyUI adapter, waiting for it
  to run (and starting it when ``autoStartComfyUI``). Otherwise ``serviceRef`` stays empty and the
  operator runs the graph as a one-shot Job of our diffusers generator, which translates the
  standard shapes only (``kubepilot_api.workers.workflow``, the generator's own translator): a
  graph with other node types is refused up front with 400 ``INVALID_WORKFLOW`` naming them
  (``details.unsupported_node_types``), and one of supported types that the translator still
  cannot express (two generations, a sampler without a diffusers equivalent, ...) with its reason.
- **503 ``COMFYUI_UNAVAILABLE``** (the guide: "ComfyUI service is not responding"): health
  answers it while the ComfyUI service exists but is not Running and ready; execute answers it only
  when that service is in phase ``Error`` (it will not come up by itself), not while it is stopped
  or starting: the job then waits in the queue, as ComfyUI's own queue would. Without a ComfyUI
  service, health reports the diffusers generator (``backend: diffusers``), which is always there.
- **507 ``QUEUE_FULL``** once ``maxQueueSize`` executions of this profile are unfinished. The count
  and the create are serialised within this replica; replicas may together overshoot by one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_api.workers import workflow as translator
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import BadRequest, Invalid, NotFound, resource_for
from kubepilot_gateway.profiles.comfyui_docker import comfyui as cf
from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
from kubepilot_gateway.profiles.comfyui_docker.errors import MAX_GRAPH_DEPTH, api_error, nested_deeper_than

JsonObject = dict[str, Any]
GENERATION_JOBS = resource_for("GenerationJob")
SERVICE_INSTANCES = resource_for("ServiceInstance")
DIFFUSERS_VERSION = "kubepilot-diffusers"
"""``version`` of the health answer when our generator, not ComfyUI, runs the workflows."""
CLEAR_TYPES = {"pending": ("Pending",), "running": ("Processing",), "all": ("Pending", "Processing")}


def invalid_workflow(message: str, **details: Any) -> Exception:
    return api_error(400, "INVALID_WORKFLOW", message, details)


def check_graph(graph: Any) -> JsonObject:
    """An API-format graph ready to queue, or 400 ``INVALID_WORKFLOW`` saying what is wrong."""
    if not isinstance(graph, dict) or not graph:
        raise invalid_workflow("workflow must be a non-empty JSON object (ComfyUI's API format)")
    if nested_deeper_than(graph, MAX_GRAPH_DEPTH):
        raise invalid_workflow(f"workflow nests more than {MAX_GRAPH_DEPTH} levels deep")
    if isinstance(graph.get("nodes"), list):
        raise invalid_workflow(
            "This is a UI-format workflow; export it from ComfyUI with 'Export (API)' and send that graph"
        )
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise invalid_workflow(f"Node {node_id} has no class_type", node=str(node_id))
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise invalid_workflow(f"Node {node_id}: inputs must be an object", node=str(node_id))
        for name, value in inputs.items():
            if isinstance(value, list) and (len(value) != 2 or str(value[0]) not in graph):
                raise invalid_workflow(
                    f"Node {node_id} input {name} links to a node the workflow does not have",
                    node=str(node_id),
                    input=str(name),
                )
    return graph


class Executions:
    """This profile's GenerationJobs of type ``workflow``, read from the cache."""

    def __init__(self, ctx: GatewayContext, settings: ComfyUiDockerSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.namespace = ctx.store.namespace
        self.outputs_root = Path(ctx.settings.volumes.outputs)
        self._create_lock = asyncio.Lock()

    # -- reads ------------------------------------------------------------------------------------

    def jobs(self) -> list[JsonObject]:
        """Every execution of this profile (any phase)."""
        found = self.ctx.cache.list(GENERATION_JOBS, self.namespace, {LABEL_PROFILE: cf.PROFILE_NAME})
        return [job for job in found if cf.is_ours(job)]

    def job(self, prompt_id: str) -> JsonObject:
        found = (
            self.ctx.cache.get(GENERATION_JOBS, cf.job_name(prompt_id), self.namespace)
            if cf.valid_prompt_id(prompt_id)
            else None
        )
        if found is None or not cf.is_ours(found):
            raise api_error(
                404, "PROMPT_NOT_FOUND", f"Prompt {prompt_id} does not exist", {"prompt_id": prompt_id}
            )
        return found

    def comfyui_service(self) -> JsonObject | None:
        """The ComfyUI ServiceInstance executions go to: a Running, ready one first, else by name."""
        found = [
            si
            for si in self.ctx.cache.list(SERVICE_INSTANCES, self.namespace)
            if (si.get("spec") or {}).get("serviceType") == "comfyui"
            and not (si.get("metadata") or {}).get("deletionTimestamp")
        ]

        def key(si: JsonObject) -> tuple[bool, str]:
            return (not up(si), str(si["metadata"]["name"]))

        return min(found, key=key) if found else None

    def health(self) -> JsonObject:
        ordered = cf.queue_order(self.jobs())
        running = sum(1 for job in ordered if cf.phase(job) == "Processing")
        queue = {"pending": len(ordered) - running, "running": running}
        service = self.comfyui_service()
        if service is None:
            return {"status": "healthy", "version": DIFFUSERS_VERSION, "queue": queue, "backend": "diffusers"}
        if not up(service):
            raise unavailable(service)
        state = service.get("status") or {}
        installed = (state.get("version") or {}).get("installed")
        version = str(installed or (service.get("spec") or {}).get("version") or "")
        return {"status": "healthy", "version": version, "queue": queue, "backend": "comfyui"}

    # -- execute ----------------------------------------------------------------------------------

    async def execute(self, graph: Any, priority: int) -> JsonObject:
        """Queue ``graph``: the seed's ``{prompt_id, number, status: queued}``."""
        graph = check_graph(graph)
        service = self.comfyui_service()
        if service is None:
            self.check_translatable(graph)
        elif phase_of(service) == "Error":
            raise unavailable(service)
        prompt = cf.new_prompt_id()
        body = cf.new_generation_job(
            prompt,
            graph,
            priority=priority,
            service=str(service["metadata"]["name"]) if service is not None else None,
            auto_start=self.settings.autoStartComfyUI,
            ttl_seconds=self.settings.executionTtlSeconds,
        )
        async with self._create_lock:
            queued = len(cf.queue_order(self.jobs()))
            if queued >= self.settings.maxQueueSize:
                raise api_error(
                    507,
                    "QUEUE_FULL",
                    "The ComfyUI queue is at capacity",
                    {"queue_size": queued, "max_queue_size": self.settings.maxQueueSize},
                )
            try:
                await self.ctx.store.create(GENERATION_JOBS, body)
            except (Invalid, BadRequest) as error:
                raise invalid_workflow(f"The cluster refused the workflow: {error}") from error
        number = cf.numbers(cf.queue_order(self.jobs())).get(prompt, queued + 1)
        return {"prompt_id": prompt, "number": number, "status": "queued"}

    def check_translatable(self, graph: JsonObject) -> None:
        """400 ``INVALID_WORKFLOW`` unless the diffusers generator can run ``graph``."""
        unsupported = translator.unsupported_node_types(graph)
        if unsupported:
            raise invalid_workflow(
                "No ComfyUI service runs here and the built-in generator cannot run these node "
                f"types: {', '.join(unsupported)}",
                unsupported_node_types=unsupported,
                supported_node_types=sorted(translator.supported_node_types()),
            )
        try:
            translator.translate(graph, self.ctx.settings.volumes.models)
        except translator.WorkflowError as error:
            raise invalid_workflow(
                f"No ComfyUI service runs here and the built-in generator cannot run this workflow: "
                f"{error.message}",
                unsupported_node_types=error.node_types,
            ) from error

    # -- cancel -----------------------------------------------------------------------------------

    async def cancel(self, jobs: list[JsonObject], reason: str) -> list[str]:
        """Set ``spec.cancel`` (with ``reason``) on each job not already cancelled; their prompt ids."""
        cancelled = []
        for job in jobs:
            if (job.get("spec") or {}).get("cancel"):
                continue
            with contextlib.suppress(NotFound):
                await self.ctx.store.patch(
                    GENERATION_JOBS, cf.meta(job)["name"], {"spec": {"cancel": True, "cancelReason": reason}}
                )
                cancelled.append(cf.prompt_id(job))
        return cancelled

    async def clear(self, kind: str) -> int:
        """``DELETE /api/comfyui/queue?type=``: cancel the pending and / or running executions."""
        phases = CLEAR_TYPES[kind]
        chosen = [job for job in cf.queue_order(self.jobs()) if cf.phase(job) in phases]
        return len(await self.cancel(chosen, "QueueCleared"))

    async def interrupt(self) -> list[str]:
        """Cancel the running executions (the operator interrupts the backend)."""
        running = [job for job in cf.queue_order(self.jobs()) if cf.phase(job) == "Processing"]
        return await self.cancel(running, "Interrupted")


def phase_of(service: JsonObject) -> str:
    return str((service.get("status") or {}).get("phase") or "Stopped")


def up(service: JsonObject) -> bool:
    return phase_of(service) == "Running" and bool((service.get("status") or {}).get("ready"))


def unavailable(service: JsonObject) -> Exception:
    name = str(service["metadata"]["name"])
    return api_error(
        503,
        "COMFYUI_UNAVAILABLE",
        f"ComfyUI ({name}) is not responding",
        {"service": name, "phase": phase_of(service)},
    )
