"""One pod's life on the node: volumes and env, init containers, supervised containers, status reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from ..controllers.client import PODS, TRANSIENT_ERRORS
from ..controllers.events import record_event
from .paths import container_log_path, container_pid_path, pod_dir, previous_container_log_path
from .preparation import NodeContext, fetch_sources, plan_pod
from .probes import run_probe, wait_for_startup
from .runtime import (
    ContainerProcess,
    CreateContainerError,
    ImageNotRunnable,
    LaunchPlan,
    read_termination_message,
    rotate_log,
)
from .sources import ContainerConfigError
from .status import ContainerRecord, now_iso, pod_conditions, pod_phase, termination_reason
from .volumes import remove_pod_volumes

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
PREPARE_RETRY_SECONDS = 2.0


class PodWorker:
    """Runs one pod's containers as processes and keeps its status current on the API server."""

    def __init__(self, ctx: NodeContext, pod: JsonObject, pod_ip: str, gpus: list[int]) -> None:
        self.ctx = ctx
        self.pod = pod
        self.pod_ip = pod_ip
        self.gpus = gpus
        meta = pod.get("metadata") or {}
        self.namespace = str(meta.get("namespace", "default"))
        self.name = str(meta.get("name", ""))
        self.uid = str(meta.get("uid", ""))
        spec = pod.get("spec") or {}
        self.restart_policy = str(spec.get("restartPolicy", "Always"))
        self.init_specs: list[JsonObject] = list(spec.get("initContainers") or [])
        self.main_specs: list[JsonObject] = list(spec.get("containers") or [])
        self.init_records = [
            ContainerRecord(str(c.get("name")), str(c.get("image"))) for c in self.init_specs
        ]
        self.main_records = [
            ContainerRecord(str(c.get("name")), str(c.get("image"))) for c in self.main_specs
        ]
        self.init_failed = False
        self.start_time = now_iso()
        self._since: dict[str, tuple[bool, str]] = {}
        self._processes: dict[str, ContainerProcess] = {}
        self._stopping = asyncio.Event()
        self._stop_grace = 0.0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self._event_tasks: set[asyncio.Task[None]] = set()

    # -- public API used by the kubelet -------------------------------------------------------------

    def start(self) -> None:
        self._publisher = asyncio.create_task(self._publish_loop(), name=f"status {self.name}")
        self._task = asyncio.create_task(self._run(), name=f"pod {self.name}")

    @property
    def phase(self) -> str:
        return pod_phase(self.init_records, self.main_records, self.init_failed)

    async def stop(self, grace_seconds: float) -> None:
        """Stop every container (SIGTERM, grace, SIGKILL), wait for the worker, publish the final status."""
        self._stop_grace = grace_seconds
        self._stopping.set()
        for name in self._processes:
            self._event("Killing", f"Stopping container {name}")
        await asyncio.gather(*(p.stop(grace_seconds) for p in list(self._processes.values())))
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher

    async def publish_final(self) -> None:
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self._publish()

    def cleanup_files(self) -> None:
        with contextlib.suppress(OSError):
            remove_pod_volumes(pod_dir(self.ctx.data_dir, self.namespace, self.name, self.uid))

    # -- lifecycle ----------------------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty.set()

    def _event(self, reason: str, message: str, warning: bool = False) -> None:
        """Record a pod Event in the background (events never hold up the pod)."""
        pod = self.pod | {"apiVersion": "v1", "kind": "Pod"}
        task = asyncio.create_task(
            record_event(self.ctx.client, pod, reason, message, warning=warning, component="kubelet")
        )
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _run(self) -> None:
        try:
            self._mark_dirty()
            plans = await self._prepare()
            if plans is None:
                return
            for spec, record in zip(self.init_specs, self.init_records, strict=True):
                if not await self._run_init(spec, record, plans[record.name]):
                    return
            self._mark_dirty()
            await asyncio.gather(
                *(
                    self._supervise(spec, record, plans[record.name])
                    for spec, record in zip(self.main_specs, self.main_records, strict=True)
                )
            )
        except Exception:
            log.exception("pod %s/%s: worker crashed", self.namespace, self.name)
        finally:
            self._mark_dirty()
            self.finished.set()

    async def _wait_stopping(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the pod is being stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _prepare(self) -> dict[str, LaunchPlan] | None:
        """Fetch sources, materialise volumes and plan every container; retries until it works or stops."""
        records = self.init_records + self.main_records
        while not self._stopping.is_set():
            try:
                sources = await fetch_sources(self.ctx.client, self.pod)
                return plan_pod(self.ctx, self.pod, self.pod_ip, self.gpus, sources)
            except ImageNotRunnable as err:
                self._set_all_waiting(records, "ErrImageNeverPull", str(err))
            except ContainerConfigError as err:
                self._set_all_waiting(records, "CreateContainerConfigError", str(err))
            except CreateContainerError as err:
                self._set_all_waiting(records, "CreateContainerError", str(err))
            except TRANSIENT_ERRORS as err:
                self._set_all_waiting(records, "ContainerCreating", f"preparing the pod: {err}")
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                # Malformed fields the API server let through (modes, ports, env shapes) end up here.
                self._set_all_waiting(records, "CreateContainerConfigError", f"invalid pod spec: {err!r}")
            if await self._wait_stopping(PREPARE_RETRY_SECONDS):
                return None
        return None

    def _set_all_waiting(self, records: list[ContainerRecord], reason: str, message: str) -> None:
        changed = [record.set_waiting(reason, message) for record in records]
        if any(changed):
            self._mark_dirty()
            if reason != "ContainerCreating":
                self._event("Failed", f"Error: {reason}: {message}", warning=True)

    def _backoff(self, failures: int) -> float:
        cfg = self.ctx.config
        return float(min(cfg.backoff_initial_seconds * (2**failures), cfg.backoff_max_seconds))

    async def _run_once(self, spec: JsonObject, record: ContainerRecord, plan: LaunchPlan) -> int | None:
        """One run of a container; its exit code, or None when it could not start."""
        logs = container_log_path(self.ctx.data_dir, self.namespace, self.name, self.uid, record.name)
        if record.started:
            previous = previous_container_log_path(
                self.ctx.data_dir, self.namespace, self.name, self.uid, record.name
            )
            rotate_log(logs, previous)
        term_path = Path(plan.env["KUBEPILOT_TERMINATION_MESSAGE_PATH"])
        term_path.unlink(missing_ok=True)  # noqa: ASYNC240 - a tiny local unlink
        try:
            pid_path = container_pid_path(self.ctx.data_dir, self.namespace, self.name, self.uid, record.name)
            proc = await ContainerProcess.start(plan, logs, pid_path)
        except CreateContainerError as err:
            record.set_waiting("CreateContainerError", str(err))
            self._event("Failed", f"Error: CreateContainerError: {err}", warning=True)
            self._mark_dirty()
            return None
        self._processes[record.name] = proc
        if self._stopping.is_set():
            # stop() ran while this process was being spawned and could not signal it.
            await proc.stop(self._stop_grace)
        record.set_running(proc.pid)
        self._event("Started", f"Started container {record.name}")
        started_at = str(record.state["running"]["startedAt"])
        probes = self._start_probes(spec, record, proc, plan)
        self._mark_dirty()
        try:
            code = await proc.wait()
        finally:
            for task in probes:
                task.cancel()
            self._processes.pop(record.name, None)
        policy = str(spec.get("terminationMessagePolicy", "File"))
        message = read_termination_message(term_path, logs, policy, code)
        record.set_terminated(code, termination_reason(code), message, started_at)
        self._mark_dirty()
        return code

    def _start_probes(
        self, spec: JsonObject, record: ContainerRecord, proc: ContainerProcess, plan: LaunchPlan
    ) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._probe_container(spec, record, proc, plan))]

    def _kill_grace(self, probe: JsonObject) -> float:
        pod_grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return float(probe.get("terminationGracePeriodSeconds", pod_grace))

    async def _probe_container(
        self, spec: JsonObject, record: ContainerRecord, proc: ContainerProcess, plan: LaunchPlan
    ) -> None:
        """Startup probe first; then readiness (Ready) and liveness (restart) until the process exits."""
        startup = spec.get("startupProbe")
        if startup and not await wait_for_startup(startup, spec, self.pod_ip, plan.env):
            self._event("Unhealthy", f"Startup probe failed; container {record.name} will be restarted", True)
            await proc.stop(self._kill_grace(startup))
            return
        record.startup_passed = True
        loops = []
        readiness = spec.get("readinessProbe")
        if readiness:

            async def on_ready(ok: bool) -> None:
                record.ready = ok and record.running
                self._mark_dirty()

            loops.append(run_probe(readiness, spec, self.pod_ip, plan.env, on_ready))
        else:
            record.ready = True
        self._mark_dirty()
        liveness = spec.get("livenessProbe")
        if liveness:

            async def on_live(ok: bool) -> None:
                if not ok:
                    self._event(
                        "Unhealthy", f"Liveness probe failed; container {record.name} will be restarted", True
                    )
                    await proc.stop(self._kill_grace(liveness))

            loops.append(run_probe(liveness, spec, self.pod_ip, plan.env, on_live))
        await asyncio.gather(*loops)

    async def _run_init(self, spec: JsonObject, record: ContainerRecord, plan: LaunchPlan) -> bool:
        """Run an init container until it succeeds; False when the pod fails or is stopped instead."""
        failures = 0
        while not self._stopping.is_set():
            code = await self._run_once(spec, record, plan)
            if code == 0:
                record.final = True
                self._mark_dirty()
                return True
            if self._stopping.is_set():
                return False
            if code is not None and self.restart_policy == "Never":
                record.final = True
                self.init_failed = True
                self._mark_dirty()
                return False
            delay = self._backoff(failures)
            failures += 1
            record.begin_restart(
                "CrashLoopBackOff", f"back-off {delay:g}s restarting failed container={record.name}"
            )
            self._event("BackOff", f"Back-off restarting failed init container {record.name}", warning=True)
            self._mark_dirty()
            await self._wait_stopping(delay)
        return False

    async def _supervise(self, spec: JsonObject, record: ContainerRecord, plan: LaunchPlan) -> None:
        """Run a container and restart it per the pod's restartPolicy with CrashLoopBackOff delays."""
        failures = 0
        while not self._stopping.is_set():
            began = time.monotonic()
            code = await self._run_once(spec, record, plan)
            if self._stopping.is_set():
                break
            restart = code is None or self.restart_policy == "Always"
            restart = restart or (self.restart_policy == "OnFailure" and code != 0)
            if not restart:
                break
            if time.monotonic() - began > 4 * self.ctx.config.backoff_max_seconds:
                failures = 0
            delay = self._backoff(failures)
            failures += 1
            if code is not None:
                record.begin_restart(
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={record.name} pod={self.name}",
                )
                self._event("BackOff", f"Back-off restarting failed container {record.name}", warning=True)
            self._mark_dirty()
            if await self._wait_stopping(delay):
                break
        record.final = True
        self._mark_dirty()

    # -- status -------------------------------------------------------------------------------------

    def build_status(self) -> JsonObject:
        phase = self.phase
        status: JsonObject = {
            "phase": phase,
            "conditions": pod_conditions(phase, self.init_records, self.main_records, self._since),
            "hostIP": self.ctx.host_ip,
            "hostIPs": [{"ip": self.ctx.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [r.to_status() for r in self.main_records],
        }
        if self.init_records:
            status["initContainerStatuses"] = [r.to_status() for r in self.init_records]
        return status

    async def _publish(self) -> None:
        result = await self.ctx.client.patch(
            PODS, self.namespace, self.name, {"status": self.build_status()}, "status"
        )
        if result is None:
            log.debug("pod %s/%s vanished while publishing status", self.namespace, self.name)

    async def _publish_loop(self) -> None:
        while True:
            await self._dirty.wait()
            # Coalesce bursts of changes (several containers starting at once) into one patch.
            await asyncio.sleep(0.05)
            self._dirty.clear()
            try:
                await self._publish()
            except TRANSIENT_ERRORS as err:
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, err)
                await asyncio.sleep(0.5)
                self._dirty.set()
            except Exception:
                log.exception("pod %s/%s: status update crashed", self.namespace, self.name)
