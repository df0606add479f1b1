"""Timestamps in the RFC 3339 form Kubernetes uses (second precision, ``Z`` suffix)."""

from __future__ import annotations

import datetime


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


def age(text: str | None) -> str:
    """A kubectl-style short age: ``5s``, ``3m``, ``2h``, ``4d``."""
    started = parse_rfc3339(text or "")
    if started is None:
        return "<unknown>"
    seconds = int((datetime.datetime.now(datetime.UTC) - started).total_seconds())
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
