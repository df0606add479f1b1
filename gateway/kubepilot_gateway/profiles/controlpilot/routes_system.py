"""ControlPilot CP-41 … CP-50: telemetry, the shutdown schedule, docs and MediaPilot status.

- Telemetry (CP-41) from the node agents' snapshots, completed with what the gateway reads itself;
  an agent that does not answer leaves its figures to the gateway's (never a 500). History
  (CP-42) is a ring buffer filled by a task that runs with the app's lifespan.
- The shutdown schedule (CP-43 … CP-45) is the operator's schedule ConfigMap: the operator stops
  every service when its time comes (``shutdown``).
- Docs (CP-46 … CP-49) are the project's own markdown (``docs``).
- MediaPilot (CP-50) is not part of kubepilot: its status says so, unless a ServiceInstance
  running it is configured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import KubeError, resource_for
from kubepilot_gateway.profiles.controlpilot import shutdown
from kubepilot_gateway.profiles.controlpilot.datausage import DataUsage
from kubepilot_gateway.profiles.controlpilot.docs import Docs, DocsError, default_root
from kubepilot_gateway.profiles.controlpilot.history import HistoryRecorder, TelemetryHistory
from kubepilot_gateway.profiles.controlpilot.routes_services import kube_failure
from kubepilot_gateway.profiles.controlpilot.telemetry import (
    NodeAgents,
    cpu_count,
    cpu_percent,
    gpu_history_items,
    load_avg,
    take_reading,
    telemetry_body,
)
from kubepilot_gateway.settings import Strict

JsonObject = dict[str, Any]
SERVICE_INSTANCES = resource_for("ServiceInstance")
DEFAULT_NODE_AGENT_URL = "http://127.0.0.1:9400"
"""The node agent's default port (``NodeAgentConfig.port``) on this host."""
MEDIAPILOT_NOT_DEPLOYED = (
    "MediaPilot is not deployed: kubepilot does not include it "
    "(set profileSettings.controlpilot.system.mediapilotServiceInstance to a ServiceInstance running it)"
)


class SystemSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.system``)."""

    nodeAgentUrls: list[str] = Field(
        default_factory=lambda: [DEFAULT_NODE_AGENT_URL],
        description="Node agents to read (`/v1/snapshot`); the first one that answers gives the host "
        "figures, every one its GPUs. On a cluster: the agents' Service, or each node's agent.",
    )
    nodeAgentTimeoutSeconds: float = Field(default=2.0, gt=0, description="Wait for one agent's snapshot.")
    historySampleSeconds: float = Field(default=30, gt=0, description="Telemetry history sample interval.")
    historyRetentionSeconds: float = Field(default=86400, gt=0, description="How much history to keep.")
    dataUsageTtlSeconds: float = Field(
        default=300, ge=0, description="Reuse the volumes' data total this long before walking them again."
    )
    dataUsageFirstWaitSeconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a request waits for the first walk of the volumes (null until it is done).",
    )
    scheduleConfigMap: str = Field(
        default=shutdown.DEFAULT_CONFIGMAP,
        description="The operator's schedule ConfigMap (its `scheduleConfigMap` setting), in the "
        "operator namespace.",
    )
    docsRoot: str = Field(
        default="",
        description="Folder with README.md, CHANGELOG.md and docs/; empty: the source checkout the "
        "gateway runs from, else <prefix>/share/kubepilot/docs of its environment.",
    )
    mediapilotServiceInstance: str = Field(
        default="", description="A ServiceInstance running MediaPilot; empty: MediaPilot is not deployed."
    )


class ShutdownRequest(BaseModel):
    """CP-43 body: a non-negative whole ``value`` (422 otherwise) and its ``unit``."""

    value: int = Field(ge=0)
    unit: str


def _volume_paths(ctx: GatewayContext) -> list[str]:
    volumes = ctx.settings.volumes
    return [path for path in (volumes.models, volumes.datasets, volumes.outputs) if path]


def _mediapilot_status(ctx: GatewayContext, name: str) -> JsonObject:
    """CP-50: MediaPilot's fields, from the configured ServiceInstance when there is one."""
    body: JsonObject = {
        "available": False,
        "app_dir": None,
        "env_file": None,
        "env_file_exists": False,
        "output_dir": None,
        "invoke_dir": None,
        "thumbs_dir": None,
        "db_file": None,
        "comfy_api_url": None,
        "error": MEDIAPILOT_NOT_DEPLOYED,
    }
    if not name:
        return body
    namespace = ctx.store.namespace
    instance = ctx.cache.get(SERVICE_INSTANCES, name, namespace)
    status = (instance or {}).get("status") or {}
    comfy = (ctx.cache.get(SERVICE_INSTANCES, "comfy", namespace) or {}).get("status") or {}
    body["output_dir"] = ctx.settings.volumes.outputs or None
    body["comfy_api_url"] = comfy.get("endpoint") or None
    if instance is None:
        body["error"] = f"MediaPilot ServiceInstance {name!r} not found"
    elif not status.get("ready"):
        body["error"] = f"MediaPilot ServiceInstance {name!r} is {status.get('phase') or 'not running'}"
    else:
        body["available"] = True
        body["error"] = None
    return body


def create_router(ctx: GatewayContext, settings: SystemSettings) -> APIRouter:
    """The routes; the telemetry history task runs with the app's lifespan."""
    agents = NodeAgents(settings.nodeAgentUrls, settings.nodeAgentTimeoutSeconds)
    volumes = _volume_paths(ctx)
    data_usage = DataUsage(volumes, settings.dataUsageTtlSeconds, settings.dataUsageFirstWaitSeconds)
    history = TelemetryHistory(settings.historySampleSeconds, settings.historyRetentionSeconds)
    docs = Docs(default_root(settings.docsRoot))
    schedule = shutdown.ScheduleStore(
        ctx.client,
        ctx.settings.operatorNamespace or ctx.settings.namespace,
        settings.scheduleConfigMap,
    )

    async def sample() -> JsonObject:
        reading = await take_reading(agents, [])
        return {
            "cpu": {
                "load_avg": load_avg(reading)[0],
                "cpu_count": cpu_count(reading),
                "pct": cpu_percent(reading),
            },
            "gpus": gpu_history_items(reading.snapshots),
        }

    recorder = HistoryRecorder(history, sample)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        recorder.start()
        try:
            yield
        finally:
            await recorder.stop()
            await data_usage.close()

    router = APIRouter(lifespan=lifespan)

    @router.get("/api/telemetry")
    async def telemetry() -> JsonObject:
        """CP-41: host, memory, disks and volumes, GPUs."""
        reading = await take_reading(agents, ["/", *volumes])
        return telemetry_body(reading, await data_usage.get())

    @router.get("/api/telemetry/history")
    async def telemetry_history(max_seconds: Annotated[int, Query(ge=0)] = 0) -> JsonObject:
        """CP-42: the samples of the last ``max_seconds`` (0: all retained)."""
        return history.body(max_seconds, time.time())

    @router.post("/api/shutdown/schedule")
    async def schedule_shutdown(payload: ShutdownRequest) -> JsonObject:
        """CP-43: write ``shutdownAt`` for the operator."""
        try:
            seconds = shutdown.delay_seconds(payload.value, payload.unit)
        except shutdown.ScheduleError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        try:
            await schedule.write(shutdown.shutdown_at(datetime.now(UTC), seconds))
        except KubeError as error:
            raise kube_failure(error) from error
        return shutdown.scheduled_message(payload.value, payload.unit)

    @router.post("/api/shutdown/cancel")
    async def cancel_shutdown() -> JsonObject:
        """CP-44: an empty ``shutdownAt`` (the operator's cancel)."""
        try:
            await schedule.write("")
        except KubeError as error:
            raise kube_failure(error) from error
        return shutdown.cancelled_message()

    @router.get("/api/shutdown/status")
    async def shutdown_status() -> JsonObject:
        """CP-45: pending only while the time is ahead and the operator has not carried it out."""
        try:
            data = await schedule.read()
        except KubeError as error:
            raise kube_failure(error) from error
        return shutdown.status_body(data, datetime.now(UTC))

    def serve_docs(read: Callable[..., dict[str, str]], *args: str) -> JsonObject:
        """A docs answer, or ControlPilot's error for it."""
        try:
            return dict(read(*args))
        except DocsError as error:
            raise HTTPException(status_code=error.status, detail=error.detail) from None

    # Plain functions: FastAPI runs them in its thread pool, so file reads do not hold the loop.
    @router.get("/api/docs")
    def docs_readme() -> JsonObject:
        """CP-46: README.md."""
        return serve_docs(docs.readme)

    @router.get("/api/changelog")
    def docs_changelog() -> JsonObject:
        """CP-47: CHANGELOG.md."""
        return serve_docs(docs.changelog)

    @router.get("/api/docs/sitemap")
    def docs_sitemap() -> JsonObject:
        """CP-48: docs/README.md, or a generated index of docs/."""
        return serve_docs(docs.sitemap)

    @router.get("/api/docs/file")
    def docs_file(path: str) -> JsonObject:
        """CP-49: one .md under docs/ (safe relative paths only)."""
        return serve_docs(docs.file, path)

    @router.get("/api/mediapilot/status")
    async def mediapilot_status() -> JsonObject:
        """CP-50: MediaPilot's status (not deployed unless a ServiceInstance is configured)."""
        return _mediapilot_status(ctx, settings.mediapilotServiceInstance)

    return router
