"""Hostile WebSocket frames against every WebSocket of the ControlPilot, OneTrainer and HomePilot
profiles, each on a real uvicorn (``helpers.served``).

The endpoints:

- OneTrainer ``/ws`` (OT-WS): the client may send the plain-text ``ping`` (or the JSON string
  ``"ping"``), answered with ``{"type": "pong"}``; everything else is ignored.
- ControlPilot ``/ws/comfy`` (CP-40): a verbatim relay to ComfyUI's ``/ws``. With ComfyUI running
  (the fake ComfyUI of ``test_controlpilot_comfy_api``, which echoes) every frame reaches it as
  sent; without it the client gets ``{"type": "error", "message": "Cannot connect to ComfyUI: ..."}``
  and a 1000 close, whatever it sent meanwhile, and the next connection is told the same.
- HomePilot has no WebSocket (its seed lists none; the pass-through is HTTP only): an upgrade is
  refused at the handshake (403) and the server carries on.

After each hostile frame the connection must still answer the protocol's valid message; the server
log (``uvicorn.error``, and the root logger for the gateway's and asyncio's records) must hold no
error and no traceback. Every wait is bounded (10 s), so a hang fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kubepilot_gateway.app.gateway import build_combined_app
from kubepilot_gateway.app.runner import quiet_client_faults
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles import controlpilot, homepilot, onetrainer
from kubepilot_gateway.profiles.onetrainer import routes_ws as ot_ws
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import served
from tests.gateway.test_controlpilot_comfy_api import FakeComfy, comfy_service, fake_comfy

__all__ = ["fake_comfy"]  # the fake ComfyUI fixture, shared with test_controlpilot_comfy_api

JsonObject = dict[str, Any]
WAIT = 10.0
MIB = 1 << 20
HOSTILE: list[tuple[str, str | bytes]] = [
    ("binary frame", b"\x00\x01\x02binary"),
    ("invalid UTF-8 in a binary frame", b"\xff\xfe\x80\xc3("),
    ("malformed JSON", '{"type": "ping",'),
    ("a JSON list", '["ping", 1]'),
    ("a JSON string", '"hello"'),
    ("a JSON number", "42"),
    ("100,000-deep nested array", "[" * 100_000 + "]" * 100_000),
    ("100,000-deep nested array, binary", b"[" * 100_000 + b"]" * 100_000),
    ("lone surrogate escape", '{"type": "\\ud800", "data": "\\udfff"}'),
    ("lone surrogate escape as a string", '"\\ud800"'),
    ("1 MiB message", '"' + "p" * (MIB - 2) + '"'),
    ("1 MiB binary message", b"\x80" * MIB),
    ("unknown message type", '{"type": "no_such_type", "data": {}}'),
]
"""(what, frame): a ``bytes`` frame goes out as a binary frame, a ``str`` as a text frame."""


# -- the server log --------------------------------------------------------------------------------


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def bad(self) -> list[str]:
        """Errors and tracebacks logged: what went wrong inside the server."""
        return [
            f"{r.name}: {r.getMessage()[:300]} {r.exc_info[1]!r}" if r.exc_info else r.getMessage()[:300]
            for r in self.records
            if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()
        ]


@contextlib.contextmanager
def server_log() -> Iterator[Collector]:
    """Records of uvicorn's error logger and of the root logger (gateway, asyncio) while open.

    Entered after the server started: uvicorn's logging setup replaces its loggers' handlers.
    """
    quiet_client_faults()  # as the gateway's runner does for its listeners
    collector = Collector()
    loggers = [logging.getLogger("uvicorn.error"), logging.getLogger()]
    for logger in loggers:
        logger.addHandler(collector)
    try:
        yield collector
    finally:
        for logger in loggers:
            logger.removeHandler(collector)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[tuple[str, Collector]]:
    """``app`` on a real uvicorn: its ws:// base URL and its log; no error logged at the end."""
    async with served(app) as base_url:
        with server_log() as log:
            yield base_url.replace("http://", "ws://"), log
            await asyncio.sleep(0.2)  # a failing handler logs once its task ends
            assert log.bad() == []


def client(url: str) -> connect:
    return connect(url, open_timeout=WAIT, close_timeout=WAIT, max_size=4 * MIB, proxy=None)


UVICORN_UTF8_ERROR = "Invalid UTF-8 sequence received from client."


async def invalid_utf8_text_frame_is_closed_1007(url: str, log: Collector) -> None:
    """A text frame that is not UTF-8 is a protocol error: uvicorn closes it with 1007 before any
    route sees it, and the next connection works.

    uvicorn's ``websockets-sansio`` protocol (what ``ws="auto"`` picks, in these tests and in the
    gateway's runner) logs that with ``logger.exception``, a traceback for a client's bad frame;
    the gateway's ``quiet_client_faults`` makes it the one-line warning it is.
    """
    async with client(url) as ws:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.send(b"\xff\xfe{", text=True), WAIT)
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # a greeting may come first
                await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    await asyncio.sleep(0.1)
    noted = [r for r in log.records if r.getMessage() == UVICORN_UTF8_ERROR]
    assert noted and all(r.levelno == logging.WARNING and not r.exc_info for r in noted)


async def send(ws: ClientConnection, frame: str | bytes) -> None:
    await asyncio.wait_for(ws.send(frame), WAIT)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), WAIT)


async def recv_json(ws: ClientConnection) -> JsonObject:
    message = json.loads(await recv(ws))
    assert isinstance(message, dict), message
    return message


def volumes(root: Path) -> Volumes:
    for name in ("models", "outputs", "datasets"):
        (root / name).mkdir(exist_ok=True)
    return Volumes(
        models=str(root / "models"), outputs=str(root / "outputs"), datasets=str(root / "datasets")
    )


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path
) -> GatewayContext:
    settings = Settings(namespace=namespace, volumes=volumes(tmp_path))
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


# -- the sweeps, one per endpoint (served on its own and under the combined listener) -------------


async def sweep_onetrainer(base: str, log: Collector) -> None:
    """OT-WS ignores every message but ``ping``: after each hostile frame the same connection
    answers ``ping`` with ``pong``, and other clients carry on."""
    async with client(f"{base}/ws") as ws:
        assert (await recv_json(ws))["type"] == "connected"
        for what, frame in HOSTILE:
            await send(ws, frame)
            await send(ws, "ping")
            assert await recv_json(ws) == {"type": "pong"}, what
        await send(ws, json.dumps("ping"))  # the documented JSON form
        assert await recv_json(ws) == {"type": "pong"}
        async with client(f"{base}/ws") as other:
            assert (await recv_json(other))["type"] == "connected"
            await send(other, "ping")
            assert await recv_json(other) == {"type": "pong"}
    await invalid_utf8_text_frame_is_closed_1007(f"{base}/ws", log)
    async with client(f"{base}/ws") as ws:
        assert (await recv_json(ws))["type"] == "connected"


async def sweep_comfy_relay(base: str, log: Collector) -> None:
    """CP-40 relays frames as they are: each hostile frame reaches the (fake, echoing) ComfyUI
    unchanged, its echo comes back unchanged, and the relay stays open for the next."""
    async with client(f"{base}/ws/comfy") as ws:
        assert (await recv_json(ws))["type"] == "status"
        for what, frame in HOSTILE:
            await send(ws, frame)
            expected = b"echo:" + frame if isinstance(frame, bytes) else f"echo:{frame}"
            assert await recv(ws) == expected, what
        await send(ws, "hello")
        assert await recv(ws) == "echo:hello"
        async with client(f"{base}/ws/comfy") as other:
            assert (await recv_json(other))["type"] == "status"
    await invalid_utf8_text_frame_is_closed_1007(f"{base}/ws/comfy", log)
    async with client(f"{base}/ws/comfy") as ws:
        assert (await recv_json(ws))["type"] == "status"


async def sweep_comfy_absent(base: str, namespace: str) -> None:
    """Without ComfyUI, whatever the client sends, it gets ControlPilot's connect error and a
    1000 close; each new connection is told the same."""
    for what, frame in [*HOSTILE, ("nothing", "")]:
        async with client(f"{base}/ws/comfy") as ws:
            if frame:
                with contextlib.suppress(ConnectionClosed):  # it may be closed already
                    await send(ws, frame)
            message = await recv_json(ws)
            assert message["type"] == "error", what
            assert message["message"].startswith(
                f"Cannot connect to ComfyUI: ComfyUI is not running: ServiceInstance {namespace}/comfy"
            ), what
            with pytest.raises(ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000, what


async def sweep_homepilot(base: str) -> None:
    """HomePilot has no WebSocket: an upgrade, on a path of its own or one passed through to the
    application, is refused at the handshake (403), never a 500."""
    for path in ("/ws", "/health", "/chat", "/conversations/c-1/messages", "/%ff"):
        with pytest.raises(InvalidStatus) as refused:
            async with client(f"{base}{path}"):
                pass
        assert refused.value.response.status_code == 403, path


# -- each profile on its own port --------------------------------------------------------------------


async def test_onetrainer_ws_ignores_hostile_frames_and_still_answers_ping(ctx: GatewayContext) -> None:
    """The 100,000-deep array once raised RecursionError in the ping check and closed the socket
    (1000, as if nothing was wrong); a 1 MiB message was parsed whole."""
    async with serving(onetrainer.create_app(ctx)) as (base, log):
        await sweep_onetrainer(base, log)


async def test_onetrainer_ws_ordinary_close_logs_no_traceback(ctx: GatewayContext) -> None:
    """A client that says goodbye was an "Exception in ASGI application" (WebSocketDisconnect from
    ``socket.close()`` after the client left) in the server log, every time."""
    async with serving(onetrainer.create_app(ctx)) as (base, log):
        for code in (1000, 1001, 4000):
            async with client(f"{base}/ws") as ws:
                assert (await recv_json(ws))["type"] == "connected"
                await asyncio.wait_for(ws.close(code=code), WAIT)
        await asyncio.sleep(0.2)
        assert log.bad() == []


@pytest.mark.parametrize(
    ("frame", "ping"),
    [
        ("ping", True),
        ("  ping\n", True),
        ('"ping"', True),
        ('"\\u0070ing"', True),
        (b"ping", True),
        ("[" * 100_000 + "]" * 100_000, False),
        ("[" * 200 + "]" * 200, False),
        ('"' + "p" * MIB + '"', False),
        ('"\\ud800"', False),
        (b"\xff\xfe", False),
        ("42", False),
    ],
)
def test_onetrainer_ping_check_is_bounded_and_never_raises(frame: str | bytes, ping: bool) -> None:
    assert ot_ws.is_ping(frame) is ping


async def test_controlpilot_comfy_ws_relays_hostile_frames_verbatim(
    ctx: GatewayContext, store: CrStore, fake_comfy: FakeComfy
) -> None:
    await comfy_service(store, endpoint=fake_comfy.url)
    async with serving(controlpilot.create_app(ctx)) as (base, log):
        await sweep_comfy_relay(base, log)


async def test_controlpilot_comfy_ws_without_comfy_tells_the_error_and_closes_1000(
    ctx: GatewayContext, namespace: str
) -> None:
    async with serving(controlpilot.create_app(ctx)) as (base, _log):
        await sweep_comfy_absent(base, namespace)


async def test_homepilot_refuses_a_websocket_upgrade_and_carries_on(ctx: GatewayContext) -> None:
    async with serving(homepilot.create_app(ctx)) as (base, _log):
        await sweep_homepilot(base)
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=WAIT) as http:
            health = await http.get("/health")
        assert health.status_code == 200 and health.json()["ok"] is True


# -- all three under the combined listener -----------------------------------------------------------


async def test_the_combined_listener_survives_the_same_frames_under_p_profile(
    ctx: GatewayContext, namespace: str
) -> None:
    """The same sweeps through the gateway core (``/p/<profile>``), ControlPilot without ComfyUI."""
    app = build_combined_app(ctx, [onetrainer.PROFILE, controlpilot.PROFILE, homepilot.PROFILE])
    async with serving(app) as (base, log):
        await sweep_onetrainer(f"{base}/p/onetrainer", log)
        await sweep_comfy_absent(f"{base}/p/controlpilot", namespace)
        await sweep_homepilot(f"{base}/p/homepilot")
        async with httpx.AsyncClient(base_url=base.replace("ws://", "http://"), timeout=WAIT) as http:
            assert (await http.get("/healthz")).status_code == 200
