"""The pass-through to the HomePilot application: every endpoint this profile does not implement.

HomePilot's conversations, projects, personas, stories, studio, agentic and community endpoints
are application data; kubepilot does not re-implement them. They reach the application's own
FastAPI backend, running as the ServiceInstance ``appService`` (default ``homepilot``, of
``serviceType: homepilot``: the operator's catalog runs it from ``kubepilot/homepilot``):

- method, path, query string and body go through unchanged (the path is decoded by the server and
  encoded again, so ``%2F`` arrives as ``/``; a path no URL can hold is a 400); the request body
  is streamed (an upload is never held whole in the gateway's memory) and so is the answer
  (status, headers and bytes as the application sent them);
- hop-by-hop headers are dropped both ways and the gateway's own credentials (cookie,
  authorization) are not sent (``upstream.request_headers``); ``X-API-Key``, HomePilot's own
  header, goes through; ``X-Forwarded-*`` tell the application the address the client used;
- each request has the timeout of its route class (``ProxySettings``): connect, and each read;
- when the ServiceInstance is missing or not running, the answer is 503 ``{"detail": ...}``
  naming it and saying to start it; no response (refused, reset) is a 502, a timeout a 504.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
from fastapi import APIRouter, HTTPException, Request
from starlette.responses import Response

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.homepilot.config import APP_SERVICE_TYPE, HomePilotSettings
from kubepilot_gateway.upstream import UpstreamHttp, request_headers, service_endpoint, streaming_response

log = logging.getLogger(__name__)

PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
PATH_SAFE = "/:@!$&'()*+,;=[]"
"""Characters a path keeps as they are when it is encoded again for the application (RFC 3986's
path characters; letters, digits and ``-._~`` always stay)."""


class AppProxy:
    """Sends requests to the HomePilot application ServiceInstance."""

    def __init__(self, ctx: GatewayContext, settings: HomePilotSettings, http: UpstreamHttp) -> None:
        self.ctx = ctx
        self.settings = settings
        self.http = http

    def not_running(self) -> str | None:
        """Why the application cannot be reached now (a sentence for the 503), or None when it can."""
        endpoint = service_endpoint(self.ctx, self.settings.appService)
        if endpoint.usable:
            return None
        return (
            f"The HomePilot application is not running: {endpoint.describe()}. Start it (a "
            f"ServiceInstance named {self.settings.appService!r} with serviceType: "
            f"{APP_SERVICE_TYPE.value} and running: true) to use this endpoint."
        )

    def url(self) -> str:
        """The application's base URL; raises the 503 when it is not running."""
        reason = self.not_running()
        if reason is not None:
            raise HTTPException(status_code=503, detail=reason)
        return service_endpoint(self.ctx, self.settings.appService).url

    async def forward(self, request: Request, path: str, *, body: bytes | None = None) -> Response:
        """Pass ``request`` to the application's ``path`` and stream its answer back.

        ``body`` replaces the request's body when the route already read it; otherwise the body
        streams through as it arrives.
        """
        base = self.url()
        headers = request_headers(request.headers)
        client_host = request.client.host if request.client else ""
        forwarded = {
            "x-forwarded-host": request.headers.get("host", ""),
            "x-forwarded-proto": request.url.scheme,
            "x-forwarded-prefix": str(request.scope.get("root_path") or ""),
        }
        if client_host:
            forwarded["x-forwarded-for"] = client_host
        headers += [(name, value) for name, value in forwarded.items() if value]
        target = base.rstrip("/") + "/" + encoded_path(path.lstrip("/"))
        try:
            url = httpx.URL(target, query=request.url.query.encode("latin-1"))
        except httpx.InvalidURL as error:
            # Not the error's text: it quotes the application's address.
            raise HTTPException(
                status_code=400, detail="The request URL cannot be passed to the HomePilot application"
            ) from error
        content: bytes | AsyncIterator[bytes] | None = body
        if content is None and _has_body(request):
            content = request.stream()
        timeout = self.settings.proxy.timeout_for("/" + path.lstrip("/"))
        client = self.http.client()
        upstream_request = client.build_request(
            request.method, url, headers=headers, content=content, timeout=httpx.Timeout(timeout)
        )
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.TimeoutException as error:
            log.warning("HomePilot %s /%s timed out: %s", request.method, path, error)
            raise HTTPException(
                status_code=504, detail=f"The HomePilot application did not answer within {timeout:g}s"
            ) from error
        except httpx.HTTPError as error:
            log.warning("HomePilot %s /%s failed: %s", request.method, path, error)
            raise HTTPException(
                status_code=502,
                detail=f"The HomePilot application could not be reached: {type(error).__name__}",
            ) from error
        return streaming_response(upstream)

    async def call(
        self, method: str, path: str, request: Request, *, json_body: object | None = None
    ) -> httpx.Response:
        """One JSON call of the profile's own to the application (``/story/...`` reads and writes),
        with the client's ``X-API-Key`` (HomePilot's own key) and the route class's timeout; the
        answer is read whole (these are small JSON documents). 503 when the application is not
        running, 502 when it does not answer, 504 on a timeout."""
        base = self.url()
        headers = {"accept": "application/json"}
        api_key = request.headers.get("x-api-key")
        if api_key:
            headers["x-api-key"] = api_key
        timeout = self.settings.proxy.timeout_for(path)
        try:
            return await self.http.client().request(
                method,
                base.rstrip("/") + path,
                headers=headers,
                json=json_body,
                timeout=httpx.Timeout(timeout),
            )
        except httpx.TimeoutException as error:
            raise HTTPException(
                status_code=504, detail=f"The HomePilot application did not answer within {timeout:g}s"
            ) from error
        except httpx.HTTPError as error:
            raise HTTPException(
                status_code=502,
                detail=f"The HomePilot application could not be reached: {type(error).__name__}",
            ) from error


def encoded_path(path: str) -> str:
    """``path`` (decoded by the server) encoded again, so that "%", "?", "#" and control characters
    stay in the path and a ``.``/``..`` segment reaches the application as sent (a URL client
    would resolve it away)."""
    segments = [quote(segment, safe=PATH_SAFE) for segment in path.split("/")]
    return "/".join(s.replace(".", "%2E") if s in (".", "..") else s for s in segments)


def _has_body(request: Request) -> bool:
    """Whether the client sends a body (a GET without one must not become a chunked empty body)."""
    length = request.headers.get("content-length")
    return bool(request.headers.get("transfer-encoding")) or (length is not None and length != "0")


def create_router(proxy: AppProxy) -> APIRouter:
    """The catch-all route; include it last, after every route the profile implements."""
    router = APIRouter()

    @router.api_route("/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def pass_through(path: str, request: Request) -> Response:
        """Everything the profile does not implement goes to the application."""
        return await proxy.forward(request, path)

    return router
