"""The cluster-wide scheduled stop of every service (what ControlPilot's shutdown schedule drives).

A ConfigMap in the operator's namespace (``settings.scheduleConfigMap``) holds ``shutdownAt``
(RFC 3339, UTC). When that time has come, every running ServiceInstance is stopped with reason
ScheduledShutdown, and ``executedAt`` records it so the stop happens once. The gateway (or a
person with kubectl) writes a new ``shutdownAt`` to schedule the next one; an empty one cancels.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from kubepilot_api.conditions import ConditionReason as R
from kubepilot_operator import kube
from kubepilot_operator.reconcile.context import Context
from kubepilot_operator.reconcile.serviceinstance import stop

log = logging.getLogger(__name__)
CHECK_INTERVAL_SECONDS = 5.0


def parse_rfc3339(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_schedule(ctx: Context) -> int:
    """Carry out a due shutdown; returns how many services it stopped."""
    namespace = ctx.settings.operatorNamespace
    config = ctx.api.get(kube.CONFIGMAPS, namespace, ctx.settings.scheduleConfigMap)
    data = (config or {}).get("data") or {}
    wanted = str(data.get("shutdownAt", "")).strip()
    if not wanted or data.get("executedAt") == wanted:
        return 0
    due = parse_rfc3339(wanted)
    if due is None:
        log.warning(
            "ConfigMap %s/%s: shutdownAt %r is not an RFC 3339 time",
            namespace,
            ctx.settings.scheduleConfigMap,
            wanted,
        )
        return 0
    if due > datetime.now(UTC):
        return 0
    stopped = 0
    for si in ctx.cache.all("serviceinstances"):
        if (si.get("spec") or {}).get("running") and not si["metadata"].get("deletionTimestamp"):
            stop(ctx, si, R.SCHEDULED_SHUTDOWN.value, f"stopped by the shutdown scheduled for {wanted}")
            stopped += 1
    ctx.api.patch(
        kube.CONFIGMAPS, namespace, ctx.settings.scheduleConfigMap, {"data": {"executedAt": wanted}}
    )
    log.info("scheduled shutdown %s: stopped %d services", wanted, stopped)
    return stopped
