"""OT-18 … OT-20 rendered from the node agent, the gateway's own readings and the session's pod. Pure.

The readings come from ControlPilot's node-agent client (``controlpilot.telemetry``: ``NodeAgents``,
``take_reading``, ``cpu_percent``, ``cpu_count``), reused as is; this module only picks the node and
maps the figures onto OneTrainer's shapes.

- **Which node.** OneTrainer reports the machine it runs on. Here that is the node of the current
  session's trainer pod: the agent snapshot whose ``hostname`` is the pod's ``spec.nodeName`` comes
  first; without a match (no active session, or an agent whose hostname is its pod's name) the first
  agent that answered; with no agent at all, the host the gateway runs on (``/proc``, ``statvfs``).
- **os** is the gateway's ``uname`` (and ``/proc/cpuinfo``'s model name as ``processor``): the agent
  does not report it. The kernel is node-wide, so it is the node's own when the gateway runs there.
- **disk** is the agent's first configured disk, else the filesystem of the gateway's outputs volume
  (where a session writes), else ``/``.
- **GPU allocator figures** (``memory_allocated_gb``, ``memory_reserved_gb``, ``allocated_percent``,
  ``reserved_percent``) are PyTorch's (``torch.cuda.memory_allocated`` / ``memory_reserved``),
  readable only inside the trainer process. They come from the trainer pod's progress reports: the
  report's ``metrics`` (which the operator copies into the run's ``status.metrics``) under the keys
  ``gpu.<i>.memory_allocated_bytes``, ``gpu.<i>.memory_reserved_bytes`` and
  ``gpu.<i>.memory_total_bytes`` (``i``: the trainer's CUDA device index; the total is
  ``torch.cuda.get_device_properties(i).total_memory``). While the active session reports them, the
  ``gpu`` section is the trainer process's view, as OneTrainer's own UI shows it (its process, its
  devices): one device per reported index, ``id`` that index, the total the trainer's; the ``name``
  (a report carries numbers only) is the node agent's GPU name when the node's GPUs share one name
  (the usual node), else that of the node GPU whose total is within 2 % of the trainer's, else
  ``""``. Without such figures (no session, a trainer that does not report them, no GPU) the
  devices are the node agent's with the allocator figures ``null`` (nothing is made up from NVML's
  device-wide use, which is not the allocator's).
- **The process** (OT-20) is the session's trainer pod. The trainer's own figures come from its
  reports the same way: ``process.pid`` (the pid inside the pod, as OneTrainer shows its own),
  ``process.cpu_percent``, ``process.memory_percent``, ``process.memory_rss_bytes`` (shown as
  ``memory_mb``) and ``process.num_threads``; any the trainer does not report are ``null`` (there is
  no metrics-server here). ``status`` is the pod's phase in lower case (``running`` as the seed
  shows while it trains), ``pending`` for an active session without a pod yet, ``idle`` without a
  session. Added keys say what is known: ``training_run``, ``pod_name``, ``pod_phase``, ``node``,
  ``start_time`` (the pod's ``status.startTime`` as Kubernetes writes it). A finished session's last
  figures are not shown (its process is gone).
- **Not covered here** (no GPU, and the trainers do not send these keys yet): the trainer side that
  writes them (a core change: kubepilot's trainer and the OneTrainer adapter add them to each
  report); the tests feed figures in that format through the run's status.
"""

from __future__ import annotations

import functools
import math
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubepilot_api.workers.progress import GPU_MEMORY_METRICS
from kubepilot_api.workers.progress import PROCESS_METRICS as TRAINER_PROCESS_METRICS
from kubepilot_gateway.profiles.controlpilot.telemetry import (
    AgentGpu,
    AgentSnapshot,
    DiskUsage,
    Reading,
    cpu_count,
    cpu_percent,
)

JsonObject = dict[str, Any]
GIB = 1024**3
MIB = 1024**2
GPU_METRIC = re.compile(rf"^gpu\.(?P<index>\d{{1,3}})\.(?P<field>{'|'.join(GPU_MEMORY_METRICS)})$")
"""A trainer report's PyTorch allocator figure of one CUDA device (the module docstring)."""
PROCESS_METRICS = {f"process.{name}": name for name in TRAINER_PROCESS_METRICS}
"""A trainer report's figures of its own process, by the name used here."""
NAME_TOLERANCE = 0.02


@dataclass(frozen=True)
class TrainerGpu:
    """One CUDA device as the trainer process sees it (from its reports)."""

    index: int
    allocated: int | None
    reserved: int | None
    total: int | None


def _metrics(run: JsonObject | None) -> dict[str, float]:
    metrics = ((run or {}).get("status") or {}).get("metrics")
    if not isinstance(metrics, dict):
        return {}
    return {
        str(key): float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _bytes(value: float | None) -> int | None:
    return int(value) if value is not None and value >= 0 else None


def trainer_gpus(run: JsonObject | None) -> list[TrainerGpu]:
    """The devices the run's trainer reports allocator figures for, by index ([] for none)."""
    fields: dict[int, dict[str, float]] = {}
    for key, value in _metrics(run).items():
        if match := GPU_METRIC.match(key):
            fields.setdefault(int(match["index"]), {})[match["field"]] = value
    return [
        TrainerGpu(
            index=index,
            allocated=_bytes(found.get("memory_allocated_bytes")),
            reserved=_bytes(found.get("memory_reserved_bytes")),
            total=_bytes(found.get("memory_total_bytes")),
        )
        for index, found in sorted(fields.items())
    ]


def trainer_process(run: JsonObject | None) -> dict[str, float]:
    """The run's trainer's figures of its own process, by ``PROCESS_METRICS``' names."""
    metrics = _metrics(run)
    return {
        name: metrics[key] for key, name in PROCESS_METRICS.items() if key in metrics and metrics[key] >= 0
    }


@dataclass(frozen=True)
class OsInfo:
    system: str
    release: str
    version: str
    machine: str
    processor: str


@functools.cache
def read_os_info() -> OsInfo:
    """The gateway host's ``uname`` and CPU model (blocking: reads ``/proc/cpuinfo``; once, as it does
    not change while the gateway runs)."""
    uname = platform.uname()
    processor = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                processor = value.strip()
                break
    except OSError:
        pass
    return OsInfo(
        system=uname.system,
        release=uname.release,
        version=uname.version,
        machine=uname.machine,
        processor=processor or uname.processor or uname.machine,
    )


def for_node(reading: Reading, node_name: str) -> Reading:
    """``reading`` with the snapshot of ``node_name`` first (the telemetry helpers read the first)."""
    chosen = [s for s in reading.snapshots if node_name and s.hostname == node_name]
    rest = [s for s in reading.snapshots if s not in chosen]
    return Reading(local=reading.local, snapshots=chosen[:1] + rest, local_disks=reading.local_disks)


def _first(reading: Reading) -> AgentSnapshot | None:
    return reading.snapshots[0] if reading.snapshots else None


def _gb(value: int | None) -> float | None:
    return round(value / GIB, 2) if value is not None else None


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole > 0 else 0.0


def memory_figures(reading: Reading) -> tuple[int, int, int]:
    """(total, used, available) bytes: the node's from its agent, else the gateway host's."""
    snapshot = _first(reading)
    if snapshot is not None and snapshot.memory is not None:
        memory = snapshot.memory
        return memory.totalBytes, memory.usedBytes, memory.availableBytes
    local = reading.local
    return local.mem_total, local.mem_used, local.mem_free


def disk_figures(reading: Reading) -> DiskUsage | None:
    """The agent's first readable disk, else the gateway's first readable path."""
    snapshot = _first(reading)
    for disk in snapshot.disk if snapshot is not None else []:
        if disk.totalBytes is not None and disk.usedBytes is not None and disk.freeBytes is not None:
            return DiskUsage(disk.path, disk.totalBytes, disk.usedBytes, disk.freeBytes)
    return reading.local_disks[0] if reading.local_disks else None


def gpu_name(gpu: TrainerGpu, node_gpus: Sequence[AgentGpu]) -> str:
    """The name of a trainer's device, from the node agent (see the module docstring)."""
    names = {node.name for node in node_gpus if node.name}
    if len(names) == 1:
        return names.pop()
    for node in node_gpus:
        total = node.memoryTotalBytes
        if gpu.total and total and abs(total - gpu.total) <= NAME_TOLERANCE * total and node.name:
            return node.name
    return ""


def _share(part: int | None, whole: int | None) -> float | None:
    return round(100 * part / whole, 1) if part is not None and whole else None


def gpu_section(reading: Reading, trainer: Sequence[TrainerGpu]) -> JsonObject:
    """OT-18's ``gpu``: the trainer's devices while it reports them, else the node agent's."""
    snapshot = _first(reading)
    node_gpus = snapshot.gpus if snapshot is not None else []
    if trainer:
        devices = [
            {
                "id": gpu.index,
                "name": gpu_name(gpu, node_gpus),
                "memory_total_gb": _gb(gpu.total),
                "memory_allocated_gb": _gb(gpu.allocated),
                "memory_reserved_gb": _gb(gpu.reserved),
            }
            for gpu in trainer
        ]
    else:
        devices = [
            {
                "id": gpu.index,
                "name": gpu.name,
                "memory_total_gb": _gb(gpu.memoryTotalBytes),
                "memory_allocated_gb": None,
                "memory_reserved_gb": None,
            }
            for gpu in node_gpus
        ]
    return {"available": bool(devices), "count": len(devices), "devices": devices}


def info_body(reading: Reading, os_info: OsInfo, trainer: Sequence[TrainerGpu] = ()) -> JsonObject:
    """OT-18; ``trainer``: the active session's reported devices (``trainer_gpus``)."""
    total, used, available = memory_figures(reading)
    disk = disk_figures(reading)
    return {
        "os": {
            "system": os_info.system,
            "release": os_info.release,
            "version": os_info.version,
            "machine": os_info.machine,
            "processor": os_info.processor,
        },
        "cpu": {"count": cpu_count(reading), "usage_percent": cpu_percent(reading)},
        "memory": {
            "total_gb": _gb(total),
            "used_gb": _gb(used),
            "available_gb": _gb(available),
            "usage_percent": _percent(total - available, total),
        },
        "disk": {
            "total_gb": _gb(disk.total) if disk else None,
            "used_gb": _gb(disk.used) if disk else None,
            "free_gb": _gb(disk.free) if disk else None,
            "usage_percent": _percent(disk.used, disk.total) if disk else None,
        },
        "gpu": gpu_section(reading, trainer),
    }


def resources_body(reading: Reading, trainer: Sequence[TrainerGpu] = ()) -> JsonObject:
    """OT-19; ``trainer`` as for ``info_body`` (its shares are of the trainer's device total)."""
    total, _used, available = memory_figures(reading)
    disk = disk_figures(reading)
    snapshot = _first(reading)
    if trainer:
        gpu_memory = [
            {
                "device": gpu.index,
                "allocated_percent": _share(gpu.allocated, gpu.total),
                "reserved_percent": _share(gpu.reserved, gpu.total),
            }
            for gpu in trainer
        ]
    else:
        gpu_memory = [
            {"device": gpu.index, "allocated_percent": None, "reserved_percent": None}
            for gpu in (snapshot.gpus if snapshot is not None else [])
        ]
    return {
        "cpu_percent": cpu_percent(reading),
        "memory_percent": _percent(total - available, total),
        "disk_percent": _percent(disk.used, disk.total) if disk else None,
        "gpu_memory": gpu_memory,
    }


def trainer_pod(pods: Sequence[JsonObject]) -> JsonObject | None:
    """The run's pod to report: a running one first, then the newest."""

    def key(pod: JsonObject) -> tuple[bool, str]:
        running = ((pod.get("status") or {}).get("phase")) == "Running"
        return running, str((pod.get("metadata") or {}).get("creationTimestamp") or "")

    return max(pods, key=key) if pods else None


def node_of(pod: JsonObject | None) -> str:
    return str(((pod or {}).get("spec") or {}).get("nodeName") or "")


def process_body(run: JsonObject | None, active: bool, pod: JsonObject | None) -> JsonObject:
    """OT-20: the session's trainer pod as its process, with the trainer's own figures while it is
    active (see the module docstring)."""
    pod_phase = str(((pod or {}).get("status") or {}).get("phase") or "")
    idle = "pending" if active else "idle"
    status = pod_phase.lower() if pod_phase else idle
    figures = trainer_process(run) if active else {}
    pid, threads, rss = figures.get("pid"), figures.get("num_threads"), figures.get("memory_rss_bytes")
    cpu, memory = figures.get("cpu_percent"), figures.get("memory_percent")
    return {
        "pid": int(pid) if pid is not None else None,
        "cpu_percent": round(cpu, 1) if cpu is not None else None,
        "memory_percent": round(memory, 1) if memory is not None else None,
        "memory_mb": round(rss / MIB, 1) if rss is not None else None,
        "num_threads": int(threads) if threads is not None else None,
        "status": status,
        "training_run": str(run["metadata"]["name"]) if run is not None else None,
        "pod_name": str(pod["metadata"]["name"]) if pod is not None else None,
        "pod_phase": pod_phase or None,
        "node": node_of(pod) or None,
        "start_time": ((pod or {}).get("status") or {}).get("startTime") or None,
    }
