"""The dashboard's optional login (``ENABLE_AUTH=true``): users and a signing key from a Secret,
expiring signed tokens, logout that revokes.

- The Secret ``authSecret`` holds ``signing-key`` (any bytes) and ``users`` (YAML or JSON: a list
  of ``{username, password_hash, role}``, the hash from :func:`.tokens.hash_password`). It is read
  through the API server at most once per ``authCacheSeconds``, so a rotated key or a changed
  user takes effect without a restart (a new key invalidates every token).
- A client sends the token as ``Authorization: Bearer <token>`` or in the ``session`` cookie that
  login also sets; WebSocket clients send it as ``?token=`` or in a first ``auth`` message.
- Logout revokes the token's id until the token would have expired anyway. The revocation list
  is this gateway replica's memory: with several replicas, a revoked token stays valid on the
  others until it expires (the core change suggested: a shared revocation store).
- Open without a token: ``/health``, ``/api/health`` and ``/api/auth/login`` (and CORS preflights).
- Roles: a user's ``role`` is the seed's (``administrator``, or any other name: full access),
  except ``viewer`` (ours), which may only read: any other method than GET / HEAD (but logout), and
  the WebSocket's ``install_preset``, is 403 ``FORBIDDEN`` ("Insufficient permissions", the guide).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse, Response

from kubepilot_gateway.app.errors import Problem
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, KubeError, NotFound
from kubepilot_gateway.profiles.comfyui_docker import tokens
from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
from kubepilot_gateway.profiles.comfyui_docker.errors import api_error, envelope

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
COOKIE = "session"
OPEN_PATHS = frozenset({"/health", "/api/health", "/api/auth/login"})
READ_ONLY_ROLE = "viewer"
READ_METHODS = frozenset({"GET", "HEAD"})
ALWAYS_ALLOWED = frozenset({"/api/auth/logout"})


def forbidden() -> HTTPException:
    return api_error(403, "FORBIDDEN", "Insufficient permissions: this user may only read")


def may_write(claims: tokens.Claims) -> bool:
    return claims.role != READ_ONLY_ROLE


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str
    role: str


@dataclass(frozen=True)
class AuthConfig:
    key: bytes
    users: dict[str, User]


def relative_path(scope_path: str, root_path: str) -> str:
    """The path inside this app, also when it is mounted under a prefix."""
    return (
        scope_path[len(root_path) :] or "/" if root_path and scope_path.startswith(root_path) else scope_path
    )


class Authenticator:
    def __init__(self, ctx: GatewayContext, settings: ComfyUiDockerSettings, enabled: bool) -> None:
        self.ctx = ctx
        self.settings = settings
        self.enabled = enabled
        self._lock = asyncio.Lock()
        self._config: AuthConfig | None = None
        self._read_at = 0.0
        self._revoked: dict[str, int] = {}

    async def config(self) -> AuthConfig:
        async with self._lock:
            if self._config is not None and time.monotonic() - self._read_at < self.settings.authCacheSeconds:
                return self._config
            path = SECRETS.path(self.ctx.store.namespace, self.settings.authSecret)
            try:
                secret = await self.ctx.client.request("GET", path)
            except (NotFound, KubeError) as error:
                if self._config is not None and not isinstance(error, NotFound):
                    return self._config
                log.warning("auth Secret %s unreadable: %s", self.settings.authSecret, type(error).__name__)
                raise api_error(503, "SERVICE_UNAVAILABLE", "Authentication is not configured") from None
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            self._config = AuthConfig(data.get("signing-key", b""), parse_users(data.get("users", b"")))
            self._read_at = time.monotonic()
            return self._config

    def revoke(self, claims: tokens.Claims) -> None:
        now = int(time.time())
        self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp > now}
        self._revoked[claims.token_id] = claims.expires_at

    async def check(self, token: str | None) -> tokens.Claims:
        """The claims of a valid, unrevoked token; a 401 otherwise."""
        if not token:
            raise api_error(401, "UNAUTHORIZED", "Authentication required")
        config = await self.config()
        if not config.key:
            raise api_error(503, "SERVICE_UNAVAILABLE", "Authentication is not configured")
        try:
            claims = tokens.verify(config.key, token, now=int(time.time()))
        except tokens.TokenError as error:
            raise api_error(401, "UNAUTHORIZED", str(error)) from None
        if claims.token_id in self._revoked or claims.username not in config.users:
            raise api_error(401, "UNAUTHORIZED", "Token revoked")
        return claims

    async def login(self, username: str, password: str) -> tuple[str, tokens.Claims]:
        config = await self.config()
        user = config.users.get(username)
        if user is None or not config.key or not tokens.check_password(password, user.password_hash):
            raise api_error(401, "UNAUTHORIZED", "Invalid username or password")
        return tokens.issue(
            config.key, user.username, user.role, now=int(time.time()), lifetime=self.settings.tokenSeconds
        )


def parse_users(raw: bytes) -> dict[str, User]:
    try:
        document = yaml.safe_load(raw.decode("utf-8")) if raw.strip() else []
    except (yaml.YAMLError, UnicodeDecodeError):
        log.warning("auth Secret: unreadable users")
        return {}
    users: dict[str, User] = {}
    for item in document if isinstance(document, list) else []:
        if isinstance(item, dict) and item.get("username") and item.get("password_hash"):
            name = str(item["username"])
            users[name] = User(name, str(item["password_hash"]), str(item.get("role") or "user"))
    return users


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE) or None


def auth_middleware(
    auth: Authenticator,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Refuse every request without a valid token (when enabled), in the dashboard's envelope."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = relative_path(request.url.path, str(request.scope.get("root_path", "")))
        if auth.enabled and request.method != "OPTIONS" and path not in OPEN_PATHS:
            try:
                claims = await auth.check(request_token(request))
                if (
                    request.method not in READ_METHODS
                    and path not in ALWAYS_ALLOWED
                    and not may_write(claims)
                ):
                    raise forbidden()
                request.state.claims = claims
            except HTTPException as error:
                detail: JsonObject = error.detail if isinstance(error.detail, dict) else {}
                problem = Problem(error.status_code, detail, str(detail.get("message") or ""), "auth")
                return envelope(request, problem)
        return await call_next(request)

    return middleware


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    username: str
    password: str


def create_router(auth: Authenticator) -> APIRouter:
    router = APIRouter()

    @router.post("/api/auth/login")
    async def login(body: LoginRequest) -> Response:
        """CD-25: a signed token valid ``tokenSeconds``; also set as the ``session`` cookie."""
        if not auth.enabled:
            raise api_error(404, "NOT_FOUND", "Authentication is not enabled (ENABLE_AUTH)")
        token, claims = await auth.login(body.username, body.password)
        lifetime = claims.expires_at - claims.issued_at
        response = JSONResponse({"token": token, "expires_in": lifetime})
        response.set_cookie(COOKIE, token, max_age=lifetime, httponly=True, samesite="lax")
        return response

    @router.post("/api/auth/logout")
    async def logout(request: Request) -> Response:
        """CD-26: revoke the token the request came with."""
        claims = getattr(request.state, "claims", None)
        if isinstance(claims, tokens.Claims):
            auth.revoke(claims)
        response = JSONResponse({"status": "success"})
        response.delete_cookie(COOKIE)
        return response

    @router.get("/api/auth/verify")
    async def verify(request: Request) -> JsonObject:
        """CD-27: the token's user (with auth off, every caller is the anonymous administrator)."""
        claims = getattr(request.state, "claims", None)
        if isinstance(claims, tokens.Claims):
            return {"valid": True, "user": {"username": claims.username, "role": claims.role}}
        return {"valid": True, "user": {"username": "anonymous", "role": "administrator"}}

    return router
