"""Reads the node: GPUs through NVML (``pynvml`` from nvidia-ml-py), the host through psutil.

The NVML module is injectable so the GPU path can be exercised without a GPU. Initialisation that
fails (a CPU node: ``NVMLError_LibraryNotFound``) is remembered and retried now and then, since the
driver can appear after the agent starts; reading it is never an error of the agent. A configured
disk path that cannot be read (not mounted, a typo) is kept in the snapshot with its error and
logged once each time it turns unreadable, so it shows up on dashboards instead of vanishing.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import psutil

from kubepilot_workers.nodeagent.snapshot import (
    CpuSnapshot,
    DiskSnapshot,
    GpuProcess,
    GpuSnapshot,
    MemorySnapshot,
    NodeSnapshot,
    NvmlStatus,
)

log = logging.getLogger(__name__)

NVML_RETRY_SECONDS = 60.0
SNAPSHOT_TTL_SECONDS = 1.0
MIN_CPU_WINDOW_SECONDS = 0.1
"""Shortest span a CPU reading covers: the kernel's CPU time counters move in 10 ms ticks."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlReader:
    """GPU readings through an NVML binding module (``pynvml`` or a stand-in with its interface)."""

    def __init__(self, nvml: Any | None = None, retry_seconds: float = NVML_RETRY_SECONDS) -> None:
        self._retry_seconds = retry_seconds
        self._initialised = False
        self._last_attempt = float("-inf")
        self._error = ""
        self._driver = ""
        self._nvml: Any = None  # the binding module; None when nvidia-ml-py is missing
        if nvml is None:
            try:
                import pynvml
            except ImportError:
                self._error = "nvidia-ml-py (pynvml) is not installed"
                return
            nvml = pynvml
        self._nvml = nvml

    def _error_types(self) -> tuple[type[BaseException], ...]:
        error = getattr(self._nvml, "NVMLError", None)
        return (error,) if isinstance(error, type) and issubclass(error, BaseException) else (OSError,)

    def _ensure_initialised(self) -> bool:
        nvml = self._nvml
        if nvml is None:
            return False
        if self._initialised:
            return True
        now = time.monotonic()
        if now - self._last_attempt < self._retry_seconds:
            return False
        self._last_attempt = now
        try:
            nvml.nvmlInit()
        except self._error_types() as error:
            self._error = _text(error) or type(error).__name__
            log.info("NVML not available: %s", self._error)
            return False
        self._initialised = True
        self._error = ""
        try:
            self._driver = _text(nvml.nvmlSystemGetDriverVersion())
        except self._error_types():
            self._driver = ""
        log.info("NVML initialised (driver %s)", self._driver or "unknown")
        return True

    def _try(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except self._error_types():
            return None

    def read(self) -> tuple[NvmlStatus, list[GpuSnapshot]]:
        if not self._ensure_initialised():
            return NvmlStatus(available=False, error=self._error), []
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except self._error_types() as error:
            # The driver went away (or the GPU fell off the bus): start over later.
            self._initialised = False
            self._error = _text(error) or type(error).__name__
            return NvmlStatus(available=False, error=self._error), []
        gpus = [self._read_device(index) for index in range(count)]
        return NvmlStatus(available=True, driverVersion=self._driver), gpus

    def _read_device(self, index: int) -> GpuSnapshot:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        utilization = self._try(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._try(nvml.nvmlDeviceGetMemoryInfo, handle)
        temperature = self._try(
            nvml.nvmlDeviceGetTemperature, handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        )
        power = self._try(nvml.nvmlDeviceGetPowerUsage, handle)
        limit = self._try(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        processes = self._try(nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
        return GpuSnapshot(
            index=index,
            uuid=_text(self._try(nvml.nvmlDeviceGetUUID, handle) or ""),
            name=_text(self._try(nvml.nvmlDeviceGetName, handle) or ""),
            utilizationPercent=float(utilization.gpu) if utilization is not None else None,
            memoryUsedBytes=int(memory.used) if memory is not None else None,
            memoryTotalBytes=int(memory.total) if memory is not None else None,
            temperatureCelsius=float(temperature) if temperature is not None else None,
            powerWatts=power / 1000.0 if power is not None else None,
            powerLimitWatts=limit / 1000.0 if limit is not None else None,
            processes=[self._process(p) for p in processes],
        )

    @staticmethod
    def _process(info: Any) -> GpuProcess:
        pid = int(info.pid)
        try:
            name = psutil.Process(pid).name()
        except (psutil.Error, OSError):
            name = ""  # another pod's process: not visible without hostPID
        used = getattr(info, "usedGpuMemory", None)
        return GpuProcess(pid=pid, name=name, usedMemoryBytes=int(used) if used is not None else None)

    def close(self) -> None:
        if self._initialised and self._nvml is not None:
            self._try(self._nvml.nvmlShutdown)
            self._initialised = False


def _total_time(times: Any) -> float:
    # As psutil counts: guest time is already inside user and nice on Linux.
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _idle_time(times: Any) -> float:
    # iowait is a CPU doing nothing too (Linux does not count it in idle).
    return float(times.idle) + getattr(times, "iowait", 0.0)


class CpuSampler:
    """Host CPU utilisation between this sampler's own readings of the CPU times.

    ``psutil.cpu_percent(interval=None)`` keeps its previous reading inside psutil, shared with every
    other caller in the process, and answers 0.0 when no tick has passed since it: the first scrape
    right after start-up read 0 % on a busy node. This sampler takes its first reading when it is
    created and, when the previous reading is younger than ``min_window``, waits out the rest of the
    window before reading again, so every value covers real time.
    """

    def __init__(self, min_window: float = MIN_CPU_WINDOW_SECONDS) -> None:
        self._min_window = min_window
        self._last = psutil.cpu_times()
        self._last_at = time.monotonic()
        self._percent = 0.0

    def percent(self) -> float:
        """Busy share of all CPUs since the previous call (or creation), 0-100."""
        wait = self._min_window - (time.monotonic() - self._last_at)
        if wait > 0:
            time.sleep(wait)
        current = psutil.cpu_times()
        total = _total_time(current) - _total_time(self._last)
        if total <= 0:
            # The counters have not moved (a stalled clock): keep the last value and the old reading.
            return self._percent
        busy = total - (_idle_time(current) - _idle_time(self._last))
        self._percent = round(min(100.0, max(0.0, 100.0 * busy / total)), 1)
        self._last, self._last_at = current, time.monotonic()
        return self._percent


class NodeCollector:
    """Takes node snapshots, at most one per ``ttl`` seconds (scrapes and snapshot reads share it)."""

    def __init__(
        self, disk_paths: list[str], nvml: NvmlReader | None = None, ttl: float = SNAPSHOT_TTL_SECONDS
    ) -> None:
        self.disk_paths = disk_paths
        self.nvml = nvml or NvmlReader()
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: NodeSnapshot | None = None
        self._cached_at = float("-inf")
        self._hostname = socket.gethostname()
        self._cpu = CpuSampler()
        self._unreadable: set[str] = set()
        for path in disk_paths:
            self._disk(path)  # at start-up, so a missing path is in the log before the first scrape

    def snapshot(self) -> NodeSnapshot:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached_at >= self._ttl:
                self._cached = self._take()
                self._cached_at = now
            return self._cached

    def _take(self) -> NodeSnapshot:
        status, gpus = self.nvml.read()
        memory = psutil.virtual_memory()
        return NodeSnapshot(
            time=datetime.now(UTC),
            hostname=self._hostname,
            nvml=status,
            gpus=gpus,
            cpu=CpuSnapshot(percent=self._cpu.percent(), count=psutil.cpu_count() or 0),
            memory=MemorySnapshot(
                usedBytes=int(memory.used), totalBytes=int(memory.total), availableBytes=int(memory.available)
            ),
            disk=[self._disk(path) for path in self.disk_paths],
        )

    def _disk(self, path: str) -> DiskSnapshot:
        try:
            usage = psutil.disk_usage(path)
        except OSError as error:
            reason = error.strerror or str(error)
            if path not in self._unreadable:
                # Once per change, not per scrape: Prometheus scrapes every few seconds.
                self._unreadable.add(path)
                log.warning("disk path %s cannot be read: %s", path, reason)
            return DiskSnapshot(path=path, error=reason)
        if path in self._unreadable:
            self._unreadable.discard(path)
            log.info("disk path %s can be read again", path)
        return DiskSnapshot(path=path, usedBytes=usage.used, totalBytes=usage.total, freeBytes=usage.free)

    def close(self) -> None:
        self.nvml.close()
