"""Optional static-token authentication in front of a profile (off unless the settings enable it).

Clients send ``Authorization: Bearer <token>`` (or, where a profile's seed says so, an API-key
header or a query parameter for WebSocket clients). Tokens come from a mounted Secret file
(re-read when it changes, so a rotated Secret takes effect without a restart) and/or an
environment variable; they are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from kubepilot_gateway.app.errors import Envelope, Problem, default_envelope
from kubepilot_gateway.app.settings import AuthSettings

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
"""The WebSocket close code for a refused handshake."""


class TokenSource:
    """The accepted tokens: lines of ``file`` (re-read on change) plus comma-separated ``env``."""

    def __init__(self, file: str = "", env: str = "") -> None:
        self._file = Path(file) if file else None
        self._env_tokens = (
            frozenset(t.strip() for t in os.environ.get(env, "").split(",") if t.strip())
            if env
            else frozenset()
        )
        self._file_tokens: frozenset[str] = frozenset()
        self._file_stamp: tuple[float, int] | None = None

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenSource:
        return cls(settings.tokensFile, settings.tokensEnv)

    def __call__(self) -> frozenset[str]:
        return self._env_tokens | self._read_file()

    def _read_file(self) -> frozenset[str]:
        if self._file is None:
            return frozenset()
        try:
            stat = self._file.stat()
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._file_stamp:
                lines = self._file.read_text(encoding="utf-8").splitlines()
                self._file_tokens = frozenset(line.strip() for line in lines if line.strip())
                self._file_stamp = stamp
        except OSError as error:
            # Keep the last tokens read: a Secret update swaps the file, briefly absent.
            log.warning("cannot read the auth tokens file: %s", type(error).__name__)
        return self._file_tokens


class BearerAuthMiddleware:
    """Refuses a request without an accepted token: 401 in the profile's envelope, or a closed
    WebSocket handshake. Paths in ``open_paths`` (relative to the profile's root) and CORS
    preflights pass."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: Callable[[], Collection[str]],
        open_paths: Collection[str] = (),
        api_key_header: str = "",
        query_param: str = "",
        envelope: Callable[[], Envelope] | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.open_paths = frozenset(open_paths)
        self.api_key_header = api_key_header.lower().encode("latin-1")
        self.query_param = query_param
        self.envelope = envelope or (lambda: default_envelope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._exempt(scope) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": "Not authenticated"})
            return
        problem = Problem(
            401, "Not authenticated", "Not authenticated", "auth", {"WWW-Authenticate": "Bearer"}
        )
        response = self.envelope()(Request(scope, receive), problem)
        await response(scope, receive, send)

    def _exempt(self, scope: Scope) -> bool:
        if scope["type"] == "http" and scope.get("method") == "OPTIONS":
            return True  # preflights carry no credentials; CORS answers them
        return _profile_path(scope) in self.open_paths

    def _authorized(self, scope: Scope) -> bool:
        accepted = self.tokens()
        if not accepted:
            return False
        return any(
            hmac.compare_digest(offered.encode(), token.encode())
            for offered in self._offered(scope)
            for token in accepted
        )

    def _offered(self, scope: Scope) -> list[str]:
        offered = []
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credential.strip():
                    offered.append(credential.strip())
            elif self.api_key_header and name == self.api_key_header:
                offered.append(value.decode("latin-1").strip())
        if self.query_param:
            query = (scope.get("query_string") or b"").decode("latin-1")
            offered.extend(value for key, value in parse_qsl(query) if key == self.query_param)
        return [token for token in offered if token]


def _profile_path(scope: Scope) -> str:
    """The request path relative to the profile's root (its mount under the combined listener)."""
    path: str = scope["path"]
    root = str(scope.get("root_path") or "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path
