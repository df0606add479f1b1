"""Edit sessions kept in ConfigMaps: one per session, written with optimistic concurrency.

HomePilot's edit-session service keeps, per ``conversation_id``, the active image, the original
upload and a history of versions (``url``, ``instruction``, ``created_at``, ``parent_url``,
``settings``; newest first, ``HISTORY_LIMIT`` 10, 7-day TTL) in SQLite or Redis. Here:

- **Where**: a ConfigMap ``homepilot-edit-<sha256(conversation_id)[:24]>`` in the gateway's
  namespace (data ``session.json``; the id itself in ``conversation_id`` inside, since a client's
  id need not be a valid object name), labelled ``kubepilot.io/profile=homepilot`` and
  ``kubepilot.io/homepilot-feature=edit-session``. Chosen over a file on the outputs volume
  because the API server gives what a file does not: a compare-and-swap (``resourceVersion``,
  409 on a stale write) so two gateway replicas, or two messages at once, never lose an update,
  and state in the cluster like every other piece of the gateway's state. A session is small
  (paths, not images; at most ``HISTORY_LIMIT`` versions), far below a ConfigMap's 1 MiB.
- **What**: image *paths relative to the outputs volume* (``generations/...`` job outputs,
  ``homepilot/inputs/...`` uploads), not URLs: the routes turn them into URLs with the address
  the client used, so the same session works on the native port and under ``/p/homepilot``.
- Reads are one GET of one object (ConfigMaps are not in the informer cache; there is no LIST);
  an expired session (``ttlSeconds`` since its last update) reads as empty, as HomePilot's does.

**Expiry** (HomePilot's store drops a session after its TTL; here the ConfigMap must go too). The
gateway may not list ConfigMaps (its RBAC grants them by name only), and no CR carries a
session, so the gateway keeps the names itself and cleans up on two paths:

- *lazily*: a read that finds a session expired deletes its ConfigMap (and its index entry) at
  once, with a ``resourceVersion`` precondition (a writer that renewed it in between wins: the
  read retries);
- *on a timer*: every ``sweepSeconds`` (and once at start) each gateway replica reads the index
  ConfigMap ``homepilot-edit-sessions`` (``sessions.json``: session key → last update seen, in
  seconds) that session creation writes (compare-and-swap), deletes the sessions expired since
  (re-checking each one's own ``updated_at`` first, same precondition), and drops their entries
  and those of sessions deleted by other means. Replicas sweeping together are harmless: every
  delete tolerates NotFound and every index write is a compare-and-swap.

Expiry, like ``DELETE /v1/edit-sessions/{id}``, also deletes the session's GenerationJobs (label
``kubepilot.io/homepilot-edit-session``); the images on the outputs volume stay (they may be in
use elsewhere: a chat message, a story). A TTL label the operator would honour was the
alternative; it needs the operator to list ConfigMaps by label across the profile's namespace,
which this keeps out of the operator and needs no change to it. The index holds ``INDEX_LIMIT``
sessions (within a ConfigMap's 1 MiB); beyond that the entries seen longest ago leave the index,
and those sessions are then only deleted lazily, when they are read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from kubepilot_api.constants import LABEL_PREFIX, LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, AlreadyExists, Conflict, NotFound
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME
from kubepilot_gateway.profiles.homepilot.generation import GENERATION_JOBS, LABEL_FEATURE

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
DATA_KEY = "session.json"
NAME_PREFIX = "homepilot-edit-"
FEATURE = "edit-session"
HISTORY_LIMIT = 10
WRITE_ATTEMPTS = 8
INDEX_NAME = "homepilot-edit-sessions"
INDEX_KEY = "sessions.json"
INDEX_LIMIT = 15000
LABEL_SESSION = f"{LABEL_PREFIX}homepilot-edit-session"
"""The session of an edit job (``session_key``), to delete its jobs with it."""


class Version(BaseModel):
    """One image of a session's history (HomePilot's ``VersionEntry``, with a path for the URL)."""

    path: str
    instruction: str = ""
    created_at: float = Field(default_factory=time.time)
    parent: str | None = None
    settings: JsonObject = Field(default_factory=dict)


class SessionRecord(BaseModel):
    """A session's state (HomePilot's ``SessionRecord``)."""

    conversation_id: str
    active: str | None = None
    original: str | None = None
    versions: list[Version] = Field(default_factory=list)
    updated_at: float = Field(default_factory=time.time)

    def set_active(self, path: str, instruction: str, settings: JsonObject | None = None) -> None:
        """``path`` becomes the active image and the newest version (HomePilot's ``set_active``)."""
        entry = Version(path=path, instruction=instruction, parent=self.active, settings=settings or {})
        self.versions = [entry, *(v for v in self.versions if v.path != path)][:HISTORY_LIMIT]
        self.original = self.original or path
        self.active = path
        self.updated_at = time.time()

    def version(self, path: str) -> Version | None:
        return next((v for v in self.versions if v.path == path), None)


def _index_set(key: str, seen: int, index: dict[str, int]) -> None:
    index[key] = seen


def _index_drop(key: str, index: dict[str, int]) -> None:
    index.pop(key, None)


def session_key(conversation_id: str) -> str:
    """The session's key: the hash in its ConfigMap's name and its jobs' label value."""
    return hashlib.sha256(conversation_id.encode()).hexdigest()[:24]


def configmap_name(conversation_id: str) -> str:
    return NAME_PREFIX + session_key(conversation_id)


class SessionStore:
    """Edit sessions in ConfigMaps (see the module docstring)."""

    def __init__(self, ctx: GatewayContext, ttl_seconds: float) -> None:
        self.ctx = ctx
        self.namespace = ctx.store.namespace
        self.ttl_seconds = ttl_seconds

    def expired(self, updated_at: float, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) - updated_at > self.ttl_seconds

    async def _read(self, conversation_id: str) -> tuple[SessionRecord, str | None]:
        """The session and its ConfigMap's resourceVersion (None: no ConfigMap); an expired one is
        deleted here and reads as empty."""
        name = configmap_name(conversation_id)
        empty = SessionRecord(conversation_id=conversation_id)
        for _ in range(WRITE_ATTEMPTS):
            try:
                found = await self.ctx.client.request("GET", CONFIGMAPS.path(self.namespace, name))
            except NotFound:
                return empty, None
            version = str(found["metadata"].get("resourceVersion") or "")
            try:
                record = SessionRecord.model_validate_json((found.get("data") or {}).get(DATA_KEY) or "{}")
            except ValidationError:
                return empty, version
            if record.conversation_id != conversation_id:
                return empty, version
            if not self.expired(record.updated_at):
                return record, version
            if await self.remove(name, version):
                return empty, None
            # Renewed by another writer between our read and the delete: read it again.
        return empty, version

    async def get(self, conversation_id: str) -> SessionRecord:
        return (await self._read(conversation_id))[0]

    async def update(self, conversation_id: str, change: Callable[[SessionRecord], None]) -> SessionRecord:
        """Apply ``change`` to the current session and write it; retried on a concurrent write."""
        name = configmap_name(conversation_id)
        for _ in range(WRITE_ATTEMPTS):
            record, version = await self._read(conversation_id)
            change(record)
            record.updated_at = time.time()
            body: JsonObject = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "labels": {LABEL_PROFILE: PROFILE_NAME, LABEL_FEATURE: FEATURE},
                },
                "data": {DATA_KEY: json.dumps(record.model_dump(mode="json"))},
            }
            try:
                if version is None:
                    await self.ctx.client.request("POST", CONFIGMAPS.path(self.namespace), body=body)
                else:
                    body["metadata"]["resourceVersion"] = version
                    await self.ctx.client.request("PUT", CONFIGMAPS.path(self.namespace, name), body=body)
            except (Conflict, AlreadyExists, NotFound):
                continue  # someone wrote in between: read again and reapply
            if version is None:
                await self.index_change(partial(_index_set, session_key(conversation_id), int(time.time())))
            return record
        raise Conflict(409, "Conflict", f"edit session {conversation_id!r} kept changing; try again")

    async def delete(self, conversation_id: str) -> bool:
        """Delete the session's ConfigMap and its GenerationJobs; whether the ConfigMap existed."""
        name = configmap_name(conversation_id)
        await self.delete_jobs(session_key(conversation_id))
        try:
            await self.ctx.client.request("DELETE", CONFIGMAPS.path(self.namespace, name))
        except NotFound:
            return False
        return True

    async def delete_jobs(self, key: str) -> None:
        """The session's GenerationJobs (their images stay)."""
        for job in self.ctx.cache.list(GENERATION_JOBS, self.namespace, {LABEL_SESSION: key}):
            await self.ctx.store.delete(GENERATION_JOBS, job["metadata"]["name"], missing_ok=True)

    async def remove(self, name: str, version: str, *, unindex: bool = True) -> bool:
        """Delete the session ConfigMap ``name`` if it is still at ``version`` (and its jobs, and
        with ``unindex`` its index entry); False when it changed meanwhile (a writer renewed it)."""
        options: JsonObject = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": version},
        }
        try:
            await self.ctx.client.request("DELETE", CONFIGMAPS.path(self.namespace, name), body=options)
        except NotFound:
            pass
        except Conflict:
            return False
        log.info("HomePilot edit session %s expired: deleted", name)
        key = name[len(NAME_PREFIX) :]
        await self.delete_jobs(key)
        if unindex:
            await self.index_change(partial(_index_drop, key))
        return True

    # -- the index and the sweep ---------------------------------------------------------------

    async def read_index(self) -> tuple[dict[str, int], str | None]:
        try:
            found = await self.ctx.client.request("GET", CONFIGMAPS.path(self.namespace, INDEX_NAME))
        except NotFound:
            return {}, None
        version = str(found["metadata"].get("resourceVersion") or "")
        try:
            raw = json.loads((found.get("data") or {}).get(INDEX_KEY) or "{}")
        except ValueError:
            raw = {}
        if not isinstance(raw, dict):
            return {}, version
        return {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float)}, version

    async def index_change(self, change: Callable[[dict[str, int]], None]) -> None:
        """Apply ``change`` to the index and write it (compare-and-swap, retried). Best effort: a
        failure is logged, the session itself is written already and expires lazily still."""
        for _ in range(WRITE_ATTEMPTS):
            index, version = await self.read_index()
            before = dict(index)
            change(index)
            if len(index) > INDEX_LIMIT:
                for key, _seen in sorted(index.items(), key=lambda item: item[1])[: len(index) - INDEX_LIMIT]:
                    del index[key]
            if index == before and version is not None:
                return
            body: JsonObject = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": INDEX_NAME,
                    "labels": {LABEL_PROFILE: PROFILE_NAME, LABEL_FEATURE: FEATURE},
                },
                "data": {INDEX_KEY: json.dumps(index, separators=(",", ":"), sort_keys=True)},
            }
            try:
                if version is None:
                    await self.ctx.client.request("POST", CONFIGMAPS.path(self.namespace), body=body)
                else:
                    body["metadata"]["resourceVersion"] = version
                    await self.ctx.client.request(
                        "PUT", CONFIGMAPS.path(self.namespace, INDEX_NAME), body=body
                    )
            except (Conflict, AlreadyExists, NotFound):
                continue
            return
        log.warning("HomePilot edit-session index kept changing; left as it was")

    async def sweep(self) -> list[str]:
        """Delete the sessions expired by now (see the module docstring); their ConfigMap names."""
        index, _version = await self.read_index()
        now = time.time()
        gone: set[str] = set()
        renewed: dict[str, int] = {}
        removed: list[str] = []
        for key, seen in index.items():
            if not self.expired(seen, now):
                continue
            name = NAME_PREFIX + key
            try:
                found = await self.ctx.client.request("GET", CONFIGMAPS.path(self.namespace, name))
            except NotFound:
                gone.add(key)
                continue
            version = str(found["metadata"].get("resourceVersion") or "")
            try:
                updated = SessionRecord.model_validate_json(
                    (found.get("data") or {}).get(DATA_KEY) or "{}"
                ).updated_at
            except ValidationError:
                updated = float(seen)  # unreadable: it ages from what the index saw
            if not self.expired(updated, now):
                renewed[key] = int(updated)
            elif await self.remove(name, version, unindex=False):
                gone.add(key)
                removed.append(name)

        def apply(current: dict[str, int]) -> None:
            for key in gone:
                current.pop(key, None)
            for key, seen in renewed.items():
                if key in current:
                    current[key] = max(current[key], seen)

        if gone or renewed:
            await self.index_change(apply)
        return removed

    async def sweep_forever(self, every_seconds: float) -> None:
        """``sweep`` now and every ``every_seconds`` until cancelled; a failed sweep is logged."""
        while True:
            try:
                removed = await self.sweep()
                if removed:
                    log.info("HomePilot edit sessions expired and deleted: %d", len(removed))
            except asyncio.CancelledError:
                raise
            except Exception:  # the cluster may be briefly unreachable: next round
                log.warning("HomePilot edit-session sweep failed", exc_info=True)
            await asyncio.sleep(every_seconds)
