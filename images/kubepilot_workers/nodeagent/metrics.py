"""Prometheus metrics of the node, computed from a snapshot at every scrape.

Names are ``kubepilot_node_<what>_<unit>``. GPU series carry ``gpu`` (NVML index), ``uuid`` and
``model`` labels; a value the device does not support is left out, not reported as zero. Every
configured disk path has a ``disk_path_available`` series (0 when it cannot be read), so a path that
is not mounted is visible and can be alerted on, though it has no usage figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubepilot_workers.nodeagent.collector import NodeCollector
from kubepilot_workers.nodeagent.snapshot import GpuSnapshot, NodeSnapshot

PREFIX = "kubepilot_node_"
GPU_LABELS = ["gpu", "uuid", "model"]

GPU_GAUGES: list[tuple[str, str, str]] = [
    ("gpu_utilization_percent", "utilizationPercent", "GPU busy time over the last sample period, 0-100."),
    ("gpu_memory_used_bytes", "memoryUsedBytes", "GPU memory in use."),
    ("gpu_memory_total_bytes", "memoryTotalBytes", "GPU memory installed."),
    ("gpu_temperature_celsius", "temperatureCelsius", "GPU core temperature."),
    ("gpu_power_watts", "powerWatts", "GPU power draw."),
    ("gpu_power_limit_watts", "powerLimitWatts", "GPU enforced power limit."),
]


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=labels)


def _gpu_labels(gpu: GpuSnapshot) -> list[str]:
    return [str(gpu.index), gpu.uuid, gpu.name]


def metric_families(snapshot: NodeSnapshot) -> Iterator[Metric]:
    """All metric families for one snapshot."""
    available = _gauge(
        "nvml_available", "1 when NVML answered on this node, 0 otherwise (CPU node or no driver)."
    )
    available.add_metric([], 1.0 if snapshot.nvml.available else 0.0)
    yield available
    count = _gauge("gpu_count", "GPUs NVML lists on this node.")
    count.add_metric([], float(len(snapshot.gpus)))
    yield count
    for name, attribute, documentation in GPU_GAUGES:
        family = _gauge(name, documentation, GPU_LABELS)
        for gpu in snapshot.gpus:
            value = getattr(gpu, attribute)
            if value is not None:
                family.add_metric(_gpu_labels(gpu), float(value))
        yield family
    processes = _gauge(
        "gpu_process_memory_used_bytes", "GPU memory held by one process.", [*GPU_LABELS, "pid", "process"]
    )
    for gpu in snapshot.gpus:
        for process in gpu.processes:
            if process.usedMemoryBytes is not None:
                labels = [*_gpu_labels(gpu), str(process.pid), process.name]
                processes.add_metric(labels, float(process.usedMemoryBytes))
    yield processes

    cpu = _gauge("cpu_utilization_percent", "Host CPU utilisation since the previous scrape, 0-100.")
    cpu.add_metric([], snapshot.cpu.percent)
    yield cpu
    cpus = _gauge("cpu_count", "Logical CPUs of the host.")
    cpus.add_metric([], float(snapshot.cpu.count))
    yield cpus
    for name, value, documentation in (
        ("memory_used_bytes", snapshot.memory.usedBytes, "Host memory in use."),
        ("memory_total_bytes", snapshot.memory.totalBytes, "Host memory installed."),
        ("memory_available_bytes", snapshot.memory.availableBytes, "Host memory available to new work."),
    ):
        family = _gauge(name, documentation)
        family.add_metric([], float(value))
        yield family
    disk_available = _gauge(
        "disk_path_available", "1 when the configured disk path can be read, 0 otherwise.", ["path"]
    )
    for disk in snapshot.disk:
        disk_available.add_metric([disk.path], 0.0 if disk.error else 1.0)
    yield disk_available
    for name, attribute, documentation in (
        ("disk_used_bytes", "usedBytes", "Bytes used on the filesystem holding the path."),
        ("disk_total_bytes", "totalBytes", "Size of the filesystem holding the path."),
        ("disk_free_bytes", "freeBytes", "Bytes free on the filesystem holding the path."),
    ):
        family = _gauge(name, documentation, ["path"])
        for disk in snapshot.disk:
            value = getattr(disk, attribute)
            if value is not None:
                family.add_metric([disk.path], float(value))
        yield family


class NodeMetricsCollector(Collector):
    """A prometheus-client collector that reads the node when scraped."""

    def __init__(self, collector: NodeCollector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        return list(metric_families(self._collector.snapshot()))

    def describe(self) -> Iterable[Metric]:
        # Registration must not read NVML; the family names are fixed, the samples come at scrape time.
        return []
