"""The seed's rate limits: 100 requests a minute per IP unauthenticated, 1,000 per token
authenticated, with ``X-RateLimit-Limit / Remaining / Reset`` on every answer (errors included:
bad input, 401 refusals, 404s and the 500 of an unexpected error, which is rendered here so that
it carries them too) and a 429 ``RATE_LIMIT_EXCEEDED`` with ``Retry-After`` past the limit. The
companion guide's ``X-RateLimit-Reset-Time`` (the reset as an ISO time) is sent as well. CORS
preflights are answered by the CORS layer outside this one and are not counted.

Fixed one-minute windows aligned to the clock (``Reset`` is the window's end, epoch seconds).
The counters are this gateway replica's memory: with N replicas behind one Service a client gets
up to N times the limit (the core change suggested: a shared counter store). A request counts
as authenticated only with a token the login signed (checked before counting), so random tokens
cannot escape the per-IP limit.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from kubepilot_gateway.app.errors import INTERNAL_ERROR, Problem
from kubepilot_gateway.profiles.comfyui_docker.auth import Authenticator, request_token
from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
from kubepilot_gateway.profiles.comfyui_docker.errors import envelope

log = logging.getLogger(__name__)


class RateLimiter:
    """Counts per key in the current window; old windows are dropped as the clock moves on."""

    def __init__(self, window_seconds: int) -> None:
        self.window = window_seconds
        self._start = 0
        self._counts: dict[str, int] = {}

    def hit(self, key: str, limit: int, now: float) -> tuple[bool, int, int]:
        """(allowed, remaining, reset epoch) after counting one request of ``key``."""
        start = int(now // self.window) * self.window
        if start != self._start:
            self._start, self._counts = start, {}
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= limit, max(limit - count, 0), start + self.window


async def answer(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """``call_next``'s response; an unexpected error as the envelope's 500 (logged here), which Starlette
    would otherwise answer from its outermost layer, without this profile's headers."""
    try:
        return await call_next(request)
    except Exception:
        log.exception("%s %s failed", request.method, request.url.path)
        return envelope(request, Problem(500, INTERNAL_ERROR, INTERNAL_ERROR, "internal"))


def rate_limit_middleware(
    settings: ComfyUiDockerSettings, auth: Authenticator
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    limiter = RateLimiter(settings.rateLimitWindowSeconds)

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if not settings.rateLimitEnabled:
            return await answer(request, call_next)
        key, limit = f"ip:{request.client.host if request.client else 'unknown'}", settings.rateLimitPerIp
        token = request_token(request)
        if auth.enabled and token:
            try:
                claims = await auth.check(token)
            except HTTPException:
                pass
            else:
                key, limit = f"token:{claims.token_id}", settings.rateLimitPerToken
        now = time.time()
        allowed, remaining, reset = limiter.hit(key, limit, now)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Reset-Time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset)),
        }
        if allowed:
            response = await answer(request, call_next)
        else:
            retry = str(max(math.ceil(reset - now), 1))
            detail = {
                "code": "RATE_LIMIT_EXCEEDED",
                "message": "Rate limit exceeded",
                "details": {"limit": limit},
            }
            problem = Problem(429, detail, "Rate limit exceeded", "http", {"Retry-After": retry})
            response = envelope(request, problem)
        response.headers.update(headers)
        return response

    return middleware
