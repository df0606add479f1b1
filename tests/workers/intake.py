"""A small intake that implements the worker progress contract exactly, for worker tests.

The operator's real intake lives in the operator package; the workers are tested against this
one so both sides meet on ``kubepilot_api.workers.progress`` (token check, size limit, reply).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import ValidationError

from kubepilot_api.workers.progress import (
    MAX_REPORT_BYTES,
    TOKEN_HEADER,
    TOKEN_SCHEME,
    IntakeReply,
    PendingAction,
    ReportBase,
    parse_report,
    report_path,
)


@dataclass
class Workload:
    """One workload the intake knows: its token, reports received and actions pending."""

    token: str
    reports: list[ReportBase] = field(default_factory=list)
    pending: list[PendingAction] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)


class ContractIntake:
    """Threaded HTTP server on 127.0.0.1 with one route per registered workload."""

    def __init__(self) -> None:
        self.workloads: dict[str, Workload] = {}
        self.lock = threading.Lock()
        self.fail_next = 0
        """Answer the next N pushes with 503, to test that failures never fail the work."""
        intake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                status, body = intake.handle(self.path, self.headers.get(TOKEN_HEADER, ""), self._body())
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _body(self) -> bytes | None:
                length = int(self.headers.get("Content-Length", "0"))
                if length > MAX_REPORT_BYTES:
                    return None
                return self.rfile.read(length)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def register(self, namespace: str, plural: str, name: str, token: str) -> str:
        """Add a workload; returns its full report URL."""
        path = report_path(namespace, plural, name)
        with self.lock:
            self.workloads[path] = Workload(token=token)
        return self.base_url + path

    def workload(self, namespace: str, plural: str, name: str) -> Workload:
        return self.workloads[report_path(namespace, plural, name)]

    def request_action(self, namespace: str, plural: str, name: str, action: PendingAction) -> None:
        with self.lock:
            self.workload(namespace, plural, name).pending.append(action)

    def handle(self, path: str, authorization: str, body: bytes | None) -> tuple[int, str]:
        with self.lock:
            workload = self.workloads.get(path)
            if workload is None:
                return 404, '{"error":"unknown workload"}'
            if authorization != f"{TOKEN_SCHEME} {workload.token}":
                workload.refused.append(401)
                return 401, '{"error":"bad token"}'
            if body is None:
                workload.refused.append(413)
                return 413, '{"error":"report too large"}'
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, '{"error":"injected failure"}'
            try:
                report = parse_report(body)
            except ValidationError as error:
                workload.refused.append(422)
                return 422, error.json()
            last = workload.reports[-1].sequence if workload.reports else -1
            accepted = report.sequence > last
            if accepted:
                workload.reports.append(report)
            acked = {(ack.name, ack.nonce) for ack in report.acks}
            workload.pending = [a for a in workload.pending if (a.name, a.nonce) not in acked]
            reply = IntakeReply(accepted=accepted, pendingActions=list(workload.pending))
            return 200, reply.model_dump_json()

    def __enter__(self) -> ContractIntake:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
