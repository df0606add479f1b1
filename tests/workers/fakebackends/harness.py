"""The servers' harness and job helpers shared by the fake backends' tests."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from kubepilot_api.generationjob import GenerationProgress, OutputImage
from kubepilot_api.workers.config import GenerationRequest
from kubepilot_workers.executor.backend import JobContext


def png_bytes(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


class LoopbackServer:
    """An aiohttp app served on a free 127.0.0.1 port from its own thread and event loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=10)

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def job_context(
    request: GenerationRequest, output_dir: Path, job_id: str = "job-1"
) -> tuple[JobContext, list[GenerationProgress]]:
    """A JobContext whose progress reports are collected in the returned list."""
    reports: list[GenerationProgress] = []
    return JobContext(
        job_id=job_id, request=request, output_dir=output_dir, report_progress=reports.append
    ), reports


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate`` holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


class RunInThread:
    """``backend.run(context)`` in a thread, keeping its result or exception."""

    def __init__(self, run: Callable[[JobContext], list[OutputImage]], context: JobContext) -> None:
        self.result: list[OutputImage] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._target, args=(run, context), daemon=True)
        self._thread.start()

    def _target(self, run: Callable[[JobContext], list[OutputImage]], context: JobContext) -> None:
        try:
            self.result = run(context)
        except BaseException as error:
            self.error = error

    def join(self, timeout: float = 15.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the job did not end in time"


def background_task(
    start: Callable[[], Coroutine[Any, Any, None]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context that runs ``start()`` as a task for as long as the app serves."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(start())
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    return context
