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
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, AlreadyExists, Conflict, NotFound
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME
from kubepilot_gateway.profiles.homepilot.generation import LABEL_FEATURE

JsonObject = dict[str, Any]
DATA_KEY = "session.json"
NAME_PREFIX = "homepilot-edit-"
FEATURE = "edit-session"
HISTORY_LIMIT = 10
WRITE_ATTEMPTS = 8


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


def configmap_name(conversation_id: str) -> str:
    return NAME_PREFIX + hashlib.sha256(conversation_id.encode()).hexdigest()[:24]


class SessionStore:
    """Edit sessions in ConfigMaps (see the module docstring)."""

    def __init__(self, ctx: GatewayContext, ttl_seconds: float) -> None:
        self.ctx = ctx
        self.namespace = ctx.store.namespace
        self.ttl_seconds = ttl_seconds

    async def _read(self, conversation_id: str) -> tuple[SessionRecord, str | None]:
        """The session and its ConfigMap's resourceVersion (None: no ConfigMap)."""
        path = CONFIGMAPS.path(self.namespace, configmap_name(conversation_id))
        try:
            found = await self.ctx.client.request("GET", path)
        except NotFound:
            return SessionRecord(conversation_id=conversation_id), None
        version = str(found["metadata"].get("resourceVersion") or "")
        try:
            record = SessionRecord.model_validate_json((found.get("data") or {}).get(DATA_KEY) or "{}")
        except ValidationError:
            record = SessionRecord(conversation_id=conversation_id)
        if record.conversation_id != conversation_id or time.time() - record.updated_at > self.ttl_seconds:
            record = SessionRecord(conversation_id=conversation_id)
        return record, version

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
            return record
        raise Conflict(409, "Conflict", f"edit session {conversation_id!r} kept changing; try again")

    async def delete(self, conversation_id: str) -> bool:
        try:
            await self.ctx.client.request(
                "DELETE", CONFIGMAPS.path(self.namespace, configmap_name(conversation_id))
            )
        except NotFound:
            return False
        return True
