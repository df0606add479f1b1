"""Deletion: finalizers, garbage collection by ownerReferences, and namespace termination.

Runs inside the server with direct store access (the real cluster spreads this over the API server,
the garbage collector and the namespace controller). Propagation policies:

- Background: the owner goes at once; dependents whose owners are all gone are deleted after it.
- Foreground: the owner gets ``deletionTimestamp`` and the ``foregroundDeletion`` finalizer, its
  dependents are deleted, and the finalizer is dropped once no ``blockOwnerDeletion`` dependent is left.
- Orphan: dependents lose their ownerReference to the owner, then the owner goes.
"""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

from kubepilot_devcluster.apiserver.cluster import Cluster, DeleteOptions, WriteOptions
from kubepilot_devcluster.apiserver.errors import ApiError, conflict, not_found
from kubepilot_devcluster.apiserver.resources import ResourceType
from kubepilot_devcluster.apiserver.store import StorageKey
from kubepilot_devcluster.apiserver.timeutil import now_rfc3339
from kubepilot_devcluster.apiserver.values import clone

JsonObject = dict[str, Any]
Location = tuple[StorageKey, str, str]  # (storage, namespace, name)

CRD_STORAGE = ("apiextensions.k8s.io", "customresourcedefinitions")
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


class Deleter:
    """Deletes objects and keeps dependents and namespaces consistent afterwards."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self._by_uid: dict[str, Location] = {}
        self._dependents: dict[str, set[Location]] = {}
        self._owners_of: dict[Location, set[str]] = {}
        self._namespace_sizes: dict[str, int] = {}
        self.store.on_put.append(self._indexed)
        self.store.on_removed.append(self._removed)

    def rebuild_indexes(self) -> None:
        """Index what persistence loaded, then collect dependents whose owners no longer exist."""
        for storage in self.store.storages():
            for obj in self.store.list(storage):
                self._indexed(storage, obj)
        orphans = [
            loc for loc, owners in self._owners_of.items() if owners and not owners & self._by_uid.keys()
        ]
        for location in orphans:
            self._collect(location)

    # -- indexes -------------------------------------------------------------------------------

    def _indexed(self, storage: StorageKey, obj: JsonObject) -> None:
        meta = obj["metadata"]
        location = (storage, meta.get("namespace", ""), meta["name"])
        if meta["uid"] not in self._by_uid and location[1]:
            self._namespace_sizes[location[1]] = self._namespace_sizes.get(location[1], 0) + 1
        self._by_uid[meta["uid"]] = location
        owners = {ref.get("uid", "") for ref in meta.get("ownerReferences") or []}
        previous = self._owners_of.get(location, set())
        for uid in previous - owners:
            self._dependents.get(uid, set()).discard(location)
        for uid in owners - previous:
            self._dependents.setdefault(uid, set()).add(location)
        self._owners_of[location] = owners
        for uid in previous - owners:
            self._maybe_finish_foreground(uid)

    def _removed(self, storage: StorageKey, obj: JsonObject) -> None:
        meta = obj["metadata"]
        location = (storage, meta.get("namespace", ""), meta["name"])
        self._by_uid.pop(meta["uid"], None)
        if location[1]:
            self._namespace_sizes[location[1]] = self._namespace_sizes.get(location[1], 1) - 1
        owners = self._owners_of.pop(location, set())
        for uid in owners:
            self._dependents.get(uid, set()).discard(location)
        for dependent in list(self._dependents.pop(meta["uid"], set())):
            self._collect(dependent)
        for uid in owners:
            self._maybe_finish_foreground(uid)
        if location[1]:
            self._maybe_finish_namespace(location[1])
        if storage == CRD_STORAGE:
            self._drop_custom_resources(obj)

    def _drop_custom_resources(self, crd: JsonObject) -> None:
        """A deleted CRD takes its objects with it (their finalizers are not waited for)."""
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        self.cluster.registry.remove_group_resource(group, plural)
        for obj in list(self.store.list((group, plural))):
            self.store.remove((group, plural), obj)

    def dependents(self, uid: str) -> list[Location]:
        return sorted(self._dependents.get(uid, set()))

    # -- deleting ------------------------------------------------------------------------------

    def delete(self, resource: ResourceType, namespace: str, name: str, options: DeleteOptions) -> JsonObject:
        """Delete one object; returns it as it ended up (gone, or waiting on finalizers)."""
        key_namespace = namespace if resource.namespaced else ""
        current = self.store.get(resource.storage_key, key_namespace, name)
        if current is None:
            raise not_found(resource.group, resource.plural, name)
        meta = current["metadata"]
        wanted_uid = options.preconditions.get("uid")
        if wanted_uid and wanted_uid != meta["uid"]:
            raise conflict(
                resource.group,
                resource.plural,
                name,
                f"Precondition failed: UID in precondition: {wanted_uid}, UID in object meta: {meta['uid']}",
            )
        wanted_version = options.preconditions.get("resourceVersion")
        if wanted_version and wanted_version != meta["resourceVersion"]:
            raise conflict(
                resource.group,
                resource.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: {wanted_version}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        if options.dry_run:
            return self.cluster.present(resource, current)
        policy = options.propagation or ("Orphan" if resource.orphan_by_default else "Background")
        if resource.kind == "Namespace" and resource.group == "":
            return self._terminate_namespace(current)
        if policy == "Orphan":
            self._orphan_dependents(meta["uid"])
        grace = self._pod_grace_period(resource, current, options)
        if grace is not None:
            return self._delete_gracefully(resource, current, grace)
        finalizers = list(meta.get("finalizers") or [])
        foreground = policy == "Foreground" and self._blocking_or_any_dependents(meta["uid"])
        if foreground and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if finalizers:
            return self._mark_deleting(resource, current, finalizers, policy)
        return self.cluster.present(resource, self.store.remove(resource.storage_key, current))

    @staticmethod
    def _pod_grace_period(resource: ResourceType, pod: JsonObject, options: DeleteOptions) -> int | None:
        """Seconds a bound, running pod gets to stop; None when it can go at once (as the real server)."""
        if resource.kind != "Pod" or resource.group != "":
            return None
        if not (pod.get("spec") or {}).get("nodeName"):
            return None
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        grace = options.grace_period
        if grace is None:
            grace = int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        current = pod["metadata"].get("deletionGracePeriodSeconds")
        if pod["metadata"].get("deletionTimestamp") and current is not None:
            grace = min(grace, int(current))
        return grace if grace > 0 else None

    def _delete_gracefully(self, resource: ResourceType, pod: JsonObject, grace: int) -> JsonObject:
        """Mark the pod for deletion; the kubelet stops it and deletes it with gracePeriodSeconds=0."""
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == grace:
            return self.cluster.present(resource, pod)
        updated = clone(pod)
        updated["metadata"]["deletionGracePeriodSeconds"] = grace
        if not meta.get("deletionTimestamp"):
            stamp = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace)
            updated["metadata"]["deletionTimestamp"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            if resource.has_generation:
                updated["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
        self._put(resource, updated)
        return self.cluster.present(resource, updated)

    def _mark_deleting(
        self, resource: ResourceType, current: JsonObject, finalizers: list[str], policy: str
    ) -> JsonObject:
        meta = current["metadata"]
        if meta.get("deletionTimestamp"):
            if finalizers != list(meta.get("finalizers") or []):
                updated = clone(current)
                updated["metadata"]["finalizers"] = finalizers
                self._put(resource, updated)
                current = updated
        else:
            updated = clone(current)
            updated["metadata"].update(
                {
                    "deletionTimestamp": now_rfc3339(),
                    "deletionGracePeriodSeconds": 0,
                    "finalizers": finalizers,
                }
            )
            if resource.has_generation:
                updated["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
            self._put(resource, updated)
            current = updated
        if policy == "Foreground":
            self._delete_dependents(current["metadata"]["uid"], foreground=True)
            self._maybe_finish_foreground(current["metadata"]["uid"])
        found = self.store.get(resource.storage_key, meta.get("namespace", ""), meta["name"])
        return self.cluster.present(resource, found if found is not None else current)

    def _put(self, resource: ResourceType, obj: JsonObject) -> None:
        obj["metadata"]["resourceVersion"] = str(self.store.next_resource_version())
        self.store.put(resource.storage_key, obj, "MODIFIED")

    def _resource(self, storage: StorageKey) -> ResourceType | None:
        return self.cluster.registry.for_storage(*storage)

    def _blocking_or_any_dependents(self, uid: str) -> bool:
        return bool(self._dependents.get(uid))

    def _orphan_dependents(self, uid: str) -> None:
        for storage, namespace, name in list(self._dependents.get(uid, set())):
            dependent = self.store.get(storage, namespace, name)
            resource = self._resource(storage)
            if dependent is None or resource is None:
                continue
            updated = clone(dependent)
            refs = [r for r in updated["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                updated["metadata"]["ownerReferences"] = refs
            else:
                updated["metadata"].pop("ownerReferences", None)
            self._put(resource, updated)

    def _delete_dependents(self, uid: str, foreground: bool) -> None:
        for storage, namespace, name in list(self._dependents.get(uid, set())):
            resource = self._resource(storage)
            dependent = self.store.get(storage, namespace, name)
            if resource is None or dependent is None or dependent["metadata"].get("deletionTimestamp"):
                continue
            policy = (
                "Foreground" if foreground and self._dependents.get(dependent["metadata"]["uid"]) else None
            )
            self._delete_quietly(resource, namespace, name, DeleteOptions(propagation=policy or "Background"))

    def _delete_quietly(
        self, resource: ResourceType, namespace: str, name: str, options: DeleteOptions
    ) -> None:
        # Already gone is fine: another branch of the same cascade got there first.
        with contextlib.suppress(ApiError):
            self.delete(resource, namespace, name, options)

    def _collect(self, location: Location) -> None:
        """GC one dependent whose owner went: drop dangling refs, delete it if no owner remains."""
        storage, namespace, name = location
        dependent = self.store.get(storage, namespace, name)
        resource = self._resource(storage)
        if dependent is None or resource is None:
            return
        refs = dependent["metadata"].get("ownerReferences") or []
        alive = [r for r in refs if r.get("uid") in self._by_uid]
        if alive:
            if len(alive) != len(refs):
                updated = clone(dependent)
                updated["metadata"]["ownerReferences"] = alive
                self._put(resource, updated)
            return
        if not dependent["metadata"].get("deletionTimestamp"):
            self._delete_quietly(resource, namespace, name, DeleteOptions(propagation="Background"))

    def _maybe_finish_foreground(self, owner_uid: str) -> None:
        location = self._by_uid.get(owner_uid)
        if location is None:
            return
        owner = self.store.get(*location)
        resource = self._resource(location[0])
        if owner is None or resource is None:
            return
        finalizers = owner["metadata"].get("finalizers") or []
        if FOREGROUND not in finalizers or not owner["metadata"].get("deletionTimestamp"):
            return
        for dependent_location in self._dependents.get(owner_uid, set()):
            dependent = self.store.get(*dependent_location)
            for ref in (dependent or {}).get("metadata", {}).get("ownerReferences") or []:
                if ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion"):
                    return
        self.cluster.update(
            resource,
            location[1],
            location[2],
            {
                **owner,
                "metadata": {**owner["metadata"], "finalizers": [f for f in finalizers if f != FOREGROUND]},
            },
            None,
            WriteOptions(field_validation="Ignore"),
        )

    # -- namespaces ----------------------------------------------------------------------------

    def _terminate_namespace(self, namespace: JsonObject) -> JsonObject:
        name = namespace["metadata"]["name"]
        namespace_type = self.cluster.registry.get("", "v1", "namespaces")
        assert namespace_type is not None
        if not namespace["metadata"].get("deletionTimestamp"):
            updated = clone(namespace)
            updated["metadata"]["deletionTimestamp"] = now_rfc3339()
            updated["metadata"]["deletionGracePeriodSeconds"] = 0
            updated["status"] = {"phase": "Terminating"}
            self._put(namespace_type, updated)
        for storage in self.store.storages():
            resource = self._resource(storage)
            if resource is None or not resource.namespaced:
                continue
            for obj in list(self.store.list(storage, name)):
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete_quietly(
                        resource, name, obj["metadata"]["name"], DeleteOptions(propagation="Background")
                    )
        self._maybe_finish_namespace(name)
        current = self.store.get(("", "namespaces"), "", name)
        return current if current is not None else namespace

    def _maybe_finish_namespace(self, name: str) -> None:
        namespace = self.store.get(("", "namespaces"), "", name)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        if self._namespace_sizes.get(name, 0) > 0 or namespace["metadata"].get("finalizers"):
            return
        self.store.remove(("", "namespaces"), namespace)
