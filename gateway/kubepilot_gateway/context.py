"""What every API profile works with: the settings and the cluster layer, built once per gateway.

A profile is a FastAPI app made by ``create_app(ctx)``; it reads from ``ctx.cache`` (never a LIST
per request), writes through ``ctx.store`` (read-your-writes for the caller), talks to the API
server directly through ``ctx.client`` only for what is not cached (pod logs, Secrets), and feeds
its WebSockets from ``ctx.bus``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubepilot_gateway.bus import EventBus
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.settings import Settings


@dataclass
class GatewayContext:
    settings: Settings
    client: KubeClient
    cache: ClusterCache
    store: CrStore
    bus: EventBus

    @classmethod
    def build(cls, settings: Settings, client: KubeClient) -> GatewayContext:
        """The cluster layer for ``settings.namespace``: a cache publishing to a bus, a store
        whose writes the cache sees at once. Start it with ``await ctx.cache.__aenter__()`` or
        ``async with ctx.cache``."""
        bus = EventBus(settings.bus.queueSize)
        cache = ClusterCache(client, namespace=settings.namespace, settings=settings.watch, bus=bus)
        store = CrStore(
            client,
            namespace=settings.namespace,
            observer=cache,
            conflict_retries=settings.writes.conflictRetries,
        )
        return cls(settings=settings, client=client, cache=cache, store=store, bus=bus)
