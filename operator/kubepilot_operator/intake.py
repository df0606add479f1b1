"""The progress intake (DESIGN §4): workers POST reports here; replies carry pending actions.

Runs in the operator process on its own port, beside ``/metrics`` and ``/healthz``. A report is
checked (size, token, schema), stored as the workload's latest, and its object queued for a
status pass at most once per coalescing interval (a final report at once). Only the leader
writes status, so a replica that is not leading answers 503 and the worker retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from pydantic import ValidationError

from kubepilot_api.workers.progress import (
    MAX_REPORT_BYTES,
    REPORT_PATH_TEMPLATE,
    TOKEN_SCHEME,
    IntakeReply,
    parse_report,
)
from kubepilot_operator import tokens
from kubepilot_operator.cache import ObjectCache
from kubepilot_operator.metrics import Metrics
from kubepilot_operator.reconcile import actions
from kubepilot_operator.reports import ReportStore
from kubepilot_operator.workqueue import WorkKey

log = logging.getLogger(__name__)

KIND_BY_PLURAL = {
    "modelpulls": "ModelPull",
    "trainingruns": "TrainingRun",
    "generationjobs": "GenerationJob",
    "serviceinstances": "ServiceInstance",
}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Intake:
    """The aiohttp application of the intake."""

    def __init__(
        self,
        *,
        cache: ObjectCache,
        reports: ReportStore,
        metrics: Metrics,
        key: bytes,
        interval: float,
        enqueue: Callable[[WorkKey, float, bool], None],
        is_leader: Callable[[], bool],
    ) -> None:
        self.cache = cache
        self.reports = reports
        self.metrics = metrics
        self.key = key
        self.interval = interval
        self.enqueue = enqueue
        self.is_leader = is_leader
        self.app = web.Application(client_max_size=MAX_REPORT_BYTES)
        route = REPORT_PATH_TEMPLATE.replace("{namespace}", "{namespace}").replace("{plural}", "{plural}")
        self.app.router.add_post(route, self.report)
        self.app.router.add_get("/metrics", self.metrics_page)
        self.app.router.add_get("/healthz", self.health)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "leader": self.is_leader(), "cached": self.cache.size()})

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), content_type="text/plain", charset="utf-8")

    async def report(self, request: web.Request) -> web.Response:
        plural = request.match_info["plural"]
        kind = KIND_BY_PLURAL.get(plural)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        result = "rejected"
        try:
            if kind is None:
                return _error(404, f"unknown workload kind {plural!r}")
            if request.content_length is not None and request.content_length > MAX_REPORT_BYTES:
                return _error(413, f"report larger than {MAX_REPORT_BYTES} bytes")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _error(413, f"report larger than {MAX_REPORT_BYTES} bytes")
            if len(body) > MAX_REPORT_BYTES:
                return _error(413, f"report larger than {MAX_REPORT_BYTES} bytes")
            cr = self.cache.get(plural, namespace, name)
            if cr is None:
                return _error(404, f"no {kind} {namespace}/{name}")
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            if scheme != TOKEN_SCHEME or not tokens.matches(self.key, tokens.subject(cr), presented):
                return _error(401, "missing or wrong token")
            try:
                report = parse_report(body)
            except (ValidationError, ValueError) as error:
                return _error(422, f"invalid report: {str(error).splitlines()[0]}")
            if report.kind != kind:
                return _error(422, f"a {report.kind} report sent for a {kind}")
            if not self.is_leader():
                return _error(503, "this operator replica is not the leader; retry")
            key = WorkKey(plural, namespace, name)
            accepted = self.reports.put(key, report, tokens.subject(cr))
            self.enqueue(key, self.interval, report.final)
            result = "accepted" if accepted else "stale"
            pending = actions.pending(cr, self.reports.acked_nonces(key))
            reply = IntakeReply(accepted=accepted, pendingActions=pending)
            return web.json_response(reply.to_dict())
        finally:
            self.metrics.intake_reports.labels(kind or "unknown", result).inc()
