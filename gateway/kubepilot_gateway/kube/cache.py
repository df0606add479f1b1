"""The gateway's cache: one informer per watched type, all feeding one event bus.

Requests read from here (never a LIST per request); the CR store hands it every object it
writes (read-your-writes). Readiness is ``synced`` (every informer has listed once) and health is
``staleness_seconds`` (the worst informer's), both for probes and ``/metrics``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from kubepilot_gateway.bus import EventBus
from kubepilot_gateway.kube.client import KubeClient
from kubepilot_gateway.kube.informer import Informer
from kubepilot_gateway.kube.resources import WATCHED, ResourceType, resource_for
from kubepilot_gateway.settings import Watch

JsonObject = dict[str, Any]


class ClusterCache:
    """Informers for ``resources`` in ``namespace`` (all namespaces when None), publishing to ``bus``."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str | None,
        settings: Watch | None = None,
        bus: EventBus | None = None,
        resources: Iterable[ResourceType] = WATCHED,
    ) -> None:
        self.namespace = namespace
        self.bus = bus if bus is not None else EventBus()
        self.informers: dict[str, Informer] = {
            resource.kind: Informer(
                client, resource, namespace=namespace, settings=settings, on_event=self.bus.publish
            )
            for resource in resources
        }

    def informer(self, resource: ResourceType | str) -> Informer:
        kind = resource.kind if isinstance(resource, ResourceType) else resource_for(resource).kind
        return self.informers[kind]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        for informer in self.informers.values():
            informer.start()

    async def stop(self) -> None:
        await asyncio.gather(*(informer.stop() for informer in self.informers.values()))

    async def wait_synced(self) -> None:
        """Return once every informer has listed (bound it with ``asyncio.timeout``)."""
        await asyncio.gather(*(informer.synced.wait() for informer in self.informers.values()))

    async def __aenter__(self) -> ClusterCache:
        self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- health --------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return all(informer.synced.is_set() for informer in self.informers.values())

    @property
    def staleness_seconds(self) -> float:
        return max((informer.staleness_seconds for informer in self.informers.values()), default=0.0)

    def sizes(self) -> dict[str, int]:
        """Objects cached, by kind."""
        return {kind: len(informer) for kind, informer in self.informers.items()}

    # -- reads ---------------------------------------------------------------------------------

    def get(self, resource: ResourceType | str, name: str, namespace: str | None = None) -> JsonObject | None:
        return self.informer(resource).get(name, namespace)

    def list(
        self,
        resource: ResourceType | str,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[JsonObject]:
        return self.informer(resource).list(namespace, labels)

    # -- read-your-writes (the CR store's WriteObserver) ---------------------------------------

    def _covering(self, resource: ResourceType, namespace: str) -> Informer | None:
        informer = self.informers.get(resource.kind)
        if informer is None or informer.resource != resource:
            return None
        # An object outside the watched namespace would never be corrected by the watch.
        if self.namespace is not None and namespace != self.namespace:
            return None
        return informer

    def observe_write(self, resource: ResourceType, obj: JsonObject) -> None:
        namespace = str((obj.get("metadata") or {}).get("namespace") or "")
        informer = self._covering(resource, namespace)
        if informer is not None:
            informer.observe_write(obj)

    def observe_delete(
        self, resource: ResourceType, namespace: str, name: str, last_version: str = ""
    ) -> None:
        informer = self._covering(resource, namespace)
        if informer is not None:
            informer.observe_delete(namespace, name, last_version)
