"""An informer: LIST once, then WATCH from that version, keeping a store of one resource type.

The watch resumes from the last version it saw (an event or a bookmark) whenever a stream ends or
breaks, so a dropped connection loses nothing. When the server no longer keeps that version (410
Gone, as an HTTP answer or an ERROR event), the informer lists again and diffs the list against
its store, announcing the ADDED, MODIFIED and DELETED that happened meanwhile: subscribers see
every change in state even across a compaction or an API server restart. Errors back off
exponentially with jitter; ``synced`` is set after the first LIST and stays set, since a
re-synchronising cache still serves what it last knew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.kube.backoff import Backoff
from kubepilot_gateway.kube.client import KubeClient, Params
from kubepilot_gateway.kube.errors import Gone, KubeError, api_error
from kubepilot_gateway.kube.resources import ResourceType
from kubepilot_gateway.kube.store import ObjectStore, not_newer, resource_version
from kubepilot_gateway.settings import Watch

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
EventSink = Callable[[ResourceEvent], None]

# A stream that ends this soon without an event is treated as a failure, so a server (or proxy)
# that closes every watch at once is retried with backoff rather than in a tight loop.
MIN_HEALTHY_STREAM_SECONDS = 1.0


@dataclass
class InformerStats:
    """Counters for metrics and tests."""

    lists: int = 0
    watches: int = 0
    expired: int = 0
    errors: int = 0
    events: int = 0


class Informer:
    """The cached objects of one resource type, in one namespace or all of them."""

    def __init__(
        self,
        client: KubeClient,
        resource: ResourceType,
        *,
        namespace: str | None = None,
        settings: Watch | None = None,
        on_event: EventSink | None = None,
        label_selector: str = "",
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.settings = settings or Watch()
        self.label_selector = label_selector
        self.store = ObjectStore(resource.kind)
        self.synced = asyncio.Event()
        """Set once the first LIST is in the store."""
        self.resource_version = ""
        """Where the watch resumes: the last version the server confirmed to this informer."""
        self.stats = InformerStats()
        self._sinks: list[EventSink] = [on_event] if on_event is not None else []
        self._last_seen: float | None = None
        self._listed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.resource.plural}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_synced(self) -> None:
        """Return once the first LIST is in the store (bound it with ``asyncio.timeout``)."""
        await self.synced.wait()

    def add_sink(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, name: str, namespace: str | None = None) -> JsonObject | None:
        return self.store.get(namespace or self.namespace or "", name)

    def list(self, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[JsonObject]:
        return self.store.list(namespace or self.namespace, labels)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def staleness_seconds(self) -> float:
        """Seconds since the server last told us we were current (list, event, bookmark or quiet
        stream end); infinite before the first LIST."""
        return math.inf if self._last_seen is None else time.monotonic() - self._last_seen

    # -- read-your-writes ----------------------------------------------------------------------

    def observe_write(self, obj: JsonObject) -> None:
        """The object a create, update or patch returned: visible at once, never replaced by older news."""
        self._emit(self.store.upsert(obj))

    def observe_delete(self, namespace: str, name: str, last_version: str = "") -> None:
        """Our delete went through: the object leaves the cache now."""
        self._emit(self.store.forget(namespace, name, last_version))

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        settings = self.settings
        backoff = Backoff(settings.backoffInitialSeconds, settings.backoffMaxSeconds, settings.backoffJitter)
        need_list = True
        while True:
            try:
                if need_list or self._resync_due():
                    await self._list()
                    need_list = False
                if await self._watch():
                    backoff.reset()
                    continue
                delay = backoff.next()
            except Gone as gone:
                self.stats.expired += 1
                if not need_list:
                    # Expected after compaction or a restart: list afresh, at once.
                    log.info(
                        "%s: watch version %s expired (%s); re-listing", self, self.resource_version, gone
                    )
                    need_list = True
                    continue
                # A LIST whose continue token expired: churn outpaces paging, so back off.
                delay = backoff.next()
            except KubeError as error:
                self.stats.errors += 1
                delay = backoff.next()
                # The first failure in a row is news; the retries after it are in the staleness figure.
                level = logging.WARNING if backoff.attempt == 1 else logging.DEBUG
                log.log(level, "%s: %s; retrying in %.2fs", self, error, delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                # An informer that dies leaves the cache silently stale: log it and carry on.
                self.stats.errors += 1
                delay = backoff.next()
                log.exception("%s: unexpected failure; retrying in %.2fs", self, delay)
            await asyncio.sleep(delay)

    def _resync_due(self) -> bool:
        period = self.settings.resyncSeconds
        return bool(period) and time.monotonic() - self._listed_at >= period

    def _path(self) -> str:
        return self.resource.path(self.namespace)

    async def _list(self) -> None:
        items: list[JsonObject] = []
        list_version = ""
        token = ""
        while True:
            params: Params = {}
            if self.settings.listPageSize:
                params["limit"] = self.settings.listPageSize
            if token:
                params["continue"] = token
            if self.label_selector:
                params["labelSelector"] = self.label_selector
            # A 410 here (the continue token outlived the server's history) restarts the list.
            page = await self.client.request("GET", self._path(), params=params)
            meta = page.get("metadata") or {}
            list_version = list_version or str(meta.get("resourceVersion") or "")
            items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
            token = str(meta.get("continue") or "")
            if not token:
                break
        for item in items:
            # Built-in lists omit each item's kind; cached objects always carry theirs.
            item.setdefault("kind", self.resource.kind)
            item.setdefault("apiVersion", self.resource.api_version)
        changes = self.store.replace(items, list_version)
        self.resource_version = list_version
        self.stats.lists += 1
        self._listed_at = time.monotonic()
        self._last_seen = self._listed_at
        log.debug("%s: listed %d objects at %s (%d changes)", self, len(items), list_version, len(changes))
        for change in changes:
            self._emit(change)
        self.synced.set()

    async def _watch(self) -> bool:
        """One watch stream; True when it was healthy (it delivered something or ran its course)."""
        settings = self.settings
        timeout = settings.timeoutSeconds
        if settings.resyncSeconds:
            remaining = settings.resyncSeconds - (time.monotonic() - self._listed_at)
            timeout = max(1, min(timeout, math.ceil(remaining)))
        params: Params = {
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout,
        }
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        self.stats.watches += 1
        started = time.monotonic()
        delivered = False
        stream = self.client.watch(self._path(), params, idle_timeout=settings.idleTimeoutSeconds)
        # aclosing: when an ERROR event raises out of the loop, the connection closes now, not at GC.
        async with contextlib.aclosing(stream):
            async for event in stream:
                delivered = True
                self._handle(event)
        if delivered or time.monotonic() - started >= MIN_HEALTHY_STREAM_SECONDS:
            self._last_seen = time.monotonic()
            return True
        return False

    def _handle(self, event: JsonObject) -> None:
        event_type = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if event_type == "ERROR":
            raise api_error(int(obj.get("code") or 500), obj)
        version = resource_version(obj)
        if event_type in ("ADDED", "MODIFIED"):
            self._emit(self.store.upsert(obj))
        elif event_type == "DELETED":
            self._emit(self.store.remove(obj))
        elif event_type != "BOOKMARK":
            log.debug("%s: ignoring watch event of type %r", self, event_type)
            return
        self.stats.events += 1
        if version and not not_newer(version, self.resource_version):
            self.resource_version = version
        self._last_seen = time.monotonic()

    def _emit(self, event: ResourceEvent | None) -> None:
        if event is None:
            return
        for sink in self._sinks:
            try:
                sink(event)
            except Exception:
                # A faulty subscriber must not stop the cache from following the server.
                log.exception("%s: event sink failed on %s %s", self, event.type, event.name)

    def __repr__(self) -> str:
        return f"Informer({self.resource.plural}, namespace={self.namespace or '*'})"
