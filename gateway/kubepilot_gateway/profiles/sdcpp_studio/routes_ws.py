"""The WebSocket at ``/ws``: ``subscribe`` / ``unsubscribe`` one ``channel`` per message; the
queue and generations events (GenerationJobs) and the models channel's ``model_status_changed``
(the models' ServiceInstances, :mod:`.services`) come from the event bus (the watch), never from
polling.

Product mode also sends the product's ``connected`` greeting and ``subscribed`` acknowledgements;
both modes answer ``{"type": "ping"}`` with ``pong`` (a client can use it to know its earlier
messages were handled).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.profiles.sdcpp_studio import events as ev
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio import services as svc
from kubepilot_gateway.profiles.sdcpp_studio.runtime import GENERATION_JOBS, Runtime

JsonObject = dict[str, Any]


def create_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    compat = runtime.settings.compat
    product = compat == "product"

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        channels: set[str] = set()
        if product:
            greeting = {
                "type": "connected",
                "channels": list(ev.CHANNELS),
                "timestamp": int(time.time() * 1000),
            }
            await websocket.send_json(greeting)
        kinds = [GENERATION_JOBS.kind, svc.SERVICE_INSTANCES.kind]
        subscription = runtime.ctx.bus.subscribe(kinds=kinds, namespace=runtime.namespace)

        def port_of(model_id: str) -> int | None:
            entry = runtime.settings.model(model_id)
            return entry.port if entry is not None else None

        async def pump() -> None:
            async for item in subscription:
                if not isinstance(item, ResourceEvent):
                    continue
                if item.kind == svc.SERVICE_INSTANCES.kind:
                    new = None if item.type == "DELETED" else item.object
                    old = item.object if item.type == "DELETED" else item.old
                    model_id = svc.model_id_of(item.object)
                    message = svc.status_event(old, new, compat, port_of(model_id))
                    if message is not None and "models" in channels:
                        await websocket.send_json(message)
                    continue
                if item.type == "DELETED":
                    continue
                for channel, payload in ev.job_messages(item.old, item.object, compat):
                    if channel in channels:
                        await websocket.send_json(payload)

        sender = asyncio.create_task(pump())
        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                # A binary frame is read as UTF-8 text, as the product's ws library hands it over.
                text = frame.get("text")
                raw: str | bytes = text if isinstance(text, str) else frame.get("bytes") or b""
                try:
                    msg = tr.parse_json(raw)  # bounded depth, no lone surrogate to echo back
                except tr.BadRequest:
                    continue  # the product ignores what it cannot parse
                if not isinstance(msg, dict):
                    continue
                kind, channel = msg.get("type"), msg.get("channel")
                if kind == "subscribe" and isinstance(channel, str) and channel:
                    channels.add(channel)
                    if product:
                        ack = {"type": "subscribed", "channel": channel, "timestamp": int(time.time() * 1000)}
                        await websocket.send_json(ack)
                elif kind == "unsubscribe" and isinstance(channel, str):
                    channels.discard(channel)
                elif kind == "ping":
                    await websocket.send_json({"type": "pong", "timestamp": int(time.time() * 1000)})
        except WebSocketDisconnect:
            pass
        finally:
            subscription.close()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    return router
