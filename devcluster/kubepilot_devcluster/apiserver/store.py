"""The in-memory object store: one cluster-wide resourceVersion, a bounded event history, watchers.

Everything runs on the server's single event loop, so the store needs no locks: each mutation is
one synchronous call that bumps the resourceVersion, records the event and wakes the watchers.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]
StorageKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
ObjectList = list[JsonObject]  # an alias: inside ObjectStore, ``list`` names its method

DEFAULT_HISTORY = 20_000


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` is ADDED, MODIFIED or DELETED; ``obj`` is the object after the change."""

    resource_version: int
    storage: StorageKey
    type: str
    obj: JsonObject
    # The object before a MODIFIED or DELETED change: filtered watches tell entering from leaving
    # with it, and paginated lists roll back to the version their first page was read at.
    previous: JsonObject | None = None
    # Serialized watch lines by (type, apiVersion): fan-out to many watchers encodes each event once.
    encoded: dict[tuple[str, str], bytes] = field(default_factory=dict, compare=False)


@dataclass(eq=False)
class Watcher:
    """A subscriber to one resource's events (optionally one namespace); fed through a queue."""

    storage: StorageKey
    namespace: str | None
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)

    def wants(self, event: WatchEvent) -> bool:
        if event.storage != self.storage:
            return False
        return self.namespace is None or event.obj["metadata"].get("namespace", "") == self.namespace

    def close(self) -> None:
        self.queue.put_nowait(None)


class ResourceVersionExpired(Exception):
    """The asked-for resourceVersion is older than the retained history (HTTP 410 for watches)."""


Journal = Callable[[str, StorageKey, JsonObject], None]


class ObjectStore:
    """Objects by (group, plural) then (namespace, name), with change history and live watchers."""

    def __init__(self, history_size: int = DEFAULT_HISTORY) -> None:
        self._objects: dict[StorageKey, dict[ObjectKey, JsonObject]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=history_size)
        self._watchers: set[Watcher] = set()
        self._resource_version = 0
        # Every event after this version is still in the history.
        self._history_start = 0
        self.journal: Journal | None = None
        self.on_put: list[Callable[[StorageKey, JsonObject], None]] = []
        self.on_removed: list[Callable[[StorageKey, JsonObject], None]] = []

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def next_resource_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    # -- reads ---------------------------------------------------------------------------------

    def get(self, storage: StorageKey, namespace: str, name: str) -> JsonObject | None:
        return self._objects.get(storage, {}).get((namespace, name))

    def list(self, storage: StorageKey, namespace: str | None = None) -> list[JsonObject]:
        """Objects sorted by (namespace, name), the order list pagination relies on."""
        bucket = self._objects.get(storage, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def list_at(self, storage: StorageKey, namespace: str | None, resource_version: int) -> ObjectList:
        """Objects as they were at ``resource_version`` (consistent pagination), from the history."""
        if resource_version >= self._resource_version:
            return self.list(storage, namespace)
        if resource_version < self._history_start:
            raise ResourceVersionExpired(
                "The provided continue parameter is too old to display a consistent list result. You can "
                "start a new list without the continue parameter."
            )
        bucket = dict(self._objects.get(storage, {}))
        for event in reversed(self._history):
            if event.resource_version <= resource_version:
                break
            if event.storage != storage:
                continue
            meta = event.obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if event.type == "ADDED":
                bucket.pop(key, None)
            elif event.previous is not None:
                bucket[key] = event.previous
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def storages(self) -> Iterator[StorageKey]:
        return iter(list(self._objects))

    def count(self) -> int:
        return sum(len(bucket) for bucket in self._objects.values())

    # -- writes --------------------------------------------------------------------------------

    def put(self, storage: StorageKey, obj: JsonObject, event_type: str) -> JsonObject:
        """Store ``obj`` (its resourceVersion already stamped) and announce ``event_type``."""
        meta = obj["metadata"]
        bucket = self._objects.setdefault(storage, {})
        key = (meta.get("namespace", ""), meta["name"])
        previous = bucket.get(key)
        bucket[key] = obj
        self._record(storage, event_type, obj, previous)
        if self.journal is not None:
            self.journal("put", storage, obj)
        for hook in list(self.on_put):
            hook(storage, obj)
        return obj

    def remove(self, storage: StorageKey, obj: JsonObject) -> JsonObject:
        """Remove ``obj``; the DELETED event carries it with a fresh resourceVersion."""
        meta = obj["metadata"]
        self._objects.get(storage, {}).pop((meta.get("namespace", ""), meta["name"]), None)
        gone = copy.copy(obj)
        gone["metadata"] = {**meta, "resourceVersion": str(self.next_resource_version())}
        self._record(storage, "DELETED", gone, obj)
        if self.journal is not None:
            self.journal("delete", storage, gone)
        for hook in list(self.on_removed):
            hook(storage, gone)
        return gone

    def load(self, storage: StorageKey, obj: JsonObject) -> None:
        """Restore ``obj`` from persistence: no event, but the version counter follows it."""
        meta = obj["metadata"]
        self._objects.setdefault(storage, {})[(meta.get("namespace", ""), meta["name"])] = obj
        self._resource_version = max(self._resource_version, int(meta.get("resourceVersion", "0") or 0))

    def unload(self, storage: StorageKey, namespace: str, name: str, resource_version: int) -> None:
        self._objects.get(storage, {}).pop((namespace, name), None)
        self._resource_version = max(self._resource_version, resource_version)

    def finish_loading(self, resource_version: int) -> None:
        """After a restart no history exists: watches from older versions must get 410."""
        self._resource_version = max(self._resource_version, resource_version)
        self._history_start = self._resource_version

    def _record(
        self, storage: StorageKey, event_type: str, obj: JsonObject, previous: JsonObject | None = None
    ) -> None:
        event = WatchEvent(int(obj["metadata"]["resourceVersion"]), storage, event_type, obj, previous)
        if len(self._history) == self._history.maxlen:
            self._history_start = self._history[0].resource_version
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.wants(event):
                watcher.queue.put_nowait(event)

    # -- watching ------------------------------------------------------------------------------

    def subscribe(self, storage: StorageKey, namespace: str | None, since: int | None) -> Watcher:
        """A watcher fed every matching event after version ``since`` (None: from now on)."""
        watcher = Watcher(storage, namespace)
        if since is not None:
            if since < self._history_start:
                raise ResourceVersionExpired(f"too old resource version: {since} ({self._history_start + 1})")
            for event in self._history:
                if event.resource_version > since and watcher.wants(event):
                    watcher.queue.put_nowait(event)
        self._watchers.add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def drop_watchers(self) -> int:
        """Close every open watch stream (fault injection); returns how many were closed."""
        watchers = list(self._watchers)
        self._watchers.clear()
        for watcher in watchers:
            watcher.close()
        return len(watchers)

    def compact(self) -> None:
        """Forget the whole history, as etcd compaction does: older watches then get 410."""
        self._history.clear()
        self._history_start = self._resource_version

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)
