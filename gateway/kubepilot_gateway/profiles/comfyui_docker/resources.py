"""The host figures the dashboard shows (``/api/system/status`` and the WebSocket's ``system_status``).

They come from the node agents' snapshots, read with ControlPilot's client: the node's CPU and
memory use and the mean utilisation of its GPUs (several agents: every GPU they report). Without an
answering agent, CPU and memory are the gateway host's own and the GPU figure is 0 — no agent, no
GPU telemetry — as on a dashboard box without a GPU. Disk figures are the models volume's.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil

from kubepilot_gateway.profiles.controlpilot.telemetry import AgentSnapshot, NodeAgents


@dataclass(frozen=True)
class Usage:
    """Whole percents, and the models volume's bytes."""

    cpu_percent: int
    memory_percent: int
    gpu_percent: int
    disk_used: int
    disk_total: int

    @property
    def disk_percent(self) -> int:
        return round(self.disk_used * 100 / self.disk_total) if self.disk_total else 0


def node_figures(snapshots: list[AgentSnapshot]) -> tuple[float | None, float | None, float | None]:
    """CPU, memory and GPU percents from the agents (None where none reports one); pure."""
    cpu = next((s.cpu.percent for s in snapshots if s.cpu is not None and s.cpu.percent is not None), None)
    memories = [s.memory for s in snapshots if s.memory is not None and s.memory.totalBytes]
    memory = memories[0].usedBytes * 100 / memories[0].totalBytes if memories else None
    gpus = [gpu.utilizationPercent for s in snapshots for gpu in s.gpus if gpu.utilizationPercent is not None]
    return cpu, memory, (sum(gpus) / len(gpus) if gpus else None)


async def read_usage(agents: NodeAgents, models_root: Path) -> Usage:
    """The agents' figures where they answer, the gateway host's otherwise."""

    def local() -> tuple[float, float, int, int]:
        try:
            disk = shutil.disk_usage(models_root)
            used, total = disk.used, disk.total
        except OSError:
            used, total = 0, 0
        return psutil.cpu_percent(interval=None), psutil.virtual_memory().percent, used, total

    snapshots, (local_cpu, local_memory, used, total) = await asyncio.gather(
        agents.snapshots(), asyncio.to_thread(local)
    )
    cpu, memory, gpu = node_figures(snapshots)
    return Usage(
        cpu_percent=round(local_cpu if cpu is None else cpu),
        memory_percent=round(local_memory if memory is None else memory),
        gpu_percent=round(gpu or 0),
        disk_used=used,
        disk_total=total,
    )
