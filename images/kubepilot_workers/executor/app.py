"""The executor HTTP API (``kubepilot_api.workers.executor``) over any ``ExecutorBackend``.

Use :func:`create_app` to get the FastAPI app, :func:`serve` to run it with uvicorn in the foreground,
or :class:`BackgroundServer` to run it on a thread (tests, and processes that do more than serve).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

import uvicorn
from fastapi import FastAPI, HTTPException, Response, status

from kubepilot_api.workers.executor import HEALTH_PATH, JOBS_PATH, ExecutorHealth, ExecutorJob, ExecutorSubmit
from kubepilot_workers.executor.backend import ExecutorBackend
from kubepilot_workers.executor.queue import JobQueue

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 30.0


def _backend_health(backend: ExecutorBackend) -> tuple[bool, str]:
    try:
        return backend.health()
    except Exception as error:  # a backend that cannot even answer is simply not ready
        log.warning("backend health check failed: %s", error)
        return False, ""


def create_app(backend: ExecutorBackend) -> FastAPI:
    """The executor API in front of ``backend``; the job queue lives as long as the app runs."""
    queue = JobQueue(backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            await asyncio.to_thread(queue.stop)

    app = FastAPI(title="kubepilot executor", version="v1", lifespan=lifespan)
    app.state.queue = queue

    # Plain (sync) handlers: FastAPI runs them in its thread pool, so a slow backend health check
    # never blocks the event loop.
    @app.post(JOBS_PATH, status_code=status.HTTP_202_ACCEPTED)
    def submit_job(submit: ExecutorSubmit, response: Response) -> ExecutorJob:
        known = queue.get(submit.jobId)
        if known is not None:
            response.status_code = status.HTTP_200_OK
            return known
        ready, _ = _backend_health(backend)
        if not ready:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"backend {backend.name} is not ready")
        job, created = queue.submit(submit)
        if not created:
            response.status_code = status.HTTP_200_OK
        return job

    @app.get(JOBS_PATH)
    def list_jobs() -> list[ExecutorJob]:
        return queue.list()

    @app.get(JOBS_PATH + "/{job_id}")
    def get_job(job_id: str) -> ExecutorJob:
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown job {job_id}")
        return job

    @app.post(JOBS_PATH + "/{job_id}/cancel")
    def cancel_job(job_id: str) -> ExecutorJob:
        job = queue.cancel(job_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown job {job_id}")
        return job

    @app.get(HEALTH_PATH)
    def health() -> ExecutorHealth:
        ready, model = _backend_health(backend)
        queued, running = queue.counts()
        return ExecutorHealth(ready=ready, backend=backend.name, model=model, queued=queued, running=running)

    return app


def serve(backend: ExecutorBackend, host: str, port: int) -> None:
    """Serve the executor API for ``backend`` on host:port until interrupted (SIGINT/SIGTERM)."""
    uvicorn.run(create_app(backend), host=host, port=port, log_level="info", access_log=False)


class BackgroundServer:
    """Runs an app with uvicorn on a thread; port 0 picks a free one. A context manager.

    ``base_url`` is ready once ``__enter__`` returns (the socket is bound and serving).
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Start serving; returns once the server accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("executor server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (runs the app's shutdown, which stops the job queue)."""
        self._server.should_exit = True
        self._thread.join(STARTUP_TIMEOUT_SECONDS)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
