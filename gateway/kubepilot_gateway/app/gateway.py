"""The served apps: each profile wrapped for serving, alone (native port) or all mounted together.

Each profile's app is built once per gateway and shared by its native listener and the combined
one, so whatever it starts in its lifespan runs once. Around it, outermost first: the request
guard (metrics, access log, last-resort 500), CORS, then authentication, so preflights and 401s
carry CORS headers and are measured like everything else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from kubepilot_gateway.app.auth import BearerAuthMiddleware, TokenSource
from kubepilot_gateway.app.errors import envelope_of, has_error_envelope, install_error_envelope
from kubepilot_gateway.app.metrics import GatewayMetrics
from kubepilot_gateway.app.observe import ObservedApp
from kubepilot_gateway.app.settings import AuthSettings, CorsSettings, ListenerSettings
from kubepilot_gateway.context import GatewayContext

if TYPE_CHECKING:
    from kubepilot_gateway.profiles import Profile

COMBINED_PREFIX = "/p"


def mount_path(name: str) -> str:
    """Where profile ``name`` lives on the combined listener."""
    return f"{COMBINED_PREFIX}/{name}"


def with_cors(app: ASGIApp, cors: CorsSettings) -> ASGIApp:
    return CORSMiddleware(
        app,
        allow_origins=cors.allowOrigins,
        allow_origin_regex=cors.allowOriginRegex or None,
        allow_methods=cors.allowMethods,
        allow_headers=cors.allowHeaders,
        expose_headers=cors.exposeHeaders,
        allow_credentials=cors.allowCredentials,
        max_age=cors.maxAgeSeconds,
    )


def with_auth(app: FastAPI, served: ASGIApp, auth: AuthSettings, open_paths: Iterable[str]) -> ASGIApp:
    tokens = TokenSource.from_settings(auth)
    if not tokens():
        raise ValueError(
            f"authentication is enabled but no token is set (tokensFile {auth.tokensFile!r}, "
            f"${auth.tokensEnv})"
        )
    return BearerAuthMiddleware(
        served,
        tokens=tokens,
        open_paths={*open_paths, *auth.openPaths},
        api_key_header=auth.apiKeyHeader,
        query_param=auth.queryParam,
        envelope=lambda: envelope_of(app),
    )


class Gateway:
    """The profiles of one gateway, built from one context and measured into one set of metrics."""

    def __init__(
        self,
        ctx: GatewayContext,
        profiles: Iterable[Profile],
        *,
        listeners: ListenerSettings | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.ctx = ctx
        self.profiles = tuple(profiles)
        names = [profile.name for profile in self.profiles]
        if len(set(names)) != len(names):
            raise ValueError(f"profile names must be unique: {names}")
        self.listeners = listeners or ListenerSettings()
        self.metrics = metrics or GatewayMetrics()
        self.metrics.watch_cache(ctx.cache)
        self.apps: dict[str, FastAPI] = {}
        self._states: dict[str, dict[str, Any]] = {}
        self._served: dict[str, ASGIApp] = {}
        for profile in self.profiles:
            self._served[profile.name] = self._build(profile)

    def _build(self, profile: Profile) -> ASGIApp:
        app = profile.create_app(self.ctx)
        if not has_error_envelope(app):
            # Every profile gets the kube error mapping and a JSON 500, in FastAPI's shape.
            install_error_envelope(app)
        self.apps[profile.name] = app
        config = self.listeners.for_profile(profile.name)
        served: ASGIApp = app
        auth = config.auth or self.listeners.auth
        if auth.enabled:
            served = with_auth(app, served, auth, profile.open_paths)
        cors = config.cors or profile.cors
        if cors is not None:
            served = with_cors(served, cors)
        state = self._states.setdefault(profile.name, {})
        return ObservedApp(
            served,
            profile=profile.name,
            metrics=self.metrics,
            access_log_enabled=self.listeners.accessLog,
            state=state,
        )

    def profile_app(self, name: str) -> ASGIApp:
        """Profile ``name`` as its native listener serves it (at its root)."""
        return self._served[name]

    def native_ports(self) -> dict[str, int]:
        """The native port of each profile that has one under the listener settings."""
        if not self.listeners.native:
            return {}
        ports = {}
        for profile in self.profiles:
            config = self.listeners.for_profile(profile.name)
            port = profile.native_port if config.port is None else config.port
            if config.enabled and port:
                ports[profile.name] = port
        return ports

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run every profile app's lifespan once (servers then run with lifespan off)."""
        async with AsyncExitStack() as stack:
            for name, app in self.apps.items():
                state = await stack.enter_async_context(app.router.lifespan_context(app))
                self._states[name].clear()
                if state:
                    self._states[name].update(state)
            yield

    def combined_app(self, *, run_lifespans: bool = False) -> Starlette:
        """Every profile under ``/p/<name>``, plus ``/healthz`` and ``/metrics``."""

        async def healthz(request: Request) -> Response:
            return JSONResponse(
                {"ok": True, "synced": self.ctx.cache.synced, "profiles": [p.name for p in self.profiles]}
            )

        async def metrics(request: Request) -> Response:
            body, content_type = self.metrics.render()
            return Response(body, media_type=content_type)

        routes: list[BaseRoute] = [
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
        routes += [Mount(mount_path(name), app=served) for name, served in self._served.items()]

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with self.lifespan():
                yield

        return Starlette(routes=routes, lifespan=lifespan if run_lifespans else None)


def build_combined_app(
    ctx: GatewayContext,
    profiles: Iterable[Profile],
    *,
    listeners: ListenerSettings | None = None,
    metrics: GatewayMetrics | None = None,
) -> Starlette:
    """One app mounting every profile under ``/p/<name>``, with ``/healthz`` and ``/metrics``; its
    lifespan runs the profiles' lifespans."""
    return Gateway(ctx, profiles, listeners=listeners, metrics=metrics).combined_app(run_lifespans=True)


def build_profile_app(
    ctx: GatewayContext,
    profile: Profile,
    *,
    listeners: ListenerSettings | None = None,
    metrics: GatewayMetrics | None = None,
) -> ASGIApp:
    """``profile`` alone, served at its root (for its native port; lifespan passes through)."""
    return Gateway(ctx, [profile], listeners=listeners, metrics=metrics).profile_app(profile.name)
