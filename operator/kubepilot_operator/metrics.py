"""Prometheus metrics of the operator: every series the chart's Grafana dashboard reads.

One registry per operator (not the global one), so tests can run several operators in a process.
"""

from __future__ import annotations

import contextlib
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

UNSCHEDULED = "unscheduled"
"""The queue-depth label of GenerationJobs not yet on a service (Prometheus drops empty labels)."""
PHASES_BY_KIND = {
    "ModelPull": ("Pending", "Downloading", "Paused", "Completed", "Failed", "Cancelled", "Removing"),
    "TrainingRun": (
        "Pending",
        "Starting",
        "Running",
        "Stopping",
        "Stopped",
        "Suspended",
        "Succeeded",
        "Failed",
    ),
    "GenerationJob": ("Pending", "Processing", "Completed", "Failed", "Cancelled"),
    "ServiceInstance": ("Stopped", "Starting", "Running", "Stopping", "Error"),
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.objects = Gauge("kubepilot_objects", "Objects by kind and phase.", ["kind", "phase"], registry=r)
        self.reconciles = Counter(
            "kubepilot_reconcile", "Reconcile passes by result.", ["kind", "result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "kubepilot_reconcile_duration_seconds", "Time of one reconcile pass.", ["kind"], registry=r
        )
        self.child_failures = Counter(
            "kubepilot_child_failures", "Pod and Job failures by reason.", ["kind", "reason"], registry=r
        )
        self.download_bytes = Counter(
            "kubepilot_download_bytes", "Bytes downloaded by ModelPulls.", ["namespace"], registry=r
        )
        self.training_step = Gauge(
            "kubepilot_training_step", "Optimizer step of a TrainingRun.", ["namespace", "name"], registry=r
        )
        self.training_loss = Gauge(
            "kubepilot_training_loss", "Recent loss of a TrainingRun.", ["namespace", "name"], registry=r
        )
        self.generation_seconds = Histogram(
            "kubepilot_generation_duration_seconds",
            "GenerationJob time from creation to a final phase.",
            ["type"],
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.queue_depth = Gauge(
            "kubepilot_generation_queue_depth",
            "GenerationJobs waiting, by service (namespace/name; 'unscheduled' for those not yet on one).",
            ["service"],
            registry=r,
        )
        self.intake_reports = Counter(
            "kubepilot_intake_reports", "Progress reports received by result.", ["kind", "result"], registry=r
        )
        for kind, phases in PHASES_BY_KIND.items():
            for phase in phases:
                self.objects.labels(kind, phase).set(0)
        self.queue_depth.labels(UNSCHEDULED).set(0)
        self._download_seen: dict[tuple[str, str], int] = {}

    def set_phase_counts(self, kind: str, phases: list[str]) -> None:
        counts = Tally(phases)
        for phase in PHASES_BY_KIND.get(kind, ()):
            self.objects.labels(kind, phase).set(counts.get(phase, 0))

    def set_queue_depths(self, depths: dict[str, int]) -> None:
        """Jobs waiting per service (``namespace/name``; ``""`` for those not scheduled yet)."""
        self.queue_depth.clear()
        self.queue_depth.labels(UNSCHEDULED).set(0)
        for service, depth in depths.items():
            self.queue_depth.labels(service).set(depth)

    def downloaded(self, namespace: str, name: str, bytes_done: int) -> None:
        """Count the growth of a pull's bytesDone (a restarted pull's reset is not negative)."""
        key = (namespace, name)
        previous = self._download_seen.get(key, 0)
        if bytes_done > previous:
            self.download_bytes.labels(namespace).inc(bytes_done - previous)
        self._download_seen[key] = bytes_done

    def forget_training(self, namespace: str, name: str) -> None:
        for gauge in (self.training_step, self.training_loss):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
