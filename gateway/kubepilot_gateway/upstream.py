"""Reaching a ServiceInstance's own API: its endpoint, an HTTP pass-through and a WebSocket relay.

Some endpoints are neither a CR nor a file: they belong to a program running as a ServiceInstance
(ComfyUI, the copilot sidecar, ...), and the gateway passes them through to it. This module holds
what such routes share and knows nothing of any one profile, so other profiles can use it too:

- ``service_endpoint`` reads the ServiceInstance from the informer cache and tells whether its
  endpoint (``status.endpoint``, the cluster-IP URL the operator writes) can be used now;
- ``UpstreamHttp`` is one pooled HTTP client per app, opened on first use and closed by the
  router's lifespan; it ignores proxy environment variables (endpoints are cluster-internal);
- ``forward`` sends a request and ``streaming_response`` answers with the upstream body as it
  arrives, hop-by-hop headers dropped both ways (RFC 9110 §7.6.1) and the client's credentials
  (cookie, authorization) never sent to the service;
- ``connect_websocket`` and ``relay_websocket`` bridge a client's WebSocket to the service's,
  text and binary frames both ways; whichever side closes first closes the other, and no task
  outlives the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi import WebSocket
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kubepilot_api.serviceinstance import ServicePhase
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import resource_for

JsonObject = dict[str, Any]
SERVICE_INSTANCES = resource_for("ServiceInstance")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1)."""
CLIENT_CREDENTIALS = frozenset({"cookie", "authorization"})
"""The gateway's own credentials: a service behind it must not receive them."""

_UNSENDABLE_CLOSE_CODES = frozenset({1005, 1006, 1015})
"""Close codes that only report what happened and must never be sent in a close frame."""


# -- the endpoint --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceEndpoint:
    """What the cache says about a ServiceInstance's endpoint."""

    name: str
    namespace: str
    exists: bool
    phase: str
    """``status.phase``; '' when no status was written yet (or no object)."""
    ready: bool
    """``status.ready``: the operator's probe found the endpoint answering."""
    url: str
    """``status.endpoint`` without a trailing slash; '' when none."""
    reason: str = ""
    message: str = ""
    """The failure (Degraded, else Available condition) when there is one."""

    @property
    def usable(self) -> bool:
        """Running, ready and with a URL: worth sending a request to."""
        return self.phase == ServicePhase.RUNNING and self.ready and bool(self.url)

    @property
    def port(self) -> int | None:
        """The endpoint's port (the URL scheme's default when it names none)."""
        if not self.url:
            return None
        parts = urlsplit(self.url)
        try:
            explicit = parts.port
        except ValueError:
            return None
        return explicit or {"http": 80, "https": 443}.get(parts.scheme)

    def describe(self) -> str:
        """A sentence for a person: which ServiceInstance, and what state it is in."""
        ref = f"ServiceInstance {self.namespace}/{self.name}"
        if not self.exists:
            return f"{ref} does not exist"
        phase = self.phase or "Pending"
        if self.phase == ServicePhase.RUNNING and not self.ready:
            detail = "is running but its endpoint does not answer yet"
        elif self.phase == ServicePhase.RUNNING and not self.url:
            detail = "is running but reports no endpoint"
        else:
            detail = f"is {phase}"
        failure = ": ".join(part for part in (self.reason, self.message) if part)
        return f"{ref} {detail}" + (f" ({failure})" if failure else "")


def _failure(status: JsonObject) -> tuple[str, str]:
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    for condition_type in ("Degraded", "Available"):
        for condition in conditions:
            if condition.get("type") != condition_type or not condition.get("reason"):
                continue
            if condition_type == "Degraded" and condition.get("status") != "True":
                continue
            if condition_type == "Available" and condition.get("status") == "True":
                continue
            return str(condition["reason"]), str(condition.get("message") or "")
    return "", ""


def endpoint_of(name: str, namespace: str, obj: JsonObject | None) -> ServiceEndpoint:
    """The endpoint facts of ``obj`` (the ServiceInstance ``name``, or None when there is none)."""
    if obj is None:
        return ServiceEndpoint(name, namespace, False, "", False, "")
    raw_status = obj.get("status")
    status: JsonObject = raw_status if isinstance(raw_status, dict) else {}
    reason, message = _failure(status)
    return ServiceEndpoint(
        name=name,
        namespace=namespace,
        exists=True,
        phase=str(status.get("phase") or ""),
        ready=bool(status.get("ready")),
        url=str(status.get("endpoint") or "").rstrip("/"),
        reason=reason,
        message=message,
    )


def service_endpoint(ctx: GatewayContext, name: str) -> ServiceEndpoint:
    """The endpoint of ServiceInstance ``name`` in the gateway's namespace, from the cache."""
    namespace = ctx.store.namespace
    return endpoint_of(name, namespace, ctx.cache.get(SERVICE_INSTANCES, name, namespace))


# -- HTTP ----------------------------------------------------------------------------------------


class UpstreamHttp:
    """One pooled HTTP client for an app's upstream calls, opened on first use.

    ``lifespan`` closes it when the app stops (pass it to the router); a call after that opens a
    new one, so an app whose lifespan is not run (a test over ASGI) still works.
    """

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            # trust_env off: endpoints are cluster IPs, never reached through an HTTP proxy.
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: object) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.aclose()


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    """The header names a Connection header lists (those are hop-by-hop too)."""
    value = headers.get("connection", "")
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def end_to_end_headers(
    headers: Iterable[tuple[str, str]], connection: str = "", *, drop: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones (and those ``connection`` names) and ``drop``."""
    excluded = HOP_BY_HOP | {name.lower() for name in drop}
    excluded |= _connection_tokens({"connection": connection})
    return [(name, value) for name, value in headers if name.lower() not in excluded]


def request_headers(headers: Mapping[str, str], *, drop: Iterable[str] = ()) -> list[tuple[str, str]]:
    """A client's request headers as the service should get them: no hop-by-hop header, no
    ``Host`` (httpx sets the upstream's), no credentials of the gateway's own."""
    items = [(name, value) for name, value in headers.items()]
    return end_to_end_headers(
        items, headers.get("connection", ""), drop={"host", "content-length", *CLIENT_CREDENTIALS, *drop}
    )


async def forward(
    http: UpstreamHttp,
    method: str,
    base_url: str,
    path: str,
    *,
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    timeout_seconds: float,
) -> httpx.Response:
    """Send ``method base_url/path?query`` and return the response with its body unread (stream it
    with ``streaming_response``). Raises ``httpx.HTTPError`` when no response comes."""
    parts = urlsplit(base_url)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + path.lstrip("/"), query, ""))
    client = http.client()
    request = client.build_request(method, url, headers=headers, timeout=httpx.Timeout(timeout_seconds))
    return await client.send(request, stream=True)


def streaming_response(upstream: httpx.Response) -> StreamingResponse:
    """The upstream's status, end-to-end headers and body (bytes as they arrive, still encoded),
    closing the upstream response when the body is done or the client went away."""
    headers = end_to_end_headers(upstream.headers.multi_items(), upstream.headers.get("connection", ""))
    response = StreamingResponse(
        upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
    )
    # Replace, not merge: StreamingResponse set a default content-type the upstream may not have.
    response.raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
    ]
    return response


# -- WebSocket -----------------------------------------------------------------------------------


def websocket_url(base_url: str, path: str, query: str = "") -> str:
    """``base_url`` (http or https) as the ws or wss URL of ``path?query``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/" + path.lstrip("/"), query, ""))


def connect_websocket(url: str, *, open_timeout: float, max_size: int | None) -> connect:
    """An (awaitable, async-with) connection to the service's WebSocket at ``url``.

    Raises ``OSError`` (refused, unreachable), ``TimeoutError`` or a ``websockets`` exception
    (refused handshake) when awaited.
    """
    return connect(url, open_timeout=open_timeout, max_size=max_size, proxy=None, compression=None)


def _sendable(code: int | None) -> int:
    if code is None or code in _UNSENDABLE_CLOSE_CODES or not 1000 <= code <= 4999:
        return 1000 if code in (None, 1005) else 1011
    return code


async def _client_to_upstream(client: WebSocket, upstream: ClientConnection) -> int:
    """Relay until the client disconnects; its close code."""
    while True:
        message = await client.receive()
        if message["type"] == "websocket.disconnect":
            return int(message.get("code") or 1000)
        data = message.get("bytes")
        await upstream.send(data if data is not None else str(message.get("text") or ""))


async def _upstream_to_client(client: WebSocket, upstream: ClientConnection) -> int:
    """Relay until the service closes; its close code."""
    with contextlib.suppress(ConnectionClosed):
        async for message in upstream:
            if isinstance(message, bytes):
                await client.send_bytes(message)
            else:
                await client.send_text(message)
    return _sendable(upstream.close_code)


async def relay_websocket(client: WebSocket, upstream: ClientConnection) -> None:
    """Relay frames between an accepted client WebSocket and ``upstream`` until one side closes,
    then close the other (the service's close code is passed on to the client)."""
    to_upstream = asyncio.create_task(_client_to_upstream(client, upstream))
    to_client = asyncio.create_task(_upstream_to_client(client, upstream))
    try:
        await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_client):
            task.cancel()
        outcome = await asyncio.gather(to_upstream, to_client, return_exceptions=True)
    client_code = outcome[0] if isinstance(outcome[0], int) else None
    if client_code is not None:
        # The client left: say goodbye to the service with the client's code.
        await upstream.close(code=_sendable(client_code))
        return
    await upstream.close()
    # The service closed (pass its code on), or a side failed (1011: internal error).
    await close_client(client, upstream.close_code if upstream.close_code is not None else 1011)


async def close_client(client: WebSocket, code: int = 1000) -> None:
    """Close the client's WebSocket unless it is closed already."""
    if client.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
        await client.close(code=_sendable(code))
