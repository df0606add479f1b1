"""Best-effort core/v1 Events (what ``kubectl describe`` shows); failing to record one never stops a loop."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from .client import EVENTS, TRANSIENT_ERRORS, KubeClient
from .objects import now_iso

JsonObject = dict[str, Any]


def event_body(obj: JsonObject, reason: str, message: str, warning: bool, component: str) -> JsonObject:
    """An Event about ``obj`` (which needs apiVersion, kind, metadata.name/namespace/uid)."""
    meta = obj.get("metadata") or {}
    now = now_iso()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name')}.{secrets.token_hex(8)}",
            "namespace": meta.get("namespace"),
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def record_event(
    client: KubeClient, obj: JsonObject, reason: str, message: str, *, warning: bool = False, component: str
) -> None:
    """Create the Event, ignoring any failure: events are diagnostics, not state."""
    if not (obj.get("metadata") or {}).get("namespace"):
        return
    # RuntimeError: the client session closed under a late event while the control plane stops.
    with contextlib.suppress(RuntimeError, *TRANSIENT_ERRORS):
        await client.create(
            EVENTS,
            (obj.get("metadata") or {}).get("namespace"),
            event_body(obj, reason, message, warning, component),
        )
