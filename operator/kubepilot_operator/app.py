"""The operator process: cache, work queue, reconcilers, intake, leader election, wired to kopf."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kubepilot_operator import kube, tokens
from kubepilot_operator.cache import ObjectCache
from kubepilot_operator.intake import KIND_BY_PLURAL, Intake
from kubepilot_operator.leader import LeaseElector
from kubepilot_operator.metrics import UNSCHEDULED, Metrics
from kubepilot_operator.reconcile import modelpull
from kubepilot_operator.reconcile.context import Context
from kubepilot_operator.reconcile.schedule import CHECK_INTERVAL_SECONDS, run_schedule
from kubepilot_operator.reports import ReportStore
from kubepilot_operator.settings import Settings
from kubepilot_operator.workqueue import WorkKey, WorkQueue

log = logging.getLogger(__name__)
Reconciler = Callable[[Context, WorkKey], "float | None"]
PHASE_METRICS_INTERVAL = 5.0


def reconcilers() -> dict[str, Reconciler]:
    import importlib

    table: dict[str, Reconciler] = {"modelpulls": modelpull.reconcile}
    for plural, module in (
        ("trainingruns", "trainingrun"),
        ("generationjobs", "generationjob"),
        ("serviceinstances", "serviceinstance"),
    ):
        table[plural] = importlib.import_module(f"kubepilot_operator.reconcile.{module}").reconcile
    return table


class Operator:
    """Everything one operator replica holds; kopf feeds its cache, it does the rest."""

    def __init__(self, settings: Settings, api: kube.Kube) -> None:
        self.settings = settings
        self.api = api
        self.cache = ObjectCache()
        self.reports = ReportStore()
        self.metrics = Metrics()
        self.queue: WorkQueue | None = None
        self.context: Context | None = None
        self.identity = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.elector = LeaseElector(
            api,
            settings.leaderElection.leaseNamespace or settings.operatorNamespace,
            settings.leaderElection.leaseName,
            self.identity,
            settings.leaderElection.leaseDurationSeconds,
        )
        self._leading = not settings.leaderElection.enabled
        self._reconcilers = reconcilers()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.reconcileWorkers, thread_name_prefix="reconcile"
        )
        self.intake_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- kopf feeds these ------------------------------------------------------------------------

    def observe(self, plural: str, event_type: str, body: dict[str, Any]) -> None:
        """A watch event: update the cache and queue the objects it concerns."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if event_type == "DELETED":
            self.cache.remove(plural, namespace, name)
            echo = False
        else:
            # The echo of the operator's own write is already cached from the API's answer: the
            # pass that wrote it saw this state, so only the objects that depend on it need a pass.
            echo = not self.cache.upsert(plural, body)
        if echo and plural not in KIND_BY_PLURAL:
            return  # a child the operator just created or patched: its owner's pass saw it
        for key in self._affected(plural, body):
            if echo and key == WorkKey(plural, namespace, name):
                continue
            self._enqueue(key)

    def _affected(self, plural: str, body: dict[str, Any]) -> list[WorkKey]:
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace", ""))
        if plural in KIND_BY_PLURAL:
            keys = [WorkKey(plural, namespace, str(meta.get("name", "")))]
            keys += self._dependents(plural, body)
            return keys
        keys = []
        for ref in meta.get("ownerReferences") or []:
            owner_plural = {v: k for k, v in KIND_BY_PLURAL.items()}.get(str(ref.get("kind")))
            if owner_plural and str(ref.get("apiVersion", "")).startswith("kubepilot.io/"):
                keys.append(WorkKey(owner_plural, namespace, str(ref.get("name"))))
        labels = meta.get("labels") or {}
        kind, name = labels.get("kubepilot.io/kind"), labels.get("kubepilot.io/name")
        owner_plural = {v: k for k, v in KIND_BY_PLURAL.items()}.get(str(kind))
        if plural == "pods" and owner_plural and name:
            keys.append(WorkKey(owner_plural, namespace, name))
        return keys

    def _dependents(self, plural: str, body: dict[str, Any]) -> list[WorkKey]:
        """Objects whose state depends on this one (a TrainingRun on its ModelPull, ...)."""
        namespace = body["metadata"].get("namespace", "")
        if plural == "modelpulls":
            runs = [
                WorkKey("trainingruns", namespace, r["metadata"]["name"])
                for r in self.cache.all("trainingruns", namespace)
                if (r.get("status") or {}).get("phase", "Pending") == "Pending"
            ]
            pulls = [
                WorkKey("modelpulls", p["metadata"].get("namespace", ""), p["metadata"]["name"])
                for p in self.cache.all("modelpulls")
                if (p.get("status") or {}).get("phase", "Pending") == "Pending" and p is not body
            ]
            return runs + pulls
        if plural == "serviceinstances":
            name = body["metadata"]["name"]
            return [
                WorkKey("generationjobs", namespace, j["metadata"]["name"])
                for j in self.cache.all("generationjobs", namespace)
                if (j.get("status") or {}).get("phase", "Pending") in ("Pending", "Processing")
                and (j.get("status") or {}).get("assignedService", "") in ("", name)
            ]
        if plural == "generationjobs":
            service = (body.get("status") or {}).get("assignedService")
            return [WorkKey("serviceinstances", namespace, service)] if service else []
        if plural == "trainingruns":
            return [
                WorkKey("generationjobs", namespace, j["metadata"]["name"])
                for j in self.cache.all("generationjobs", namespace)
                if (j.get("status") or {}).get("phase", "Pending") == "Pending"
            ]
        return []

    def _enqueue(self, key: WorkKey, delay: float = 0.0) -> None:
        if self.queue is not None:
            self.queue.add(key, delay)

    def _enqueue_from_any_thread(self, key: WorkKey, delay: float = 0.0) -> None:
        """For reconcilers, which run in worker threads: the queue lives on the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._enqueue, key, delay)

    def _enqueue_report(self, key: WorkKey, interval: float, final: bool) -> None:
        if self.queue is None:
            return
        if final:
            self.queue.add(key)
        else:
            self.queue.add_coalesced(key, interval)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        key = await loop.run_in_executor(
            self._executor, tokens.load_or_create_key, self.api, self.settings.operatorNamespace
        )
        self.queue = WorkQueue()
        self.context = Context(
            settings=self.settings,
            api=self.api,
            cache=self.cache,
            reports=self.reports,
            metrics=self.metrics,
            intake_key=key,
            enqueue=self._enqueue_from_any_thread,
        )
        intake = Intake(
            cache=self.cache,
            reports=self.reports,
            metrics=self.metrics,
            key=key,
            interval=self.settings.intake.statusWriteIntervalSeconds,
            enqueue=self._enqueue_report,
            is_leader=lambda: self._leading,
        )
        self._runner = web.AppRunner(intake.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.intake.host, self.settings.intake.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.intake_port = sockets[0].getsockname()[1] if sockets else self.settings.intake.port
        log.info("intake listening on %s:%d", self.settings.intake.host, self.intake_port)
        for _ in range(self.settings.reconcileWorkers):
            self._tasks.append(asyncio.create_task(self.queue.run(self._work, self._failed)))
        self._tasks.append(asyncio.create_task(self._lead()))
        self._tasks.append(asyncio.create_task(self._phase_metrics()))
        self._tasks.append(asyncio.create_task(self._schedule()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self.settings.leaderElection.enabled:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.elector.release)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _lead(self) -> None:
        election = self.settings.leaderElection
        loop = asyncio.get_running_loop()
        while True:
            if election.enabled:
                leading = await loop.run_in_executor(self._executor, self.elector.try_acquire_or_renew)
            else:
                leading = True
            if leading and not self._leading:
                self._leading = True
                self.resync()
            self._leading = leading
            await asyncio.sleep(election.renewIntervalSeconds if election.enabled else 3600)

    def resync(self) -> None:
        """Queue every cached object of ours: a new leader starts from the whole state."""
        for plural in KIND_BY_PLURAL:
            for body in self.cache.all(plural):
                self._enqueue(
                    WorkKey(plural, body["metadata"].get("namespace", ""), body["metadata"]["name"])
                )

    async def _work(self, key: WorkKey) -> float | None:
        if not self._leading or self.context is None:
            return None
        kind = KIND_BY_PLURAL[key.plural]
        started = time.monotonic()
        reconcile = self._reconcilers.get(key.plural)
        if reconcile is None:
            return None
        loop = asyncio.get_running_loop()
        requeue = await loop.run_in_executor(self._executor, reconcile, self.context, key)
        self.metrics.reconciles.labels(kind, "ok").inc()
        self.metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - started)
        return requeue

    def _failed(self, key: WorkKey, error: Exception) -> None:
        kind = KIND_BY_PLURAL.get(key.plural, key.plural)
        self.metrics.reconciles.labels(kind, "error").inc()
        if isinstance(error, kube.ApiError) and error.status == 409:
            log.debug("conflict reconciling %s %s/%s; retrying", kind, key.namespace, key.name)
        else:
            log.warning(
                "reconciling %s %s/%s failed: %s",
                kind,
                key.namespace,
                key.name,
                error,
                exc_info=not isinstance(error, kube.ApiError),
            )

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)
            if self._leading and self.context is not None:
                try:
                    await loop.run_in_executor(self._executor, run_schedule, self.context)
                except Exception as error:  # retried at the next check
                    log.warning("scheduled shutdown check failed: %s", error)

    def _queue_depths(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        for job in self.cache.all("generationjobs"):
            status = job.get("status") or {}
            if status.get("phase", "Pending") != "Pending":
                continue
            service = status.get("assignedService")
            label = f"{job['metadata'].get('namespace', '')}/{service}" if service else UNSCHEDULED
            depths[label] = depths.get(label, 0) + 1
        return depths

    async def _phase_metrics(self) -> None:
        while True:
            for plural, kind in KIND_BY_PLURAL.items():
                phases = [
                    str(
                        (b.get("status") or {}).get(
                            "phase", "Pending" if kind != "ServiceInstance" else "Stopped"
                        )
                    )
                    for b in self.cache.all(plural)
                ]
                self.metrics.set_phase_counts(kind, phases)
            self.metrics.set_queue_depths(self._queue_depths())
            await asyncio.sleep(PHASE_METRICS_INTERVAL)
