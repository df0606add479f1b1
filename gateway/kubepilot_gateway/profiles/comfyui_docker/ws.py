"""The dashboard's WebSocket ``/ws``: channel subscriptions fed from the event bus.

Client → server: ``subscribe`` / ``unsubscribe`` with a ``channels`` array (``downloads``,
``queue``, ``system``, ``workflows``), and ``action`` ``install_preset`` with ``data.preset_id`` (or
``preset_id`` beside ``action``, as the product's architecture document writes it).
Server → client: ``download_progress``, ``download_complete`` and ``error`` (``DOWNLOAD_FAILED``)
from this profile's ModelPull changes on the bus, each only while the client is subscribed to
``downloads``; ``system_status`` (CPU, memory, GPU and disk percents) every
``systemStatusSeconds`` while subscribed to ``system``; ``queue_update`` (integer counts and the
running task) on every change of this profile's ComfyUI queue (an execution added, started,
finished or removed) while subscribed to ``queue``; ``workflow_progress`` on every change of a
running execution's ``status.progress``, ``workflow_output`` when one completes with images and an
``error`` ``EXECUTION_FAILED`` (details: ``prompt_id`` and the job's error code) when one fails,
while subscribed to ``workflows`` (shapes in ``comfyui``).

With auth on, the token comes as ``?token=`` or in a first ``{"type": "auth", "token"}`` message
(within ten seconds); a missing or invalid one is answered with an ``error`` ``UNAUTHORIZED`` and
the socket is closed (1008). A valid one is answered ``{"type": "authenticated", "user"}``.

Our additions, which the seed leaves open: a ``subscribed`` / ``unsubscribed`` answer naming the
connection's channels (a client knows from then on that the server sends them), an
``action_result`` answer carrying what ``POST /api/presets/{id}/install`` answers, and ``error``
messages (``INVALID_REQUEST``, ``FORBIDDEN`` for a read-only ``viewer``, or the install's own code)
for anything the server cannot do.

The bus is subscribed before the first message is read, so a change made after the client's
``subscribed`` arrives is never missed. When the bus reports lost events (``Lagged``), a
``download_progress`` per unfinished download, a ``queue_update`` and a ``workflow_progress`` per
running execution re-send the current state (to the channels subscribed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket
from starlette.websockets import WebSocketDisconnect

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.bus import Lagged, ResourceEvent
from kubepilot_gateway.profiles.comfyui_docker import comfyui as cf
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from kubepilot_gateway.profiles.comfyui_docker import tokens
from kubepilot_gateway.profiles.comfyui_docker.auth import Authenticator, may_write
from kubepilot_gateway.profiles.comfyui_docker.dashboard import MODEL_PULLS, Dashboard
from kubepilot_gateway.profiles.comfyui_docker.errors import parse_json
from kubepilot_gateway.profiles.comfyui_docker.executions import GENERATION_JOBS, Executions

JsonObject = dict[str, Any]
CHANNELS = ("downloads", "queue", "system", "workflows")
AUTH_WAIT_SECONDS = 10.0
"""How long a client with auth on has to send its ``auth`` message."""
POLICY_VIOLATION = 1008


def error_message(code: str, message: str, details: Any = None) -> JsonObject:
    return {"type": "error", "data": {"code": code, "message": message, "details": details or {}}}


class Connection:
    """One client: its channels and a send lock (the bus pump and the reader both send)."""

    def __init__(
        self, websocket: WebSocket, board: Dashboard, executions: Executions, *, may_write: bool = True
    ) -> None:
        self.websocket = websocket
        self.may_write = may_write
        self.board = board
        self.executions = executions
        self.channels: set[str] = set()
        self._lock = asyncio.Lock()
        self._queue_seen = cf.queue_signature(executions.jobs())

    async def send(self, message: JsonObject) -> None:
        async with self._lock:
            await self.websocket.send_text(json.dumps(message))

    async def pump(self, events: Any) -> None:
        """Bus → client, filtered by channel."""
        async for item in events:
            if isinstance(item, Lagged):
                await self._resync()
            elif isinstance(item, ResourceEvent) and item.kind == GENERATION_JOBS.kind:
                await self._execution_changed(item)
            elif isinstance(item, ResourceEvent) and "downloads" in self.channels:
                await self._download_changed(item)

    async def _download_changed(self, item: ResourceEvent) -> None:
        if item.type == "DELETED":
            return
        labels = dl.meta(item.object).get("labels") or {}
        if labels.get(LABEL_PROFILE) != dl.PROFILE_NAME:
            return
        for message in dl.events_for(item.old, item.object):
            await self.send(message)

    async def _execution_changed(self, item: ResourceEvent) -> None:
        if not cf.is_ours(item.object):
            return
        await self._queue_changed(force=False)
        if "workflows" in self.channels and item.type != "DELETED":
            for message in cf.workflow_events(item.old, item.object, self.executions.outputs_root):
                await self.send(message)

    async def _queue_changed(self, *, force: bool) -> None:
        """A ``queue_update`` when the queue differs from the last one this client was sent (or
        ``force``); the queue is tracked whether or not the client is subscribed."""
        jobs = self.executions.jobs()
        signature = cf.queue_signature(jobs)
        changed = force or signature != self._queue_seen
        self._queue_seen = signature
        if changed and "queue" in self.channels:
            await self.send(cf.queue_update(jobs))

    async def _resync(self) -> None:
        """After lost events: the current state of every subscribed channel's subjects."""
        if "downloads" in self.channels:
            for pull in self.board.pulls():
                if dl.phase(pull) in dl.ACTIVE:
                    await self.send(dl.progress_message(pull))
        await self._queue_changed(force=True)
        if "workflows" in self.channels:
            for job in cf.queue_order(self.executions.jobs()):
                if cf.phase(job) == "Processing" and cf.status(job).get("progress"):
                    await self.send(cf.progress_message(job))

    async def system_ticks(self) -> None:
        """``system_status`` every ``systemStatusSeconds`` while the client is subscribed to ``system``."""
        while True:
            await asyncio.sleep(self.board.settings.systemStatusSeconds)
            if "system" in self.channels:
                await self.send({"type": "system_status", "data": await self.board.usage()})

    async def handle(self, raw: str) -> None:
        try:
            message = parse_json(raw)
        except ValueError:
            await self.send(error_message("INVALID_REQUEST", "Messages must be JSON objects"))
            return
        if not isinstance(message, dict):
            await self.send(error_message("INVALID_REQUEST", "Messages must be JSON objects"))
            return
        kind = message.get("type")
        if kind in ("subscribe", "unsubscribe"):
            await self._subscription(kind, message.get("channels"))
        elif kind == "action":
            await self._action(message)
        else:
            await self.send(
                error_message("INVALID_REQUEST", f"Unknown message type {kind!r}", {"type": kind})
            )

    async def _subscription(self, kind: str, channels: Any) -> None:
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            await self.send(error_message("INVALID_REQUEST", "channels must be an array of channel names"))
            return
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            await self.send(
                error_message(
                    "INVALID_REQUEST", f"Unknown channels: {', '.join(unknown)}", {"available": CHANNELS}
                )
            )
            return
        if kind == "subscribe":
            self.channels.update(channels)
        else:
            self.channels.difference_update(channels)
        await self.send({"type": f"{kind}d", "channels": sorted(self.channels)})

    async def _action(self, message: JsonObject) -> None:
        action = message.get("action")
        raw_data = message.get("data")
        data: JsonObject = dict(raw_data) if isinstance(raw_data, dict) else {}
        if "preset_id" not in data and "preset_id" in message:
            # The product's architecture document writes the preset id beside the action.
            data["preset_id"] = message["preset_id"]
        if action != "install_preset" or not isinstance(data.get("preset_id"), str):
            await self.send(
                error_message(
                    "INVALID_REQUEST",
                    "Supported action: install_preset with data.preset_id",
                    {"action": action},
                )
            )
            return
        if not self.may_write:
            await self.send(error_message("FORBIDDEN", "Insufficient permissions: this user may only read"))
            return
        try:
            answer = await self.board.install(
                data["preset_id"],
                force=bool(data.get("force", False)),
                priority=str(data.get("priority", "normal")),
            )
        except HTTPException as error:
            detail: JsonObject = error.detail if isinstance(error.detail, dict) else {}
            await self.send(
                error_message(
                    str(detail.get("code") or "ERROR"),
                    str(detail.get("message") or error.detail),
                    detail.get("details"),
                )
            )
            return
        await self.send({"type": "action_result", "action": "install_preset", "data": answer})


async def authenticate(websocket: WebSocket, auth: Authenticator) -> tokens.Claims | None:
    """With auth on: the claims of the token of ``?token=``, else of a first ``auth`` message; None
    (the client told why and the socket closed) when there is none or it is not valid."""
    token = websocket.query_params.get("token")
    if not token:
        try:
            async with asyncio.timeout(AUTH_WAIT_SECONDS):
                first = await receive_text(websocket)
            message = parse_json(first) if first is not None else None
        except (TimeoutError, ValueError):
            message = None
        if (
            isinstance(message, dict)
            and message.get("type") == "auth"
            and isinstance(message.get("token"), str)
        ):
            token = message["token"]
    try:
        claims = await auth.check(token)
    except HTTPException as error:
        detail: JsonObject = error.detail if isinstance(error.detail, dict) else {}
        code, text = str(detail.get("code") or "UNAUTHORIZED"), str(detail.get("message") or "")
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.send_text(json.dumps(error_message(code, text)))
            await websocket.close(POLICY_VIOLATION)
        return None
    user = {"username": claims.username, "role": claims.role}
    await websocket.send_text(json.dumps({"type": "authenticated", "user": user}))
    return claims


async def receive_text(websocket: WebSocket) -> str | None:
    """The next text frame (a binary one is read as UTF-8); None once the client has gone."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        if message.get("text") is not None:
            return str(message["text"])
        if message.get("bytes") is not None:
            return bytes(message["bytes"]).decode("utf-8", errors="replace")


def create_router(board: Dashboard, executions: Executions, auth: Authenticator) -> APIRouter:
    router = APIRouter()

    @router.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        claims = await authenticate(websocket, auth) if auth.enabled else None
        if auth.enabled and claims is None:
            return
        writer = claims is None or may_write(claims)
        connection = Connection(websocket, board, executions, may_write=writer)
        kinds = [MODEL_PULLS.kind, GENERATION_JOBS.kind]
        async with board.ctx.bus.subscribe(kinds=kinds, namespace=board.namespace) as events:
            pump = asyncio.create_task(connection.pump(events))
            ticks = asyncio.create_task(connection.system_ticks())
            try:
                while (text := await receive_text(websocket)) is not None:
                    await connection.handle(text)
            except WebSocketDisconnect:
                pass
            finally:
                for task in (pump, ticks):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                        await task

    return router
