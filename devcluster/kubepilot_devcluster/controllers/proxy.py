"""A userspace TCP proxy doing kube-proxy's job: ``clusterIP:port`` → one ready endpoint ``podIP:targetPort``.

Connections are spread round-robin over the ready endpoints; an endpoint that refuses is skipped. A
Service with no ready endpoint accepts and immediately closes connections. Binding ports below 1024
needs root (or a lowered ``net.ipv4.ip_unprivileged_port_start``); a port that cannot be bound is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

log = logging.getLogger(__name__)
Address = tuple[str, int]
CONNECT_TIMEOUT_SECONDS = 3.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class ServiceProxy:
    """Listeners on Service addresses that forward every connection to a current backend."""

    def __init__(self) -> None:
        self._servers: dict[Address, asyncio.Server] = {}
        self._backends: dict[Address, list[Address]] = {}
        self._counter = itertools.count()
        self._failed: set[Address] = set()

    @property
    def listening(self) -> set[Address]:
        return set(self._servers)

    async def update(self, table: dict[Address, list[Address]]) -> None:
        """Listen on exactly the table's frontends and route each to its backends from now on."""
        self._backends = {k: list(v) for k, v in table.items()}
        for frontend in list(self._servers):
            if frontend not in table:
                server = self._servers.pop(frontend)
                server.close()
                await server.wait_closed()
        for frontend in table:
            if frontend in self._servers:
                continue
            host, port = frontend

            async def handle(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frontend: Address = frontend
            ) -> None:
                await self._forward(frontend, reader, writer)

            try:
                self._servers[frontend] = await asyncio.start_server(handle, host, port)
                self._failed.discard(frontend)
            except OSError as err:
                if frontend not in self._failed:
                    log.warning("service proxy cannot listen on %s:%s: %s", host, port, err)
                    self._failed.add(frontend)

    async def _connect_backend(
        self, frontend: Address
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = self._backends.get(frontend) or []
        if not backends:
            return None
        start = next(self._counter)
        for offset in range(len(backends)):
            host, port = backends[(start + offset) % len(backends)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError):
                continue
        return None

    async def _forward(
        self, frontend: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            backend = await self._connect_backend(frontend)
            if backend is None:
                return
            backend_reader, backend_writer = backend
            try:
                await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
            finally:
                backend_writer.close()
                with contextlib.suppress(OSError):
                    await backend_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        await self.update({})
