"""The request guard around every served profile: latency metrics, access log, last-resort 500.

It wraps a profile's whole ASGI app (inside the combined listener's mount), so it sees every
request exactly once, labels it with the route template the profile's router matched, counts
open WebSockets, and makes sure an exception escaping the app is logged once, with its
traceback, and answered (the profile's envelope already answered it when one is installed).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kubepilot_gateway.app.metrics import GatewayMetrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("kubepilot_gateway.access")

UNMATCHED = "<unmatched>"
"""The route label of a request no route matched (a 404): raw paths would be unbounded."""

PROFILE_SCOPE_KEY = "kubepilot.profile"
REDACTED = "***"
_SENSITIVE = re.compile(r"token|secret|passw|key|auth|signature|credential|session|cookie", re.IGNORECASE)
_FALLBACK_500 = b'{"detail":"Internal Server Error"}'


def route_template(scope: MutableMapping[str, Any]) -> str:
    """The template of the route the app's router matched in ``scope``, relative to the app."""
    # FastAPI keeps the full template of a route from an included router here; the route object
    # itself only knows its path inside that router.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = fastapi_scope.get("effective_route_context")
        path = getattr(effective, "path_format", None)
        if isinstance(path, str) and path:
            return path
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def redact_query(query_string: bytes | str) -> str:
    """The query string with the value of every parameter that may hold a secret replaced."""
    text = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    pairs = parse_qsl(text, keep_blank_values=True)
    return "&".join(
        f"{quote(key, safe='')}={REDACTED if _SENSITIVE.search(key) else quote(value, safe='')}"
        for key, value in pairs
    )


class ObservedApp:
    """``app`` as profile ``profile`` serves it: measured, logged and guarded.

    ``state`` is merged into each request's ``scope["state"]``: what the profile's lifespan
    yielded, when the gateway (not the server) runs that lifespan.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        profile: str,
        metrics: GatewayMetrics | None = None,
        access_log_enabled: bool = True,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.profile = profile
        self.metrics = metrics
        self.access_log_enabled = access_log_enabled
        self.state = state if state is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # A copy, so a route the outer router matched (the combined listener's mount) cannot pass
        # for the profile's own when the profile matched none.
        inner: Scope = {key: value for key, value in scope.items() if key not in ("route", "endpoint")}
        inner[PROFILE_SCOPE_KEY] = self.profile
        if self.state:
            inner["state"] = {**self.state, **(scope.get("state") or {})}
        websocket = scope["type"] == "websocket"
        status = 0
        accepted = False
        started = time.perf_counter()

        async def observed_send(message: Message) -> None:
            nonlocal status, accepted
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
            elif kind == "websocket.accept" and not accepted:
                accepted = True
                if self.metrics is not None:
                    self.metrics.websocket_clients.labels(self.profile).inc()
            elif kind == "websocket.http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(inner, receive, observed_send)
        except Exception:
            log.exception(
                "unhandled error in %s %s %s", self.profile, scope.get("method", "WS"), scope["path"]
            )
            if not websocket and status == 0:
                status = 500
                await self._send_500(send)
            elif not websocket and status < 500:
                # The response had started; the client sees a broken stream. Count it as failed.
                status = 500
        finally:
            if accepted and self.metrics is not None:
                self.metrics.websocket_clients.labels(self.profile).dec()
            self._record(scope, inner, status, accepted, time.perf_counter() - started)

    @staticmethod
    async def _send_500(send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_FALLBACK_500)).encode()),
        ]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": _FALLBACK_500})

    def _record(self, scope: Scope, inner: Scope, status: int, accepted: bool, seconds: float) -> None:
        route = route_template(inner)
        websocket = scope["type"] == "websocket"
        method = "WEBSOCKET" if websocket else str(scope.get("method", ""))
        if websocket:
            status = 101 if accepted else (status or 403)
        elif self.metrics is not None:
            # A WebSocket's lifetime is not a latency: only HTTP requests go in the histogram.
            self.metrics.observe_request(self.profile, route, method, status, seconds)
        if not self.access_log_enabled or not access_log.isEnabledFor(logging.INFO):
            return
        entry: dict[str, Any] = {
            "event": "request",
            "profile": self.profile,
            "method": method,
            "route": route,
            "path": scope.get("path", ""),
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        query = scope.get("query_string") or b""
        if query:
            entry["query"] = redact_query(query)
        client = scope.get("client")
        if client:
            entry["client"] = client[0]
        access_log.info(json.dumps(entry, separators=(",", ":")))
