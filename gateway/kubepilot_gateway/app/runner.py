"""Run several uvicorn servers in one event loop, stopped together by one signal handler.

uvicorn's ``Server.serve`` installs process-wide signal handlers per server and re-raises the
signal when it ends; with several servers in one loop that would make the last one started the
only one stopped. So each server here leaves signals alone, and one handler stops them all.
Sockets are bound before anything starts, so a port in use is a clear error, not a half-started
gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from kubepilot_gateway.kube.cache import ClusterCache

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PROGRESS_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class Listener:
    """One port and what it serves; ``label`` names it in logs and the start-up lines."""

    label: str
    port: int


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (OSError when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.setblocking(False)
    return sock


def url(host: str, port: int, path: str = "/") -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway handles signals once for all its servers.
        yield


class StopSignal:
    """SIGINT/SIGTERM handling for the running loop: the first asks for a graceful stop, the
    second forces it."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __enter__(self) -> StopSignal:
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
        return self

    def __exit__(self, *_: object) -> None:
        for sig in STOP_SIGNALS:
            self._loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            log.warning("%s again: stopping now", sig.name)
            self.forced.set()
        else:
            log.info("%s: stopping", sig.name)
        self.requested.set()


async def wait_for_sync(cache: ClusterCache, within: float, stop: asyncio.Event) -> bool:
    """Wait for the cache's first LIST of every type, logging what is still missing; False when
    ``within`` seconds passed or a stop was asked for first."""
    started = time.monotonic()
    last_report = started
    while not cache.synced:
        if stop.is_set():
            return False
        now = time.monotonic()
        pending = ", ".join(
            kind for kind, informer in cache.informers.items() if not informer.synced.is_set()
        )
        if now - started >= within:
            log.error("the cache did not sync within %.0fs; still listing: %s", within, pending)
            return False
        if now - last_report >= PROGRESS_EVERY_SECONDS:
            log.info("waiting for the cache (%.0fs); still listing: %s", now - started, pending)
            last_report = now
        await asyncio.sleep(0.05)
    log.info("cache synced in %.2fs: %s", time.monotonic() - started, cache.sizes())
    return True


CLIENT_FAULTS = frozenset({"Invalid UTF-8 sequence received from client."})
"""uvicorn's messages about what a client sent, which it logs as errors with a traceback."""


class ClientFaultsAsWarnings(logging.Filter):
    """A client's bad frame (a text frame that is not UTF-8: uvicorn closes it with 1007, as it
    should) is the client's fault, not the gateway's: a one-line warning, not an error traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.getMessage() in CLIENT_FAULTS:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_faults() -> None:
    """Install :class:`ClientFaultsAsWarnings` on uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientFaultsAsWarnings) for f in logger.filters):
        logger.addFilter(ClientFaultsAsWarnings())


async def serve(
    servings: list[tuple[Listener, ASGIApp, socket.socket]],
    stop: StopSignal,
    *,
    host: str,
    shutdown_timeout: int = 5,
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Serve every listener until a stop is asked for or one server fails; 0 after a clean stop.

    ``on_stop`` runs first when stopping (the gateway ends its event-bus subscriptions there, so
    WebSocket handlers waiting on them return instead of holding the shutdown up).
    """
    quiet_client_faults()
    servers: list[_Server] = []
    for listener, app, _ in servings:
        config = uvicorn.Config(
            app,
            host=host,
            port=listener.port,
            lifespan="off",
            log_config=None,
            access_log=False,  # the gateway's own access log has the profile and route
            timeout_graceful_shutdown=shutdown_timeout,
        )
        servers.append(_Server(config))
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]), name=f"listener-{listener.label}")
        for server, (listener, _, sock) in zip(servers, servings, strict=True)
    ]
    stop_wait = asyncio.create_task(stop.requested.wait())
    force_wait = asyncio.create_task(stop.forced.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in tasks if task in done]
        for task in failed:
            log.error("listener %s stopped on its own: %r", task.get_name(), _outcome(task))
        if on_stop is not None:
            on_stop()
        for server in servers:
            server.should_exit = True
        pending = {task for task in tasks if not task.done()}
        forced = False
        while pending:
            waiting = pending if forced else {*pending, force_wait}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not forced and force_wait.done():
                forced = True
                for server in servers:
                    server.force_exit = True
            pending = {task for task in pending if not task.done()}
        return 1 if failed else 0
    finally:
        for waiter in (stop_wait, force_wait):
            waiter.cancel()
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, stop_wait, force_wait, return_exceptions=True)


def _outcome(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()
