"""OT-18 … OT-20: system info, resource use and the session's process, from the node agent and the cache.

Each request reads the configured node agents' snapshots (ControlPilot's client: an agent that does
not answer is left out and logged once per outage) and the gateway's own figures at the same time,
then picks the node of the current session's trainer pod; while that session is active its trainer's
reported figures (PyTorch's allocator per CUDA device, its own process) come from the run's
``status.metrics`` (``system``'s docstring has the mapping, the keys and what stays ``null``). The
session and its pod come from the informer cache, never a LIST per request. An agent that is down is
never an error: the answer is a 200 with the gateway's figures.

Wiring: ``create_router(ctx, settings, prefix)`` (settings from ``profileSettings.onetrainer.system``
and the sessions' prefix from ``…training.runPrefix`` unless passed).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from kubepilot_api.constants import LABEL_KIND, LABEL_NAME
from kubepilot_gateway import runslot
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import PODS, resource_for
from kubepilot_gateway.profiles.controlpilot.telemetry import NodeAgents, Reading, take_reading
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.profiles.onetrainer import system
from kubepilot_gateway.profiles.onetrainer.config import SystemSettings, run_prefix, system_settings

JsonObject = dict[str, Any]
TRAINING_RUNS = resource_for("TrainingRun")


def create_router(
    ctx: GatewayContext, settings: SystemSettings | None = None, prefix: str | None = None
) -> APIRouter:
    config = settings if settings is not None else system_settings(ctx)
    runs_prefix = prefix if prefix is not None else run_prefix(ctx)
    agents = NodeAgents(config.nodeAgentUrls, config.nodeAgentTimeoutSeconds)
    namespace = ctx.store.namespace
    volumes = ctx.settings.volumes
    # The gateway's own disk when no agent reports one: the outputs volume, else its root.
    local_disks = [path for path in (volumes.outputs, "/") if path]
    router = APIRouter()

    def session() -> tuple[JsonObject | None, bool, JsonObject | None]:
        """The current session's run, whether it is active, and its trainer pod (all from the cache)."""
        runs = ctx.cache.list(TRAINING_RUNS, namespace, labels={ot.LABEL_SLOT: runs_prefix})
        run = runslot.current_run(runs_prefix, runs)
        if run is None:
            return None, False, None
        labels = {LABEL_KIND: TRAINING_RUNS.kind, LABEL_NAME: str(run["metadata"]["name"])}
        pod = system.trainer_pod(ctx.cache.list(PODS, namespace, labels=labels))
        return run, runslot.is_active(run), pod

    async def node_reading() -> tuple[Reading, list[system.TrainerGpu]]:
        """The agents' and the gateway's figures, the active session's node first, and the devices
        the active session's trainer reports allocator figures for."""
        run, active, pod = session()
        reading = await take_reading(agents, local_disks)
        trainer = system.trainer_gpus(run) if active else []
        return system.for_node(reading, system.node_of(pod) if active else ""), trainer

    @router.get("/api/system/info")
    async def system_info() -> JsonObject:
        (reading, trainer), os_info = await asyncio.gather(
            node_reading(), asyncio.to_thread(system.read_os_info)
        )
        return system.info_body(reading, os_info, trainer)

    @router.get("/api/system/resources")
    async def system_resources() -> JsonObject:
        return system.resources_body(*await node_reading())

    @router.get("/api/system/processes")
    async def system_processes() -> JsonObject:
        return system.process_body(*session())

    return router
