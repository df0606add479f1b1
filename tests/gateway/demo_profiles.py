"""A tiny profile for the gateway-core tests, and an offline context (no API server is called).

Holds no tests: the ``test_gateway_app_*`` modules import from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request, WebSocket
from kubernetes import client as kube_client
from pydantic import BaseModel
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from kubepilot_gateway.app import Problem, install_error_envelope
from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import AlreadyExists, Conflict, Invalid, KubeClient, KubeUnavailable, NotFound
from kubepilot_gateway.profiles import Profile
from kubepilot_gateway.settings import Settings

UNREACHABLE_HOST = "http://127.0.0.1:9"
LEAKY = "connection refused by 10.9.8.7 at /var/run/secret"


class Item(BaseModel):
    name: str
    count: int


def demo_routes() -> APIRouter:
    router = APIRouter(prefix="/api")

    @router.get("/items/{name}")
    async def get_item(name: str) -> dict[str, str]:
        if name == "missing":
            raise NotFound(404, "NotFound", 'modelpulls.kubepilot.io "missing" not found')
        return {"name": name}

    @router.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @router.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"internal state: {LEAKY}")

    @router.get("/kube/{what}")
    async def kube_error(what: str) -> None:
        errors = {
            "conflict": Conflict(409, "Conflict", "the object has been modified"),
            "exists": AlreadyExists(409, "AlreadyExists", 'modelpulls "x" already exists'),
            "invalid": Invalid(422, "Invalid", "spec.source.type: Unsupported value"),
            "down": KubeUnavailable(f"GET /apis: ConnectError: {LEAKY}"),
        }
        raise errors[what]

    @router.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while (text := await websocket.receive_text()) != "bye":
            await websocket.send_text(text)
        await websocket.close()

    # A router inside a router: FastAPI's route object then knows only its path inside "/v1".
    nested = APIRouter(prefix="/v1")

    @nested.get("/things/{thing}")
    async def get_thing(thing: str) -> dict[str, str]:
        return {"thing": thing}

    router.include_router(nested)
    return router


def create_demo_app(ctx: GatewayContext) -> FastAPI:
    """FastAPI's own error shapes (the gateway installs the default envelope)."""
    app = FastAPI()
    app.include_router(demo_routes())
    return app


def seed_envelope(request: Request, problem: Problem) -> Response:
    """A seed that answers ``{"error", "code"}`` and a 400 for bad input."""
    return JSONResponse({"error": problem.message, "code": problem.status}, status_code=problem.status)


def create_enveloped_app(ctx: GatewayContext) -> FastAPI:
    app = FastAPI()
    install_error_envelope(app, seed_envelope, validation_status=400)
    app.include_router(demo_routes())
    return app


DEMO = Profile("demo", 17001, create_demo_app, "FastAPI-shaped demo")
ENVELOPED = Profile(
    "seeded", 17002, create_enveloped_app, "seed-shaped demo", open_paths=frozenset({"/api/teapot"})
)
OPEN_CORS = CorsSettings(allowOrigins=["*"], allowCredentials=True)
WITH_CORS = Profile("corsy", 17003, create_demo_app, "CORS as its seed says", cors=OPEN_CORS)


def offline_context(namespace: str = "default") -> GatewayContext:
    """A context whose cache is never started: nothing reaches an API server."""
    client = KubeClient(kube_client.Configuration(host=UNREACHABLE_HOST))
    return GatewayContext.build(Settings(namespace=namespace), client)


@pytest.fixture
async def ctx() -> AsyncIterator[GatewayContext]:
    context = offline_context()
    yield context
    await context.client.aclose()


def http_client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


Factory = Callable[[GatewayContext], FastAPI]
