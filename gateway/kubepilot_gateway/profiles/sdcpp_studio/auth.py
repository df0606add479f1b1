"""The product's API key, checked inside the profile: ``Authorization: Bearer <key>`` or
``X-API-Key: <key>`` on every route but the open ones (``/api/health`` and ``/api/config``, which
the product's web UI reads before it has a key, to learn whether it needs one).

Why inside the profile rather than the listener's auth (``listeners.auth``, which also works and
which ``authEnabled`` reports): ``/api/config`` must say whether a key is required, and the
product answers a *wrong* key with 403 where a missing one is 401; a profile cannot see the
listener's settings, and the listener answers 401 for both.

- The key comes from an environment variable (``apiKeyEnv``, the product's ``API_KEY`` under
  another name, since one gateway process serves several profiles) and/or a mounted Secret file
  (``apiKeyFile``, one key a line, re-read when it changes); several keys may be accepted. No key
  set: no check (the product's open access).
- Document mode: a missing or wrong key is ``401 {"error": "Unauthorized"}`` with
  ``WWW-Authenticate: Bearer`` (the seed's "missing or invalid API key"). Product mode: missing is
  the product's 401 ``{"error": "Unauthorized", "message": ...}``, wrong its 403 ``{"error":
  "Forbidden", "message": "Invalid API key"}``.
- ``OPTIONS`` passes (preflights carry no credentials; the outer middleware answers them 204).
- The WebSocket needs the key too (the product leaves it open): browsers cannot set headers on a
  WebSocket, so there the key may also come as the ``api_key`` query parameter. A refused
  handshake is closed with 1008 before it is accepted.
- Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from urllib.parse import parse_qsl

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kubepilot_gateway.app.auth import POLICY_VIOLATION, TokenSource
from kubepilot_gateway.profiles.sdcpp_studio.config import Compat, SdcppSettings

OPEN_PATHS = frozenset({"/api/health", "/api/config"})
"""Served without a key: the product's public routes."""
WS_QUERY_PARAM = "api_key"
MISSING = "Missing API key. Use Authorization: Bearer <API_KEY> or X-API-Key: <API_KEY> header"
INVALID = "Invalid API key"


def key_source(settings: SdcppSettings) -> TokenSource:
    """The accepted keys: ``apiKeyFile``'s lines and ``apiKeyEnv``'s comma-separated values."""
    return TokenSource(settings.apiKeyFile, settings.apiKeyEnv)


def offered_keys(scope: Scope) -> list[str]:
    """The keys a request offers: a Bearer credential, an ``X-API-Key`` header and, on a
    WebSocket, the ``api_key`` query parameter."""
    offered = []
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                offered.append(credential.strip())
        elif name == b"x-api-key" and value.strip():
            offered.append(value.decode("latin-1").strip())
    if scope["type"] == "websocket":
        query = (scope.get("query_string") or b"").decode("latin-1")
        offered.extend(value for key, value in parse_qsl(query) if key == WS_QUERY_PARAM and value)
    return offered


def verdict(offered: Collection[str], accepted: Collection[str]) -> str:
    """``ok``, ``missing`` (no key offered) or ``invalid`` (none offered is accepted)."""
    if not offered:
        return "missing"
    for key in offered:
        if any(hmac.compare_digest(key.encode(), token.encode()) for token in accepted):
            return "ok"
    return "invalid"


def refusal(outcome: str, compat: Compat) -> JSONResponse:
    """The answer to a request without an accepted key, in the mode's shape."""
    if compat == "product":
        if outcome == "invalid":
            return JSONResponse({"error": "Forbidden", "message": INVALID}, status_code=403)
        return JSONResponse({"error": "Unauthorized", "message": MISSING}, status_code=401)
    return JSONResponse({"error": "Unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


class ApiKeyMiddleware:
    """Refuses HTTP requests and WebSocket handshakes without an accepted key (when one is set)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Callable[[], Collection[str]],
        compat: Compat,
        open_paths: Collection[str],
    ) -> None:
        self.app = app
        self.keys = keys
        self.compat = compat
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        accepted = self.keys()
        outcome = verdict(offered_keys(scope), accepted) if accepted else "ok"
        if outcome == "ok":
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": "Unauthorized"})
        else:
            await refusal(outcome, self.compat)(scope, receive, send)

    def _exempt(self, scope: Scope) -> bool:
        if scope["type"] == "http" and scope.get("method") == "OPTIONS":
            return True
        path: str = scope["path"]
        root = str(scope.get("root_path") or "")
        if root and path.startswith(root):  # mounted under /p/sdcpp-studio
            path = path[len(root) :] or "/"
        return path.rstrip("/") in self.open_paths
