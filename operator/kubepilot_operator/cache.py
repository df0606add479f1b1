"""An in-memory copy of the objects the operator watches, fed by kopf's watch events.

Reconcilers read from here, never LIST per pass: the parent CR, its Jobs, Deployments, Services
and Pods (found by owner uid or by label) and the other CRs a scheduling decision looks at.
Bodies are stored as the watch delivered them and handed out as they are: callers must not
mutate them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

Obj = dict[str, Any]
Key = tuple[str, str]
"""(namespace, name)"""


def owner_uids(body: Obj) -> list[str]:
    return [str(ref.get("uid", "")) for ref in body.get("metadata", {}).get("ownerReferences") or []]


class ObjectCache:
    """Objects by resource plural and (namespace, name), with an index of children by owner uid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[Key, Obj]] = defaultdict(dict)
        self._by_owner: dict[str, dict[str, set[Key]]] = defaultdict(lambda: defaultdict(set))

    def upsert(self, plural: str, body: Obj) -> bool:
        """Store ``body``; False when the cache already held this version (or a newer one)."""
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            old = self._objects[plural].get(key)
            if old is not None:
                # resourceVersions are opaque, but a watch never goes back in time: an event older
                # than what a read-your-write stored must not replace it.
                if _older(body, old):
                    return False
                if _same_version(body, old):
                    return False
                self._unindex(plural, key, old)
            self._objects[plural][key] = body
            for uid in owner_uids(body):
                self._by_owner[plural][uid].add(key)
            return True

    def remove(self, plural: str, namespace: str, name: str) -> None:
        key = (namespace, name)
        with self._lock:
            old = self._objects[plural].pop(key, None)
            if old is not None:
                self._unindex(plural, key, old)

    def _unindex(self, plural: str, key: Key, body: Obj) -> None:
        for uid in owner_uids(body):
            keys = self._by_owner[plural].get(uid)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_owner[plural][uid]

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects[plural].get((namespace, name))

    def owned(self, plural: str, owner_uid: str) -> list[Obj]:
        with self._lock:
            keys = list(self._by_owner[plural].get(owner_uid, ()))
            return [self._objects[plural][k] for k in keys if k in self._objects[plural]]

    def all(self, plural: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [
                body
                for (ns, _), body in self._objects[plural].items()
                if namespace is None or ns == namespace
            ]

    def with_labels(self, plural: str, namespace: str, labels: dict[str, str]) -> list[Obj]:
        def matches(body: Obj) -> bool:
            own = body.get("metadata", {}).get("labels") or {}
            return all(own.get(k) == v for k, v in labels.items())

        return [body for body in self.all(plural, namespace) if matches(body)]

    def size(self) -> int:
        with self._lock:
            return sum(len(objects) for objects in self._objects.values())


def _same_version(new: Obj, old: Obj) -> bool:
    version = new.get("metadata", {}).get("resourceVersion")
    return bool(version) and version == old.get("metadata", {}).get("resourceVersion")


def _older(new: Obj, old: Obj) -> bool:
    try:
        return int(new["metadata"]["resourceVersion"]) < int(old["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return False
