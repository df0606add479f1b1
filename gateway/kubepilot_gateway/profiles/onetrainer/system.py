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
  ``reserved_percent``) are PyTorch's, readable only inside the trainer process: no agent reports
  them, so they are ``null`` (the seed's keys stay; nothing is invented from NVML's device-wide use).
- **The process** (OT-20) is the session's trainer pod: a pod has no pid meaningful outside it and
  no per-process CPU, memory or thread figures without metrics-server or an in-pod agent, so those
  are ``null``; ``status`` is the pod's phase in lower case (``running`` as the seed shows while it
  trains), ``pending`` for an active session without a pod yet, ``idle`` without a session. Added
  keys say what is known: ``training_run``, ``pod_name``, ``pod_phase``, ``node``, ``start_time``
  (the pod's ``status.startTime`` as Kubernetes writes it).
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubepilot_gateway.profiles.controlpilot.telemetry import (
    AgentSnapshot,
    DiskUsage,
    Reading,
    cpu_count,
    cpu_percent,
)

JsonObject = dict[str, Any]
GIB = 1024**3


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


def info_body(reading: Reading, os_info: OsInfo) -> JsonObject:
    """OT-18."""
    total, used, available = memory_figures(reading)
    disk = disk_figures(reading)
    snapshot = _first(reading)
    gpus = snapshot.gpus if snapshot is not None else []
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
        "gpu": {
            "available": bool(gpus),
            "count": len(gpus),
            "devices": [
                {
                    "id": gpu.index,
                    "name": gpu.name,
                    "memory_total_gb": _gb(gpu.memoryTotalBytes),
                    "memory_allocated_gb": None,
                    "memory_reserved_gb": None,
                }
                for gpu in gpus
            ],
        },
    }


def resources_body(reading: Reading) -> JsonObject:
    """OT-19."""
    total, _used, available = memory_figures(reading)
    disk = disk_figures(reading)
    snapshot = _first(reading)
    return {
        "cpu_percent": cpu_percent(reading),
        "memory_percent": _percent(total - available, total),
        "disk_percent": _percent(disk.used, disk.total) if disk else None,
        "gpu_memory": [
            {"device": gpu.index, "allocated_percent": None, "reserved_percent": None}
            for gpu in (snapshot.gpus if snapshot is not None else [])
        ],
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
    """OT-20: the session's trainer pod as its process (see the module docstring)."""
    pod_phase = str(((pod or {}).get("status") or {}).get("phase") or "")
    idle = "pending" if active else "idle"
    status = pod_phase.lower() if pod_phase else idle
    return {
        "pid": None,
        "cpu_percent": None,
        "memory_percent": None,
        "memory_mb": None,
        "num_threads": None,
        "status": status,
        "training_run": str(run["metadata"]["name"]) if run is not None else None,
        "pod_name": str(pod["metadata"]["name"]) if pod is not None else None,
        "pod_phase": pod_phase or None,
        "node": node_of(pod) or None,
        "start_time": ((pod or {}).get("status") or {}).get("startTime") or None,
    }
