"""ControlPilot's HTTP middleware: the no-cache headers it sets on every ``/api/*`` answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

NO_CACHE_HEADERS: dict[str, str] = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
    "Cloudflare-Cache-Status": "BYPASS",
    "CF-Cache-Status": "BYPASS",
    "CDN-Cache-Control": "no-store",
}
"""The six headers ControlPilot sets (seed-api-inventory §1.1, from its implementation)."""


def is_api_path(request: Request) -> bool:
    """Whether the request is under ``/api/`` of this app, also when mounted under a prefix."""
    path = str(request.scope.get("path", ""))
    root = str(request.scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == "/api" or path.startswith("/api/")


async def no_cache_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """``app.middleware("http")(no_cache_middleware)``: no-cache headers on every ``/api/*`` answer,
    errors included."""
    response = await call_next(request)
    if is_api_path(request):
        response.headers.update(NO_CACHE_HEADERS)
    return response
