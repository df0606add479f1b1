"""OT-WS: ``/ws``, pushed to every client without any subscription.

On open the client gets ``{"type": "connected", "data": <OT-01 state>}``; the plain-text message
``ping`` (not JSON; a JSON ``"ping"`` string is accepted too) gets ``{"type": "pong"}``; every
change of the current session's rendered state is pushed as ``training_state``, and its sample
passes as ``sample_*`` (see ``events``). The feed is the gateway's event bus (the TrainingRun
watch), never a poll: each connection subscribes to TrainingRun events in the namespace,
re-renders the current session on each, and sends it when it differs from what that client last
got. A client that lagged behind the bus gets the current state (nothing older is worth sending;
sample messages it lost are lost). Other client messages are ignored, as the seed defines none.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from kubepilot_gateway import runslot
from kubepilot_gateway.bus import Lagged, ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import resource_for
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.profiles.onetrainer.events import sample_events
from kubepilot_gateway.upstream import close_client

JsonObject = dict[str, Any]
TRAINING_RUNS = resource_for("TrainingRun")
PING = "ping"
log = logging.getLogger(__name__)

MAX_PING_FRAME = 256
"""Longest frame read as a possible ``ping`` (the JSON string, escaped and padded, fits well within):
a longer one is ignored unread, so a client cannot make the gateway parse megabytes or nest JSON
deeper than Python's reader goes (a ``RecursionError`` once closed the socket)."""


def is_ping(frame: str | bytes) -> bool:
    """The seed's plain-text ``ping`` (a JSON-encoded ``"ping"`` string too), in a text frame or a
    binary one read as UTF-8; never raises, whatever the frame holds."""
    if len(frame) > MAX_PING_FRAME:
        return False
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            return False
    stripped = frame.strip()
    if stripped == PING:
        return True
    try:
        return bool(json.loads(stripped) == PING)
    except (ValueError, RecursionError):
        return False


def ours(event: ResourceEvent | Lagged, run: JsonObject | None) -> bool:
    """Whether ``event`` is a change of the current session (whose sample passes are sent)."""
    if not isinstance(event, ResourceEvent) or run is None or event.type == "DELETED":
        return False
    return bool(event.name == run["metadata"]["name"])


def create_router(ctx: GatewayContext, prefix: str) -> APIRouter:
    router = APIRouter()
    namespace = ctx.store.namespace

    def current() -> JsonObject | None:
        runs = ctx.cache.list(TRAINING_RUNS, namespace, labels={ot.LABEL_SLOT: prefix})
        return runslot.current_run(prefix, runs)

    def state() -> JsonObject:
        return ot.training_state(current())

    @router.websocket("/ws")
    async def websocket(socket: WebSocket) -> None:
        await socket.accept()
        send_lock = asyncio.Lock()

        async def send(message: JsonObject) -> None:
            async with send_lock:
                await socket.send_text(json.dumps(message))

        # Subscribed before the snapshot, so no change between the two is lost.
        events = ctx.bus.subscribe(kinds=[TRAINING_RUNS.kind], namespace=namespace)

        async def push() -> None:
            last = state()
            await send({"type": "connected", "data": last})
            async for event in events:
                run = current()
                now = ot.training_state(run)
                if now != last:
                    last = now
                    await send({"type": "training_state", "data": now})
                if ours(event, run):
                    assert isinstance(event, ResourceEvent)
                    for message in sample_events(event.old, event.object):
                        await send(message)

        async def receive() -> None:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                # Text or binary (receive_text() would raise KeyError on a binary frame).
                frame: str | bytes | None = message.get("text")
                if frame is None:
                    frame = message.get("bytes")
                if frame is not None and is_ping(frame):
                    await send({"type": "pong"})

        tasks = [asyncio.create_task(push()), asyncio.create_task(receive())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            events.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except (asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    pass  # the client left (a send after its close raises RuntimeError)
                except Exception:  # a defect: say so instead of closing as if nothing happened
                    log.exception("OneTrainer WebSocket task failed")
            # Not socket.close(): after the client left it raises WebSocketDisconnect (a traceback
            # in the server log at every ordinary disconnect); close_client checks and suppresses.
            await close_client(socket, 1000)

    return router
