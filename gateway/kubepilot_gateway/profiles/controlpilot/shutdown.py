"""ControlPilot's shutdown schedule (CP-43 … CP-45) as the operator's schedule ConfigMap.

ControlPilot powers its machine off at the scheduled time. A cluster has no such switch; the
operator instead stops every running ServiceInstance when the time in its schedule ConfigMap
(``kubepilot-schedule`` in the operator's namespace) has come, and records ``executedAt`` so it
does so once (``kubepilot_operator.reconcile.schedule``). This module writes and reads that
ConfigMap: ``shutdownAt`` is an RFC 3339 UTC time, an empty one cancels. The pure functions
translate; ``ScheduleStore`` talks to the API server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubepilot_gateway.kube import CONFIGMAPS, AlreadyExists, KubeClient, NotFound

JsonObject = dict[str, Any]

SHUTDOWN_AT_KEY = "shutdownAt"
EXECUTED_AT_KEY = "executedAt"
"""The keys the operator reads and writes (``reconcile/schedule.py``)."""
DEFAULT_CONFIGMAP = "kubepilot-schedule"
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
INVALID_UNIT = "Invalid unit. Must be: seconds, minutes, hours, days"
"""ControlPilot's text (seed-api-inventory §6.1)."""
MAX_DELAY_SECONDS = 366 * 86400
TOO_FAR = "Shutdown can be scheduled at most 366 days ahead"
"""Ours: a bound so a huge value is a 400, not an overflow."""
STATUS_TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
MANAGED_LABELS = {"app.kubernetes.io/part-of": "kubepilot", "app.kubernetes.io/component": "schedule"}
MERGE_PATCH = "application/merge-patch+json"


class ScheduleError(ValueError):
    """A request ControlPilot answers with 400 and this text."""


def delay_seconds(value: int, unit: str) -> int:
    """``value`` ``unit`` in seconds; ``ScheduleError`` for an unknown unit or one too far away."""
    factor = UNIT_SECONDS.get(unit)
    if factor is None:
        raise ScheduleError(INVALID_UNIT)
    seconds = value * factor
    if seconds > MAX_DELAY_SECONDS:
        raise ScheduleError(TOO_FAR)
    return seconds


def format_rfc3339(moment: datetime) -> str:
    """``2026-01-02T03:04:05Z``: whole seconds, UTC, the form the operator parses."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> datetime | None:
    """The time in ``shutdownAt`` (naive means UTC), None when it is not one (as the operator reads it)."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def shutdown_at(now: datetime, seconds: int) -> str:
    return format_rfc3339(now + timedelta(seconds=seconds))


def scheduled_message(value: int, unit: str) -> JsonObject:
    return {"status": "scheduled", "message": f"Shutdown scheduled in {value} {unit}"}


def cancelled_message() -> JsonObject:
    return {"status": "cancelled", "message": "Shutdown cancelled"}


def status_body(data: JsonObject | None, now: datetime) -> JsonObject:
    """CP-45 from the ConfigMap's ``data``: pending only while the time is ahead and not yet carried out."""
    data = data or {}
    wanted = str(data.get(SHUTDOWN_AT_KEY) or "").strip()
    due = parse_rfc3339(wanted) if wanted else None
    if due is None or data.get(EXECUTED_AT_KEY) == wanted or due <= now:
        return {"scheduled": False, "time_remaining": None, "shutdown_time": None}
    return {
        "scheduled": True,
        "time_remaining": int((due - now).total_seconds()),
        "shutdown_time": due.astimezone(UTC).strftime(STATUS_TIME_FORMAT),
    }


@dataclass
class ScheduleStore:
    """The schedule ConfigMap ``name`` in ``namespace``."""

    client: KubeClient
    namespace: str
    name: str = DEFAULT_CONFIGMAP

    async def read(self) -> JsonObject | None:
        """Its ``data``; None when there is no ConfigMap."""
        try:
            config = await self.client.request("GET", CONFIGMAPS.path(self.namespace, self.name))
        except NotFound:
            return None
        data = config.get("data")
        return dict(data) if isinstance(data, dict) else {}

    async def write(self, shutdown_at: str) -> None:
        """Set ``shutdownAt`` (empty cancels), creating the ConfigMap when there is none.

        A merge patch of the one key: the API server applies it atomically, so it never undoes
        the operator's ``executedAt`` or another key written meanwhile. Either race (created
        meanwhile, deleted meanwhile) is settled by trying the other call once more.
        """
        patch = {"data": {SHUTDOWN_AT_KEY: shutdown_at}}
        path = CONFIGMAPS.path(self.namespace, self.name)
        for _ in range(3):
            try:
                await self.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
                return
            except NotFound:
                if not shutdown_at:
                    return  # nothing scheduled, nothing to cancel
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": MANAGED_LABELS},
                "data": {SHUTDOWN_AT_KEY: shutdown_at},
            }
            try:
                await self.client.request("POST", CONFIGMAPS.path(self.namespace), body=body)
                return
            except AlreadyExists:
                continue
        # Created and deleted under us three times over: report it like any failed write.
        raise AlreadyExists(409, "AlreadyExists", f"configmaps {self.name!r} kept changing; try again")
