"""Which RBAC grant a request needs: (API group, resource[/subresource], verb) from its method and path.

The client records every grant it used, and the gateway tests check each against the gateway's
RBAC table, so a new call the table lacks fails the test that made it instead of a user's cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Grant = tuple[str, str, str]
"""(API group, resource or resource/subresource, verb); the core group is ''."""

_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def grant_for(method: str, path: str, params: Mapping[str, Any] | None = None) -> Grant | None:
    """The grant ``method path`` needs; None for a path that is not a resource (``/version``)."""
    parts = [part for part in path.split("?")[0].strip("/").split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]  # a namespaced resource: namespaces/<ns>/<resource>/...
    if not rest:
        return None
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    method = method.upper()
    if method == "GET":
        watching = str((params or {}).get("watch", "")).lower() in ("1", "true")
        verb = "watch" if watching else ("get" if named else "list")
    else:
        verb = _VERBS.get(method, method.lower())
    return group, resource, verb
