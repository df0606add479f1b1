"""The gateway's Prometheus metrics, on a registry of its own (never the process-global one).

Request latency is labelled with the route template (``/api/services/{name}``), not the raw
path, so the series count stays bounded; the cache gauges are read from the cache when scraped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubepilot_gateway.kube.cache import ClusterCache

REQUEST_DURATION = "kubepilot_gateway_request_duration_seconds"
WEBSOCKET_CLIENTS = "kubepilot_gateway_websocket_clients"
CACHE_OBJECTS = "kubepilot_gateway_cache_objects"
CACHE_STALENESS = "kubepilot_gateway_cache_staleness_seconds"
CACHE_SYNCED = "kubepilot_gateway_cache_synced"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _CacheCollector(Collector):
    """Cache size, staleness and readiness, read at scrape time."""

    def __init__(self, cache: ClusterCache) -> None:
        self._cache = cache

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families(self._cache)

    @staticmethod
    def _families(cache: ClusterCache | None = None) -> list[Metric]:
        objects = GaugeMetricFamily(CACHE_OBJECTS, "Objects in the informer cache, by kind.", labels=["kind"])
        staleness = GaugeMetricFamily(
            CACHE_STALENESS,
            "Seconds since the stalest informer was last known current (-1 before its first LIST).",
        )
        synced = GaugeMetricFamily(CACHE_SYNCED, "1 once every informer has listed.")
        if cache is not None:
            for kind, count in sorted(cache.sizes().items()):
                objects.add_metric([kind], count)
            seconds = cache.staleness_seconds
            # Prometheus takes +Inf, but a dashboard graphs -1 (never listed) far more usefully.
            staleness.add_metric([], -1.0 if math.isinf(seconds) else seconds)
            synced.add_metric([], 1.0 if cache.synced else 0.0)
        return [objects, staleness, synced]


class GatewayMetrics:
    """Request latency, WebSocket clients and cache gauges for one gateway."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.request_duration = Histogram(
            REQUEST_DURATION,
            "HTTP request latency by profile, route template, method and status.",
            ["profile", "route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.websocket_clients = Gauge(
            WEBSOCKET_CLIENTS, "Open WebSocket connections by profile.", ["profile"], registry=self.registry
        )
        self._cache: ClusterCache | None = None

    def watch_cache(self, cache: ClusterCache) -> None:
        """Expose ``cache``'s gauges (once per gateway: the registry holds one cache)."""
        if self._cache is cache:
            return
        if self._cache is not None:
            raise RuntimeError("these metrics already report another cache")
        self.registry.register(_CacheCollector(cache))
        self._cache = cache

    def observe_request(self, profile: str, route: str, method: str, status: int, seconds: float) -> None:
        self.request_duration.labels(profile, route, method, str(status)).observe(seconds)

    @contextmanager
    def websocket_client(self, profile: str) -> Iterator[None]:
        """Count one open WebSocket of ``profile`` while the block runs."""
        gauge = self.websocket_clients.labels(profile)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
