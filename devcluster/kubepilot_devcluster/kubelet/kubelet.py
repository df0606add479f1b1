"""The process kubelet (and scheduler) of the devcluster's single node.

Each pass lists every pod and:

* binds unscheduled pods that fit the node's remaining capacity (``pods/binding``, else a ``spec.nodeName``
  patch); pods that do not fit stay Pending with ``PodScheduled=False`` reason ``Unschedulable``;
* starts a :class:`PodWorker` for each bound pod that has none, giving it a pod IP from 127.1.0.0/16 and
  its GPUs (see :mod:`.gpus`; a pod placed by name on a node without enough free GPUs fails admission);
* on ``deletionTimestamp`` stops the pod's processes (SIGTERM, grace period, SIGKILL) and then deletes the pod
  with ``gracePeriodSeconds=0`` so that it disappears;
* stops the workers of pods that vanished from the server.

Rules of the process runtime, volumes and networking are documented in :mod:`.runtime`, :mod:`.volumes` and
:mod:`.network`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..controllers.base import ControlLoop
from ..controllers.client import NODES, PODS, TRANSIENT_ERRORS, ApiError
from ..controllers.events import record_event
from .gpus import GPU_RESOURCE, GpuAllocator
from .network import POD_NETWORK, AddressPool
from .orphans import reap_orphans
from .pod_worker import PodWorker
from .preparation import NodeContext
from .quantity import parse_quantity
from .scheduler import TERMINAL_PHASES, node_labels, pod_requests, unschedulable_reason, used_resources
from .status import now_iso

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_SCHEDULER = "default-scheduler"
SHUTDOWN_GRACE_CAP_SECONDS = 10.0


def grace_seconds(pod: JsonObject) -> float:
    """The pod's deletion grace period: the one given on delete, else its terminationGracePeriodSeconds."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionGracePeriodSeconds") is not None:
        return float(meta["deletionGracePeriodSeconds"])
    return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))


class Kubelet(ControlLoop):
    """Schedules and runs the pods of one node."""

    name = "kubelet"
    watched = (PODS,)

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__(ctx.client)
        self.ctx = ctx
        self.node_name = ctx.config.node_name
        self.labels = node_labels(self.node_name)
        self.ips = AddressPool(POD_NETWORK)
        self.workers: dict[str, PodWorker] = {}
        self._terminating: dict[str, asyncio.Task[None]] = {}
        self._node_registered = False
        self.gpus = GpuAllocator(int(parse_quantity(ctx.config.capacity.get(GPU_RESOURCE, "0"))))
        self._rejected: dict[str, str] = {}

    # -- node ---------------------------------------------------------------------------------------

    def node_status(self) -> JsonObject:
        capacity = dict(self.ctx.config.capacity)
        ready_since = now_iso()
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": self.ctx.host_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "devcluster process kubelet is posting ready status",
                    "lastHeartbeatTime": ready_since,
                    "lastTransitionTime": ready_since,
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.31.0-devcluster",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }

    async def register_node(self) -> None:
        """Create (or refresh) the Node object with its capacity and Ready condition."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self.labels},
            "spec": {},
        }
        try:
            await self.client.create(NODES, None, body)
        except ApiError as err:
            if err.status != 409:
                raise
        await self.client.patch(NODES, None, self.node_name, {"status": self.node_status()}, "status")
        self._node_registered = True

    async def startup(self) -> None:
        reap_orphans(self.ctx.data_dir)

    # -- passes -------------------------------------------------------------------------------------

    async def reconcile(self) -> None:
        if not self._node_registered:
            try:
                await self.register_node()
            except TRANSIENT_ERRORS as err:
                log.warning("kubelet: cannot register node %s: %s", self.node_name, err)
        pods, _rv = await self.client.list(PODS)
        await self._schedule(pods)
        for pod in pods:
            # Addresses of pods from before a restart stay theirs; new pods must not be handed them.
            if (pod.get("spec") or {}).get("nodeName") == self.node_name:
                self.ips.reserve(str((pod.get("status") or {}).get("podIP") or ""))
        present: set[str] = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid", ""))
            present.add(uid)
            if (pod.get("spec") or {}).get("nodeName") != self.node_name:
                continue
            if meta.get("deletionTimestamp"):
                if uid not in self._terminating:
                    self._terminating[uid] = asyncio.create_task(self._terminate(pod))
                continue
            phase = (pod.get("status") or {}).get("phase")
            if uid not in self.workers and phase not in TERMINAL_PHASES:
                self._start_worker(pod)
            if uid in self._rejected:
                await self._reject(pod, self._rejected.pop(uid))
        for uid, worker in self.workers.items():
            if worker.finished.is_set():
                self.gpus.release(uid)
        for uid in list(self.workers):
            if uid not in present and uid not in self._terminating:
                worker = self.workers[uid]
                self._terminating[uid] = asyncio.create_task(self._forget(uid, grace_seconds(worker.pod)))
        for uid, task in list(self._terminating.items()):
            if task.done() and uid not in present:
                del self._terminating[uid]

    def _start_worker(self, pod: JsonObject) -> None:
        uid = str(pod["metadata"]["uid"])
        previous_ip = str((pod.get("status") or {}).get("podIP") or "")
        if (pod.get("spec") or {}).get("hostNetwork"):
            pod_ip = self.ctx.host_ip
        elif previous_ip in self.ips:
            self.ips.reserve(previous_ip)
            pod_ip = previous_ip
        else:
            pod_ip = self.ips.allocate()
        wanted = int(pod_requests(pod).get(GPU_RESOURCE, 0))
        gpus = self.gpus.allocate(uid, wanted)
        if gpus is None:
            # Only pods placed on the node by name (not by our scheduler) can get here.
            self.ips.release(pod_ip)
            self._rejected[uid] = (
                f"Allocate failed due to requested number of devices unavailable for {GPU_RESOURCE}. "
                f"Requested: {wanted}, Available: {len(self.gpus.free())}"
            )
            return
        worker = PodWorker(self.ctx, pod, pod_ip, gpus)
        self.workers[uid] = worker
        worker.start()

    async def _bind(self, pod: JsonObject) -> None:
        meta = pod["metadata"]
        namespace, name = str(meta.get("namespace")), str(meta["name"])
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await self.client.create_sub(PODS, namespace, name, "binding", binding)
        except ApiError as err:
            if err.status not in (404, 405):
                raise
            # The server may not serve pods/binding; setting spec.nodeName is the same decision.
            await self.client.patch(PODS, namespace, name, {"spec": {"nodeName": self.node_name}})

    async def _schedule(self, pods: list[JsonObject]) -> None:
        """Bind pending unscheduled pods in creation order while they fit; mark the rest Unschedulable."""
        used = used_resources(pods, self.node_name)
        waiting = [
            p
            for p in pods
            if not (p.get("spec") or {}).get("nodeName")
            and (p.get("spec") or {}).get("schedulerName", DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
            and (p.get("status") or {}).get("phase") not in TERMINAL_PHASES
        ]
        waiting.sort(
            key=lambda p: (str(p["metadata"].get("creationTimestamp", "")), str(p["metadata"]["name"]))
        )
        for pod in waiting:
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                await self.client.delete(PODS, meta.get("namespace"), meta["name"], grace_period=0)
                continue
            reason = unschedulable_reason(pod, self.ctx.config.capacity, used, self.labels)
            if reason is None:
                await self._bind(pod)
                await record_event(
                    self.client,
                    pod | {"apiVersion": "v1", "kind": "Pod"},
                    "Scheduled",
                    f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {self.node_name}",
                    component=DEFAULT_SCHEDULER,
                )
                pod.setdefault("spec", {})["nodeName"] = self.node_name
                for key, value in used_resources([pod], self.node_name).items():
                    used[key] = used.get(key, 0) + value
                continue
            await self._mark_unschedulable(pod, reason)

    async def _mark_unschedulable(self, pod: JsonObject, message: str) -> None:
        status = pod.get("status") or {}
        current: JsonObject = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {}
        )
        if current.get("message") == message and current.get("status") == "False":
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now_iso(),
        }
        meta = pod["metadata"]
        await record_event(
            self.client,
            pod | {"apiVersion": "v1", "kind": "Pod"},
            "FailedScheduling",
            message,
            warning=True,
            component=DEFAULT_SCHEDULER,
        )
        await self.client.patch(
            PODS,
            meta.get("namespace"),
            meta["name"],
            {"status": {"phase": "Pending", "conditions": [condition]}},
            "status",
        )

    # -- stopping pods ------------------------------------------------------------------------------

    async def _terminate(self, pod: JsonObject) -> None:
        """Graceful deletion: stop the processes, publish the last status, then remove the pod."""
        meta = pod["metadata"]
        uid = str(meta["uid"])
        try:
            worker = self.workers.get(uid)
            if worker is not None:
                await worker.stop(grace_seconds(pod))
                await worker.publish_final()
            await self.client.delete(PODS, meta.get("namespace"), meta["name"], grace_period=0, uid=uid)
        except TRANSIENT_ERRORS as err:
            log.warning("kubelet: deleting pod %s failed: %s", meta.get("name"), err)
            self._terminating.pop(uid, None)
            self.wake.set()
            return
        self._drop_worker(uid)

    async def _forget(self, uid: str, grace: float) -> None:
        """The pod is gone from the server: stop whatever still runs for it."""
        worker = self.workers.get(uid)
        if worker is not None:
            await worker.stop(grace)
        self._drop_worker(uid)

    async def _reject(self, pod: JsonObject, message: str) -> None:
        """Fail a pod the node cannot admit, as the kubelet's admission does."""
        meta = pod["metadata"]
        status = {"phase": "Failed", "reason": "UnexpectedAdmissionError", "message": message}
        await self.client.patch(PODS, meta.get("namespace"), meta["name"], {"status": status}, "status")
        await record_event(
            self.client,
            pod | {"apiVersion": "v1", "kind": "Pod"},
            "UnexpectedAdmissionError",
            message,
            warning=True,
            component="kubelet",
        )

    def _drop_worker(self, uid: str) -> None:
        self.gpus.release(uid)
        worker = self.workers.pop(uid, None)
        if worker is not None:
            self.ips.release(worker.pod_ip)
            worker.cleanup_files()

    async def shutdown(self) -> None:
        """Stop every pod of the node (the devcluster is going down)."""
        for task in self._terminating.values():
            task.cancel()
        workers = list(self.workers.values())
        await asyncio.gather(
            *(w.stop(min(grace_seconds(w.pod), SHUTDOWN_GRACE_CAP_SECONDS)) for w in workers),
            return_exceptions=True,
        )
        for task in self._terminating.values():
            with contextlib.suppress(asyncio.CancelledError, *TRANSIENT_ERRORS):
                await task
        self.workers.clear()
