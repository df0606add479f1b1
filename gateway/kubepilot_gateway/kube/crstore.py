"""Writes through the API server: create, get, patch, patch status, delete, read-modify-write.

Reads for requests come from the informer cache; writes come here, and every object a write
returns is handed to the cache (``WriteObserver``) so the caller that wrote it reads it back at
once. Conflicts are retried where that is safe: a patch that carries no resourceVersion
precondition is simply re-applied to the current object, and ``mutate`` re-reads the object and
re-runs the change. Failures surface as the typed errors of ``kube.errors`` (NotFound,
AlreadyExists, Conflict, Invalid with the API's message) for each profile to map to its own
status codes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from kubepilot_gateway.kube.client import JSON_PATCH, MERGE_PATCH, KubeClient
from kubepilot_gateway.kube.errors import Conflict, NotFound
from kubepilot_gateway.kube.resources import ResourceType
from kubepilot_gateway.kube.store import resource_version

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
PatchType = Literal["merge", "json"]
Change = Callable[[JsonObject], JsonObject | None]
Propagation = Literal["Background", "Foreground", "Orphan"]

_CONTENT_TYPES: dict[PatchType, str] = {"merge": MERGE_PATCH, "json": JSON_PATCH}
# A short pause before re-applying a conflicting write lets the competing writer finish.
CONFLICT_PAUSE_SECONDS = 0.02


class WriteObserver(Protocol):
    """Where written objects go so the writer reads its own writes (the informer cache)."""

    def observe_write(self, resource: ResourceType, obj: JsonObject) -> None: ...

    def observe_delete(
        self, resource: ResourceType, namespace: str, name: str, last_version: str = ""
    ) -> None: ...


def merge_patch_for(old: JsonObject, new: JsonObject) -> JsonObject:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``; lists are replaced whole.

    A key whose new value is null cannot be told from a removed key in a merge patch; Kubernetes
    objects carry no meaningful nulls, so both become removals.
    """
    patch: JsonObject = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch_for(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def _has_precondition(patch: Any, patch_type: PatchType) -> bool:
    """Whether the patch pins a resourceVersion, making a Conflict the caller's answer to handle."""
    if patch_type == "merge":
        return isinstance(patch, dict) and bool((patch.get("metadata") or {}).get("resourceVersion"))
    return isinstance(patch, list) and any(
        isinstance(op, dict) and str(op.get("path", "")).startswith("/metadata/resourceVersion")
        for op in patch
    )


def _still_terminating(obj: JsonObject) -> bool:
    meta = obj.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and bool(meta.get("finalizers"))


class CrStore:
    """Writes to the API server for the profiles; ``namespace`` is the default for every call."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str = "default",
        observer: WriteObserver | None = None,
        conflict_retries: int = 5,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.observer = observer
        self.conflict_retries = conflict_retries

    def _ns(self, namespace: str | None) -> str:
        return namespace or self.namespace

    def _observe(self, resource: ResourceType, obj: JsonObject) -> JsonObject:
        if self.observer is not None and obj.get("metadata"):
            self.observer.observe_write(resource, obj)
        return obj

    async def create(
        self, resource: ResourceType, body: JsonObject, *, namespace: str | None = None
    ) -> JsonObject:
        """Create ``body``; AlreadyExists when the name is taken, Invalid when the schema refuses it."""
        ns = self._ns(namespace)
        body = {"apiVersion": resource.api_version, "kind": resource.kind, **body}
        created = await self.client.request("POST", resource.path(ns), body=body)
        return self._observe(resource, created)

    async def get(self, resource: ResourceType, name: str, *, namespace: str | None = None) -> JsonObject:
        """The object as the API server has it now (requests read the cache; this is for writers)."""
        return await self.client.request("GET", resource.path(self._ns(namespace), name))

    async def patch(
        self,
        resource: ResourceType,
        name: str,
        patch: JsonObject | list[JsonObject],
        *,
        patch_type: PatchType = "merge",
        subresource: str = "",
        namespace: str | None = None,
    ) -> JsonObject:
        """Apply a merge patch (or a JSON patch, a list of operations) to the object or a subresource.

        Without a resourceVersion precondition the patch means "this change, to whatever is
        current", so a 409 is retried; with one, the Conflict is the caller's.
        """
        path = resource.path(self._ns(namespace), name, subresource)
        retries = 0 if _has_precondition(patch, patch_type) else self.conflict_retries
        for attempt in range(retries + 1):
            try:
                patched = await self.client.request(
                    "PATCH", path, body=patch, content_type=_CONTENT_TYPES[patch_type]
                )
            except Conflict:
                if attempt >= retries:
                    raise
                log.debug("conflict patching %s; retrying (%d/%d)", path, attempt + 1, retries)
                await asyncio.sleep(CONFLICT_PAUSE_SECONDS)
                continue
            return self._observe(resource, patched)
        raise AssertionError("unreachable")  # the loop either returns or raises

    async def patch_status(
        self, resource: ResourceType, name: str, status: JsonObject, *, namespace: str | None = None
    ) -> JsonObject:
        """Merge ``status`` into the object's status subresource."""
        return await self.patch(resource, name, {"status": status}, subresource="status", namespace=namespace)

    async def mutate(
        self,
        resource: ResourceType,
        name: str,
        change: Change,
        *,
        subresource: str = "",
        namespace: str | None = None,
    ) -> JsonObject:
        """Read, change, write back with the version read as a precondition; on 409, all again.

        ``change`` gets a private copy of the current object and edits it in place (or returns a
        new one). It may run several times, so it must not have side effects. When it changes
        nothing, nothing is written.
        """
        ns = self._ns(namespace)
        path = resource.path(ns, name, subresource)
        for attempt in range(self.conflict_retries + 1):
            current = await self.get(resource, name, namespace=ns)
            draft = copy.deepcopy(current)
            desired = change(draft)
            patch = merge_patch_for(current, desired if desired is not None else draft)
            if not patch:
                return self._observe(resource, current)
            patch.setdefault("metadata", {})["resourceVersion"] = resource_version(current)
            try:
                written = await self.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
            except Conflict:
                if attempt >= self.conflict_retries:
                    raise
                log.debug("conflict writing %s; re-reading (%d/%d)", path, attempt + 1, self.conflict_retries)
                await asyncio.sleep(CONFLICT_PAUSE_SECONDS)
                continue
            return self._observe(resource, written)
        raise AssertionError("unreachable")

    async def delete(
        self,
        resource: ResourceType,
        name: str,
        *,
        namespace: str | None = None,
        propagation: Propagation = "Background",
        missing_ok: bool = False,
    ) -> JsonObject | None:
        """Delete the object; the object still terminating (finalizers), or None once it is gone.

        ``missing_ok`` turns NotFound into None, for deletes that only need the object gone.
        """
        ns = self._ns(namespace)
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            answer = await self.client.request("DELETE", resource.path(ns, name), body=options)
        except NotFound:
            if not missing_ok:
                raise
            answer = {"kind": "Status", "status": "Success"}
        if answer.get("kind") != "Status" and _still_terminating(answer):
            self._observe(resource, answer)
            return answer
        if self.observer is not None:
            last = resource_version(answer) if answer.get("kind") != "Status" else ""
            self.observer.observe_delete(resource, ns, name, last)
        return None
