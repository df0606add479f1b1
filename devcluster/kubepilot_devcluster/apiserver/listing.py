"""List and watch: selectors, ``limit``/``continue`` pagination, and streamed watch events.

A watch resumes from ``resourceVersion`` out of the store's bounded history; a version older than
the history gets one ERROR event carrying a 410 Expired Status and the stream ends, as the real
server does. Without a version (or with "0") the stream starts with ADDED for existing objects.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kubepilot_devcluster.apiserver import selectors, tables
from kubepilot_devcluster.apiserver.cluster import Cluster
from kubepilot_devcluster.apiserver.errors import ApiError, status_body
from kubepilot_devcluster.apiserver.requests import dumps, flag, int_query, wants_table
from kubepilot_devcluster.apiserver.resources import ResourceType
from kubepilot_devcluster.apiserver.store import ResourceVersionExpired, WatchEvent

JsonObject = dict[str, Any]
Predicate = Callable[[JsonObject], bool]

BOOKMARK_INTERVAL_S = 10.0
_TICK_S = 1.0
WRITE_BATCH_MAX = 256
"""At most this many queued events go out in one write of a watch stream."""


def _predicate(request: web.Request, resource: ResourceType) -> Predicate:
    checks = [
        check
        for check in (
            selectors.label_selector(request.query.get("labelSelector")),
            selectors.field_selector(request.query.get("fieldSelector"), resource.kind),
        )
        if check is not None
    ]
    return lambda obj: all(check(obj) for check in checks)


def _encode_continue(resource_version: int, namespace: str, name: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": resource_version, "start": [namespace, name]})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(payload["rv"]), (str(payload["start"][0]), str(payload["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as error:
        raise ApiError("BadRequest", f"continue key is not valid: {error}") from error


def list_objects(
    cluster: Cluster, request: web.Request, resource: ResourceType, namespace: str | None
) -> JsonObject:
    """The List (or Table) body for a list request."""
    matches = _predicate(request, resource)
    scope = namespace if resource.namespaced else None
    list_version = cluster.store.resource_version
    token = request.query.get("continue")
    if token:
        # Later pages show the objects as they were when the first page was read, as etcd does.
        list_version, start = _decode_continue(token)
        try:
            snapshot = cluster.store.list_at(resource.storage_key, scope, list_version)
        except ResourceVersionExpired as expired:
            raise ApiError("Expired", str(expired), code=410) from expired
        objects = [
            o
            for o in snapshot
            if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start and matches(o)
        ]
    else:
        objects = [o for o in cluster.store.list(resource.storage_key, scope) if matches(o)]
    limit = int_query(request, "limit")
    list_meta: JsonObject = {"resourceVersion": str(list_version)}
    if limit and limit > 0 and len(objects) > limit:
        remaining = len(objects) - limit
        objects = objects[:limit]
        last = objects[-1]["metadata"]
        list_meta["continue"] = _encode_continue(list_version, last.get("namespace", ""), last["name"])
        list_meta["remainingItemCount"] = remaining
    objects = [cluster.present(resource, o) for o in objects]
    if wants_table(request):
        return tables.table(resource, objects, list_meta, request.query.get("includeObject", "Metadata"))
    return {
        "kind": resource.list_kind,
        "apiVersion": resource.api_version,
        "metadata": list_meta,
        "items": objects,
    }


def _event_line(
    resource: ResourceType, request: web.Request, event_type: str, obj: JsonObject, first: list[bool]
) -> bytes:
    if wants_table(request) and event_type in ("ADDED", "MODIFIED", "DELETED"):
        body = tables.table(
            resource,
            [obj],
            {"resourceVersion": obj["metadata"]["resourceVersion"]},
            request.query.get("includeObject", "Metadata"),
            with_columns=first[0],
        )
        first[0] = False
        return (dumps({"type": event_type, "object": body}) + "\n").encode()
    return (dumps({"type": event_type, "object": obj}) + "\n").encode()


def _filtered_type(event_type: str, matches_now: bool, matched_before: bool) -> str | None:
    """What a selector-filtered watch sees: objects entering the selection are ADDED, leaving DELETED."""
    if event_type != "MODIFIED":
        return event_type if matches_now else None
    if matches_now:
        return "MODIFIED" if matched_before else "ADDED"
    return "DELETED" if matched_before else None


def _bookmark(resource: ResourceType, resource_version: int, initial_end: bool = False) -> bytes:
    metadata: JsonObject = {"resourceVersion": str(resource_version)}
    if initial_end:
        # Marks the end of sendInitialEvents (the watch-list protocol client-go and kubectl wait use).
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    body = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}
    return (dumps({"type": "BOOKMARK", "object": body}) + "\n").encode()


def _watch_line(
    cluster: Cluster,
    request: web.Request,
    resource: ResourceType,
    matches: Predicate,
    event: WatchEvent,
    first: list[bool],
) -> bytes | None:
    """The line a watcher sends for ``event``, or None when its selectors filter the event out."""
    event_type = _filtered_type(
        event.type, matches(event.obj), event.previous is not None and matches(event.previous)
    )
    if event_type is None:
        return None
    if wants_table(request):
        return _event_line(resource, request, event_type, cluster.present(resource, event.obj), first)
    key = (event_type, resource.api_version)
    return event.encoded.get(key) or event.encoded.setdefault(
        key, _event_line(resource, request, event_type, cluster.present(resource, event.obj), first)
    )


async def watch(
    cluster: Cluster, request: web.Request, resource: ResourceType, namespace: str | None
) -> web.StreamResponse:
    """Stream watch events until the timeout, a dropped stream, or the client going away."""
    matches = _predicate(request, resource)
    scope = namespace if resource.namespaced else None
    version_text = request.query.get("resourceVersion", "")
    timeout = int_query(request, "timeoutSeconds")
    bookmarks = flag(request, "allowWatchBookmarks")
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    first = [True]
    initial: list[JsonObject] = []
    send_initial = flag(request, "sendInitialEvents")
    try:
        since = None if version_text in ("", "0") or send_initial else int(version_text)
    except ValueError:
        since = None
    try:
        if since is None:
            initial = [o for o in cluster.store.list(resource.storage_key, scope) if matches(o)]
        initial_version = cluster.store.resource_version
        watcher = cluster.store.subscribe(resource.storage_key, scope, since)
    except ResourceVersionExpired as expired:
        gone = status_body(410, "Expired", str(expired))
        await response.write((dumps({"type": "ERROR", "object": gone}) + "\n").encode())
        await response.write_eof()
        return response
    deadline = time.monotonic() + timeout if timeout else None
    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL_S
    try:
        for start in range(0, len(initial), WRITE_BATCH_MAX):
            await response.write(
                b"".join(
                    _event_line(resource, request, "ADDED", cluster.present(resource, obj), first)
                    for obj in initial[start : start + WRITE_BATCH_MAX]
                )
            )
        if send_initial:
            await response.write(_bookmark(resource, initial_version, initial_end=True))
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = _TICK_S if deadline is None else min(_TICK_S, deadline - now)
            try:
                # A ready event needs no timer task; wait_for only when the queue is empty.
                event = (
                    watcher.queue.get_nowait()
                    if not watcher.queue.empty()
                    else await asyncio.wait_for(watcher.queue.get(), timeout=wait)
                )
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                if bookmarks and time.monotonic() >= next_bookmark:
                    next_bookmark = time.monotonic() + BOOKMARK_INTERVAL_S
                    await response.write(_bookmark(resource, cluster.store.resource_version))
                continue
            # Every event already queued goes out in one write (one chunk, one send): a burst of
            # writes costs one syscall per watcher, not one per event. The lines are the same bytes
            # in the same order; only the HTTP chunk framing, which no client may rely on, differs.
            batch = [event]
            while len(batch) < WRITE_BATCH_MAX and not watcher.queue.empty():
                batch.append(watcher.queue.get_nowait())
            lines: list[bytes] = []
            closed = False
            for item in batch:
                if item is None:
                    closed = True  # dropped by fault injection or shutdown
                    break
                line = _watch_line(cluster, request, resource, matches, item, first)
                if line is not None:
                    lines.append(line)
            if lines:
                await response.write(lines[0] if len(lines) == 1 else b"".join(lines))
            if closed:
                break
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        cluster.store.unsubscribe(watcher)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
