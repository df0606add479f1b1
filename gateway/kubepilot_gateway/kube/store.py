"""The informer's in-memory copy of one resource type, keyed by (namespace, name).

Every way an object reaches the store (a watch event, a re-LIST, the answer to our own write)
goes through the same rule: a version older than the one held is ignored. resourceVersions are
opaque to clients, but one server never hands out a smaller one for a later change, so they are
compared as integers when they parse (every server we target: etcd revisions); when they do not,
the newer arrival wins. That rule is what makes read-your-writes safe: a lagging watch event can
never overwrite what the caller just wrote, and a watch event for our own write is recognised as
already applied, so the bus announces each version once.

Objects are handed out as stored, without copying: callers must not mutate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubepilot_gateway.bus import EventType, ResourceEvent
from kubepilot_gateway.kube.resources import object_key

JsonObject = dict[str, Any]
Key = tuple[str, str]
EventList = list[ResourceEvent]  # an alias: inside ObjectStore, ``list`` names its method


def resource_version(obj: JsonObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _as_int(version: str) -> int | None:
    try:
        return int(version)
    except ValueError:
        return None


def not_newer(version: str, than: str) -> bool:
    """True when ``version`` is known to be at or before ``than`` (the same string counts)."""
    if version == than:
        return True
    left, right = _as_int(version), _as_int(than)
    return left is not None and right is not None and left <= right


def older(version: str, than: str) -> bool:
    """True when ``version`` is known to be strictly before ``than``."""
    left, right = _as_int(version), _as_int(than)
    return left is not None and right is not None and left < right


class ObjectStore:
    """The objects of one kind, with tombstones for deletes the caller made itself."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._objects: dict[Key, JsonObject] = {}
        # Our own deletes, by the last version we saw: a lagging watch event for that version (or
        # an older one) must not bring the object back before the watch's DELETED arrives.
        self._tombstones: dict[Key, str] = {}

    # -- reads ---------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> JsonObject | None:
        return self._objects.get((namespace, name))

    def list(self, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[JsonObject]:
        """Objects in ``namespace`` (all when None) whose labels include ``labels``, by (namespace, name)."""
        found = []
        for key in sorted(self._objects):
            if namespace is not None and key[0] != namespace:
                continue
            obj = self._objects[key]
            if labels:
                have = (obj.get("metadata") or {}).get("labels") or {}
                if any(have.get(k) != v for k, v in labels.items()):
                    continue
            found.append(obj)
        return found

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    # -- changes -------------------------------------------------------------------------------

    def upsert(self, obj: JsonObject) -> ResourceEvent | None:
        """Hold ``obj`` unless what is held is as new; the ADDED/MODIFIED to announce, if any."""
        key = object_key(obj)
        version = resource_version(obj)
        tombstone = self._tombstones.get(key)
        if tombstone is not None:
            if not_newer(version, tombstone):
                return None
            del self._tombstones[key]
        current = self._objects.get(key)
        if current is not None and not_newer(version, resource_version(current)):
            return None
        self._objects[key] = obj
        return self._event("MODIFIED" if current is not None else "ADDED", obj, current)

    def remove(self, obj: JsonObject) -> ResourceEvent | None:
        """A DELETED from the watch; the event to announce unless the object was already gone."""
        key = object_key(obj)
        tombstone = self._tombstones.get(key)
        if tombstone is not None and not older(resource_version(obj), tombstone):
            del self._tombstones[key]
        current = self._objects.get(key)
        # A DELETED older than what is held belongs to an earlier incarnation of a re-created object.
        if current is None or older(resource_version(obj), resource_version(current)):
            return None
        del self._objects[key]
        return self._event("DELETED", obj, current)

    def forget(self, namespace: str, name: str, last_version: str = "") -> ResourceEvent | None:
        """Our own delete succeeded: drop the object now and ignore older news of it."""
        key = (namespace, name)
        current = self._objects.pop(key, None)
        version = last_version or (resource_version(current) if current is not None else "")
        if version:
            self._tombstones[key] = version
        if current is None:
            return None
        return self._event("DELETED", current, current)

    def replace(self, items: Iterable[JsonObject], list_version: str) -> EventList:
        """A fresh LIST: the ADDED, MODIFIED and DELETED that turn what is held into it.

        Objects held at a version newer than the list (our own writes that landed after the list
        was read) are kept, and so are tombstones newer than it.
        """
        events: EventList = []
        listed: set[Key] = set()
        for obj in items:
            listed.add(object_key(obj))
            event = self.upsert(obj)
            if event is not None:
                events.append(event)
        for key in [k for k in self._objects if k not in listed]:
            current = self._objects[key]
            if list_version and older(list_version, resource_version(current)):
                continue
            del self._objects[key]
            events.append(self._event("DELETED", current, current))
        self._tombstones = {
            key: version
            for key, version in self._tombstones.items()
            if not list_version or older(list_version, version)
        }
        return events

    def _event(self, event_type: EventType, obj: JsonObject, old: JsonObject | None) -> ResourceEvent:
        namespace, name = object_key(obj)
        return ResourceEvent(self.kind, namespace, name, event_type, obj, old)
