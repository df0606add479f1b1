"""ControlPilot's host telemetry (CP-41) from the node agent, with the gateway's own readings as fallback.

The node agent (a DaemonSet, ``kubepilot node-agent``) answers ``GET /v1/snapshot`` with its node's
GPUs (NVML), CPU, memory and configured disks. This module fetches that snapshot from each
configured agent and maps it onto ControlPilot's ``/api/telemetry`` shape. What the agent does not
report (the load average and uptime) and everything when no agent answers is read by the gateway
where it runs, from the standard library alone (the gateway image carries no psutil): the load
average and uptime of a Linux host are node-wide even inside a container. The three storage volumes
are measured by the gateway itself (a ``statvfs`` each), since it mounts them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
DISK_ALERT_PERCENT = 80
"""ControlPilot flags a disk at or above this use."""
SNAPSHOT_PATH = "/v1/snapshot"


class _Lenient(BaseModel):
    # A newer agent may add fields: read what we know, ignore the rest.
    model_config = ConfigDict(extra="ignore")


class AgentGpu(_Lenient):
    index: int
    name: str = ""
    utilizationPercent: float | None = None
    memoryUsedBytes: int | None = None
    memoryTotalBytes: int | None = None


class AgentCpu(_Lenient):
    percent: float | None = None
    count: int | None = None


class AgentMemory(_Lenient):
    usedBytes: int
    totalBytes: int
    availableBytes: int


class AgentDisk(_Lenient):
    path: str
    usedBytes: int | None = None
    totalBytes: int | None = None
    freeBytes: int | None = None


class AgentSnapshot(_Lenient):
    """The part of the node agent's ``/v1/snapshot`` that telemetry reads.

    ``loadAvg`` and ``uptimeSeconds`` are not sent by the agent today; they are read when a later
    agent sends them, so its node's figures replace the gateway's own.
    """

    hostname: str = ""
    gpus: list[AgentGpu] = []
    cpu: AgentCpu | None = None
    memory: AgentMemory | None = None
    disk: list[AgentDisk] = []
    loadAvg: list[float] | None = None
    uptimeSeconds: float | None = None


@dataclass(frozen=True)
class LocalHost:
    """What the gateway reads about the host it runs on."""

    host: str
    uptime_seconds: float
    load_avg: tuple[float, float, float]
    cpu_count: int
    mem_total: int
    mem_used: int
    mem_free: int


@dataclass(frozen=True)
class DiskUsage:
    mount: str
    total: int
    used: int
    free: int


@dataclass
class Reading:
    """One look at the node: the agents' snapshots (those that answered) and the local figures."""

    local: LocalHost
    snapshots: list[AgentSnapshot] = field(default_factory=list)
    local_disks: list[DiskUsage] = field(default_factory=list)


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty where there is none)."""
    values: dict[str, int] = {}
    try:
        text = Path("/proc/meminfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return values


def _uptime() -> float:
    try:
        return float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def read_local_host() -> LocalHost:
    """The host's name, uptime, load, CPUs and memory as the gateway sees them (blocking: reads /proc)."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    memory = _meminfo()
    total = memory.get("MemTotal", 0)
    available = memory.get("MemAvailable", memory.get("MemFree", 0))
    return LocalHost(
        host=socket.gethostname(),
        uptime_seconds=_uptime(),
        load_avg=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
        cpu_count=os.cpu_count() or 0,
        mem_total=total,
        mem_used=max(0, total - available),
        mem_free=available,
    )


def read_disk(mount: str) -> DiskUsage | None:
    """Usage of the filesystem holding ``mount``; None when it cannot be read (not mounted)."""
    if not mount:
        return None
    try:
        usage = shutil.disk_usage(mount)
    except OSError:
        return None
    return DiskUsage(mount=mount, total=int(usage.total), used=int(usage.used), free=int(usage.free))


def disk_item(disk: DiskUsage) -> JsonObject:
    """ControlPilot's disk row: bytes, a whole percent, and the alert flag."""
    pct = round(100 * disk.used / disk.total) if disk.total > 0 else 0
    return {
        "mount": disk.mount,
        "total": disk.total,
        "used": disk.used,
        "free": disk.free,
        "pct": pct,
        "alert": pct >= DISK_ALERT_PERCENT,
    }


def _gpu_items(snapshots: Sequence[AgentSnapshot]) -> list[JsonObject]:
    """Every agent's GPUs, numbered across the agents in order (one node: the NVML indexes)."""
    items: list[JsonObject] = []
    for snapshot in snapshots:
        for gpu in snapshot.gpus:
            util = gpu.utilizationPercent
            items.append(
                {
                    "index": gpu.index if len(snapshots) == 1 else len(items),
                    "name": gpu.name,
                    "util": round(util) if util is not None else None,
                    "mem_used": gpu.memoryUsedBytes,
                    "mem_total": gpu.memoryTotalBytes,
                }
            )
    return items


def gpu_history_items(snapshots: Sequence[AgentSnapshot]) -> list[JsonObject]:
    """The GPUs of a history point: the telemetry row plus its memory share (percent, one decimal)."""
    items = _gpu_items(snapshots)
    for item in items:
        used, total = item["mem_used"], item["mem_total"]
        item["mem_pct"] = round(100 * used / total, 1) if used is not None and total else None
    return items


def _disks(reading: Reading) -> list[JsonObject]:
    """The first agent's readable disks, then the gateway's own (root when no agent, the volumes)."""
    disks: list[DiskUsage] = []
    if reading.snapshots:
        for agent_disk in reading.snapshots[0].disk:
            total, used, free = agent_disk.totalBytes, agent_disk.usedBytes, agent_disk.freeBytes
            if total is not None and used is not None and free is not None:
                disks.append(DiskUsage(agent_disk.path, total, used, free))
    seen = {disk.mount for disk in disks}
    for disk in reading.local_disks:
        if disk.mount == "/" and reading.snapshots:
            continue  # the node's root is the agent's to report; the gateway's is its container's
        if disk.mount not in seen:
            seen.add(disk.mount)
            disks.append(disk)
    return [disk_item(disk) for disk in disks]


def cpu_percent(reading: Reading) -> float:
    """Host CPU use: the agent's measured figure, else the 1-minute load per CPU (capped at 100)."""
    for snapshot in reading.snapshots:
        if snapshot.cpu is not None and snapshot.cpu.percent is not None:
            return round(snapshot.cpu.percent, 1)
    count = cpu_count(reading)
    return round(min(100.0, 100 * load_avg(reading)[0] / count), 1) if count else 0.0


def cpu_count(reading: Reading) -> int:
    first = reading.snapshots[0] if reading.snapshots else None
    if first is not None and first.cpu is not None and first.cpu.count:
        return first.cpu.count
    return reading.local.cpu_count


def load_avg(reading: Reading) -> list[float]:
    first = reading.snapshots[0] if reading.snapshots else None
    if first is not None and first.loadAvg is not None and len(first.loadAvg) == 3:
        return [round(value, 2) for value in first.loadAvg]
    return list(reading.local.load_avg)


def telemetry_body(reading: Reading, workspace_data_used_bytes: int | None) -> JsonObject:
    """CP-41's answer: the first agent's node figures, every agent's GPUs, the disks and volumes."""
    first = reading.snapshots[0] if reading.snapshots else None
    local = reading.local
    memory = first.memory if first is not None else None
    uptime = first.uptimeSeconds if first is not None and first.uptimeSeconds is not None else None
    return {
        "host": (first.hostname if first is not None and first.hostname else local.host),
        "uptime_seconds": uptime if uptime is not None else local.uptime_seconds,
        "load_avg": load_avg(reading),
        "cpu_count": cpu_count(reading),
        "mem_total": memory.totalBytes if memory is not None else local.mem_total,
        "mem_used": memory.usedBytes if memory is not None else local.mem_used,
        "mem_free": memory.availableBytes if memory is not None else local.mem_free,
        "disks": _disks(reading),
        "gpus": _gpu_items(reading.snapshots),
        "workspace_data_used_bytes": workspace_data_used_bytes,
        # ControlPilot's model has this field and never fills it ("kept for future").
        "docs": None,
    }


class NodeAgents:
    """Reads the snapshots of the configured node agents; one that does not answer is left out."""

    def __init__(self, urls: Sequence[str], timeout_seconds: float) -> None:
        self.urls = [url.rstrip("/") for url in urls if url.strip()]
        self.timeout = timeout_seconds
        self._failing: set[str] = set()

    async def _one(self, client: httpx.AsyncClient, url: str) -> AgentSnapshot | None:
        try:
            response = await client.get(url + SNAPSHOT_PATH)
            response.raise_for_status()
            snapshot = AgentSnapshot.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as error:
            if url not in self._failing:
                # Once per outage, not per request: the UI polls every few seconds.
                self._failing.add(url)
                log.warning("node agent %s: no snapshot (%s); using the gateway's own figures", url, error)
            return None
        if url in self._failing:
            self._failing.discard(url)
            log.info("node agent %s answers again", url)
        return snapshot

    async def snapshots(self) -> list[AgentSnapshot]:
        if not self.urls:
            return []
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            answers = await asyncio.gather(*(self._one(client, url) for url in self.urls))
        return [snapshot for snapshot in answers if snapshot is not None]


async def take_reading(agents: NodeAgents, disk_paths: Sequence[str]) -> Reading:
    """The agents' snapshots and the gateway's own figures, read at the same time."""

    def local() -> tuple[LocalHost, list[DiskUsage]]:
        disks = [read_disk(path) for path in disk_paths]
        return read_local_host(), [disk for disk in disks if disk is not None]

    snapshots, (host, disks) = await asyncio.gather(agents.snapshots(), asyncio.to_thread(local))
    return Reading(local=host, snapshots=snapshots, local_disks=disks)
