"""The event bus between the informers and the profiles' WebSocket protocols.

Informers publish one typed ``ResourceEvent`` per change they apply to the cache; every
subscriber has its own bounded queue, so a slow WebSocket client can never hold up the watch or
the other clients. When a subscriber's queue is full its oldest event is dropped, and the next
thing it reads is a ``Lagged`` marker saying how many it lost: the protocol then sends a fresh
snapshot from the cache instead of deltas it no longer has.

Everything runs on one event loop: ``publish`` is a plain call that never awaits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class ResourceEvent:
    """One change to a cached object. ``old`` is the cached version before it, when there was one."""

    kind: str
    namespace: str
    name: str
    type: EventType
    object: JsonObject
    old: JsonObject | None = None

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


@dataclass(frozen=True)
class Lagged:
    """This subscriber fell behind and lost ``dropped`` events (the oldest it had not read)."""

    dropped: int


class Subscription:
    """One subscriber's queue; iterate it (``async for``) and close it when done.

    Use it as an async context manager, or call ``close()``: either ends the iteration and
    unsubscribes from the bus.
    """

    def __init__(
        self, bus: EventBus, queue_size: int, kinds: frozenset[str] | None, namespace: str | None
    ) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[ResourceEvent | None] = asyncio.Queue(maxsize=queue_size)
        self._kinds = kinds
        self._namespace = namespace
        self._lag = 0
        self.closed = False
        self.dropped = 0
        """Events lost to a full queue since the subscription began."""

    def wants(self, event: ResourceEvent) -> bool:
        return (self._kinds is None or event.kind in self._kinds) and (
            self._namespace is None or event.namespace == self._namespace
        )

    def offer(self, event: ResourceEvent) -> None:
        """Queue ``event``, dropping the oldest one when full (never blocks)."""
        if self.closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            if not self._lag:
                log.debug(
                    "bus subscriber lagging: dropping its oldest events (queue of %d)", self._queue.maxsize
                )
            self._lag += 1
            self.dropped += 1
        self._queue.put_nowait(event)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ResourceEvent | Lagged:
        if self.closed:
            raise StopAsyncIteration
        if self._lag:
            # The dropped events were the oldest, so the gap sits before everything still queued.
            lost, self._lag = self._lag, 0
            return Lagged(lost)
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus.unsubscribe(self)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)  # wakes a reader waiting in __anext__

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()


class EventBus:
    """Fan-out of ``ResourceEvent`` to subscribers, each with a bounded queue."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subscribers: list[Subscription] = []
        self.published = 0

    def subscribe(
        self,
        *,
        kinds: Iterable[str] | None = None,
        namespace: str | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """A new subscriber to events of ``kinds`` (all when None) in ``namespace`` (all when None)."""
        size = queue_size or self.queue_size
        subscription = Subscription(self, size, frozenset(kinds) if kinds is not None else None, namespace)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)
        if not subscription.closed:
            subscription.close()

    def publish(self, event: ResourceEvent) -> None:
        self.published += 1
        for subscription in list(self._subscribers):
            if subscription.wants(event):
                subscription.offer(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription (shutdown)."""
        for subscription in list(self._subscribers):
            subscription.close()
