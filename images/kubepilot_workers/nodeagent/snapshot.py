"""The node agent's JSON snapshot (``GET /v1/snapshot``), read by the gateway's telemetry.

Values NVML does not support on a device (utilisation on a MIG slice, power on some boards) are
``null``, never a made-up zero. A node without NVML is a normal state: ``nvml.available`` is false,
``nvml.error`` says why, and ``gpus`` is empty.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NvmlStatus(_Model):
    """Whether NVML could be used on this node."""

    available: bool = Field(description="NVML initialised and answered.")
    error: str = Field(default="", description="Why it is not available (empty when it is).")
    driverVersion: str = Field(default="", description="NVIDIA driver version.")


class GpuProcess(_Model):
    """A process holding memory on a GPU."""

    pid: int
    name: str = Field(default="", description="Process name; empty when it cannot be seen from this pod.")
    usedMemoryBytes: int | None = None


class GpuSnapshot(_Model):
    """One GPU (or MIG device NVML lists as a device)."""

    index: int
    uuid: str = ""
    name: str = ""
    utilizationPercent: float | None = None
    memoryUsedBytes: int | None = None
    memoryTotalBytes: int | None = None
    temperatureCelsius: float | None = None
    powerWatts: float | None = None
    powerLimitWatts: float | None = None
    processes: list[GpuProcess] = Field(default_factory=list)


class CpuSnapshot(_Model):
    percent: float = Field(description="Host CPU utilisation since the previous snapshot, 0-100.")
    count: int = Field(description="Logical CPUs.")


class MemorySnapshot(_Model):
    usedBytes: int
    totalBytes: int
    availableBytes: int


class DiskSnapshot(_Model):
    """Usage of the filesystem holding one configured path."""

    path: str
    usedBytes: int | None = None
    totalBytes: int | None = None
    freeBytes: int | None = None
    error: str = Field(default="", description="Why the path could not be read (empty when it could).")


class NodeSnapshot(_Model):
    """Everything the node agent knows at one moment."""

    time: datetime
    hostname: str
    nvml: NvmlStatus
    gpus: list[GpuSnapshot] = Field(default_factory=list)
    cpu: CpuSnapshot
    memory: MemorySnapshot
    disk: list[DiskSnapshot] = Field(default_factory=list)
