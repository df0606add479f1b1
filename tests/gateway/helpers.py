"""Objects and waiting helpers shared by the gateway tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from kubernetes import client

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_gateway.bus import Lagged, ResourceEvent, Subscription

JsonObject = dict[str, Any]


def model_pull(name: str, display: str = "") -> JsonObject:
    """The smallest valid ModelPull (no operator runs here, so it never progresses)."""
    spec: JsonObject = {
        "source": {"type": "HuggingFace", "huggingFace": {"repo": f"org/{name}"}},
        "destination": {"modelType": "checkpoints"},
    }
    if display:
        spec["displayName"] = display
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelPull", "metadata": {"name": name}, "spec": spec}


def outside(kube_api: Any) -> client.CustomObjectsApi:
    """A synchronous client for changes made behind the gateway's back.

    Its calls block the event loop, so the informers cannot run while a test makes them: changes
    made between two awaits are changes the watch has to catch up on.
    """
    return client.CustomObjectsApi(kube_api)


async def eventually(check: Callable[[], bool], within: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


class Recorder:
    """Collects a subscription's items in a background task."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.items: list[ResourceEvent | Lagged] = []
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for item in self.subscription:
            self.items.append(item)

    @property
    def events(self) -> list[ResourceEvent]:
        return [item for item in self.items if isinstance(item, ResourceEvent)]

    def seen(self, event_type: str, name: str) -> bool:
        return any(e.type == event_type and e.name == name for e in self.events)

    def types_for(self, name: str) -> list[str]:
        return [e.type for e in self.events if e.name == name]

    async def close(self) -> None:
        self.subscription.close()
        await asyncio.wait_for(self._task, 5)


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` on a real uvicorn (WebSockets need a server); its http:// base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


JSON_TYPE = {"Content-Type": "application/json"}
HOSTILE_JSON_BODIES: list[dict[str, Any]] = [
    # JSON that Python reads but no JSON encoder writes back, numbers beyond int64, nesting deeper
    # than any reader or echo can follow, a lone surrogate: each once a 500 in some profile.
    {"content": b'{"name": NaN, "seed": Infinity, "value": -Infinity}', "headers": JSON_TYPE},
    {"json": {"name": "a", "seed": 2**70, "epochs": 2**64, "steps": -(2**70), "value": 2**63}},
    {"content": b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}", "headers": JSON_TYPE},
    {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON_TYPE},
    {
        "content": b'{"name": "\\ud800", "config_path": "\\udfff.json", '
        b'"prompt": "x\\ud800", "token": "\\ud800"}',
        "headers": JSON_TYPE,
    },
]
"""Request bodies (httpx keyword arguments) for the profiles' bad-input sweeps."""
