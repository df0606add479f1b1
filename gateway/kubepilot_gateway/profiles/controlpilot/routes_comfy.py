"""ControlPilot CP-37 … CP-40: ComfyUI status, latest image, the HTTP proxy and the ``/ws/comfy`` bridge.

ComfyUI is ControlPilot's ``comfy`` service: the ServiceInstance of that name (serviceType
``comfyui``, see ``services``). Its ``status.endpoint`` is ComfyUI's own HTTP port; the gateway
probes it, proxies GETs to it and bridges its WebSocket, as ControlPilot does with the ComfyUI it
runs on localhost.

- CP-37 reads phase and readiness from the cache and, when the service is Running and ready,
  probes ``GET /system_stats``: ``running`` (+ ``port``, a string as ControlPilot gives it),
  ``stopped`` (not running, starting or stopping, or not answering) or ``error`` (phase Error, an
  endpoint that is not ready, or a probe answered with an error status).
- CP-38 scans ``<outputs volume>/<outputsSubfolder>`` (ComfyUI's output folder when it runs with
  ``--output-directory`` there, as LoRA Pilot's does) through a small mtime-checked index.
- CP-39 streams a GET through (query, status, content type and body as ComfyUI sent them).
  Failures are ControlPilot's ``500 {"error": "Proxy error: …"}``.
- CP-40 relays frames verbatim to ``ws://<endpoint>/ws?clientId=portal_preview``; a failed
  connect is told as ``{"type": "error", "message": "Cannot connect to ComfyUI: …"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import WebSocketException

from kubepilot_api.serviceinstance import ServicePhase, ServiceType
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.profiles.controlpilot.comfy_images import OutputIndex, latest_image
from kubepilot_gateway.settings import Strict
from kubepilot_gateway.upstream import (
    ServiceEndpoint,
    UpstreamHttp,
    close_client,
    connect_websocket,
    forward,
    relay_websocket,
    request_headers,
    service_endpoint,
    streaming_response,
    websocket_url,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]

COMFY_SERVICE = next(s.name for s in svc.KNOWN_SERVICES if s.service_type is ServiceType.COMFYUI)
"""ControlPilot's name for ComfyUI (``comfy``): the ServiceInstance backing it has the same name."""

NOT_REACHABLE = "ComfyUI is not reachable"
ERROR_STATUS = "ComfyUI returned error status"
"""ControlPilot's probe texts; the gateway adds which ServiceInstance and its state."""


class ComfySettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.comfy``)."""

    outputsSubfolder: str = Field(
        default="comfy",
        description="ComfyUI's output folder inside the outputs volume (CP-38 scans it; ComfyUI's /view "
        "serves from it when ComfyUI runs with --output-directory there).",
    )
    maxScanEntries: int = Field(
        default=50_000,
        ge=1,
        description="Directory entries CP-38 reads per request at most (unchanged folders are not re-read).",
    )
    probeTimeoutSeconds: float = Field(default=5, gt=0, description="CP-37's /system_stats probe timeout.")
    proxyTimeoutSeconds: float = Field(
        default=30, gt=0, description="CP-39's timeout (connect, and each read of the streamed body)."
    )
    websocketClientId: str = Field(
        default="portal_preview", min_length=1, description="CP-40's clientId on ComfyUI's /ws."
    )
    websocketOpenTimeoutSeconds: float = Field(default=10, gt=0, description="CP-40's connect timeout.")
    websocketMaxMessageBytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest frame CP-40 accepts from ComfyUI (previews)."
    )


def _start_hint(endpoint: ServiceEndpoint) -> str:
    return f"{endpoint.describe()}; start it with POST /api/services/{COMFY_SERVICE}/start"


def _port(endpoint: ServiceEndpoint) -> str | None:
    port = endpoint.port
    return None if port is None else str(port)


def _stopped(endpoint: ServiceEndpoint, message: str) -> JsonObject:
    return {"status": "stopped", "port": _port(endpoint), "message": message}


def _error(endpoint: ServiceEndpoint, message: str) -> JsonObject:
    return {"status": "error", "port": _port(endpoint), "message": message}


def _proxy_error(message: str) -> JSONResponse:
    return JSONResponse({"error": f"Proxy error: {message}"}, status_code=500)


def create_router(ctx: GatewayContext, settings: ComfySettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    http = UpstreamHttp()
    router = APIRouter(lifespan=http.lifespan)
    outputs = Path(ctx.settings.volumes.outputs) / settings.outputsSubfolder
    index = OutputIndex(outputs, max_entries=settings.maxScanEntries)

    def comfy() -> ServiceEndpoint:
        return service_endpoint(ctx, COMFY_SERVICE)

    @router.get("/api/comfy/status")
    async def comfy_status() -> JsonObject:
        """CP-37: the ServiceInstance's state, and a /system_stats probe when it should answer."""
        endpoint = comfy()
        if endpoint.phase == ServicePhase.ERROR:
            return _error(endpoint, endpoint.describe())
        if endpoint.phase == ServicePhase.RUNNING and not endpoint.usable:
            return _error(endpoint, endpoint.describe())
        if not endpoint.usable:
            return _stopped(endpoint, f"{NOT_REACHABLE}: {_start_hint(endpoint)}")
        try:
            response = await http.client().get(
                f"{endpoint.url}/system_stats", timeout=settings.probeTimeoutSeconds
            )
        except httpx.HTTPError as error:
            return _stopped(endpoint, f"{NOT_REACHABLE}: {type(error).__name__}: {error}".rstrip(": "))
        if response.status_code != 200:
            return _error(endpoint, f"{ERROR_STATUS} ({response.status_code})")
        return {"status": "running", "port": _port(endpoint)}

    @router.get("/api/comfy/latest-image")
    async def comfy_latest_image(request: Request) -> JsonObject:
        """CP-38: the newest image in ComfyUI's output folder, with a ``/proxy/comfy/view`` URL."""
        prefix = str(request.scope.get("root_path") or "").rstrip("/")
        return await asyncio.to_thread(latest_image, index, url_prefix=prefix)

    @router.get("/proxy/comfy/{path:path}")
    async def proxy_comfy(path: str, request: Request) -> Response:
        """CP-39: GET pass-through to ComfyUI, streamed."""
        endpoint = comfy()
        if not endpoint.usable:
            return _proxy_error(f"ComfyUI is not running: {_start_hint(endpoint)}")
        try:
            upstream = await forward(
                http,
                "GET",
                endpoint.url,
                path,
                query=request.url.query,
                headers=request_headers(request.headers),
                timeout_seconds=settings.proxyTimeoutSeconds,
            )
        except httpx.HTTPError as error:
            log.warning("comfy proxy GET /%s failed: %s", path, error)
            return _proxy_error(f"{type(error).__name__}: {error}".rstrip(": "))
        return streaming_response(upstream)

    @router.websocket("/ws/comfy")
    async def comfy_websocket(websocket: WebSocket) -> None:
        """CP-40: relay to ComfyUI's /ws; on a failed connect, an error message and close."""
        endpoint = comfy()
        if not endpoint.usable:
            await _refuse(websocket, f"ComfyUI is not running: {_start_hint(endpoint)}")
            return
        url = websocket_url(endpoint.url, "/ws", f"clientId={settings.websocketClientId}")
        try:
            upstream = await connect_websocket(
                url,
                open_timeout=settings.websocketOpenTimeoutSeconds,
                max_size=settings.websocketMaxMessageBytes,
            )
        except (OSError, TimeoutError, WebSocketException) as error:
            await _refuse(websocket, f"{type(error).__name__}: {error}".rstrip(": "))
            return
        try:
            await websocket.accept()
        except BaseException:
            await upstream.close()
            raise
        await relay_websocket(websocket, upstream)

    return router


async def _refuse(websocket: WebSocket, reason: str) -> None:
    """ControlPilot's connect-failure message, then close."""
    await websocket.accept()
    message = {"type": "error", "message": f"Cannot connect to ComfyUI: {reason}"}
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await websocket.send_text(json.dumps(message))
    await close_client(websocket, 1000)
