"""The node agent's HTTP endpoints: ``/metrics`` (Prometheus), ``/v1/snapshot`` (JSON), ``/healthz``."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from kubepilot_workers.nodeagent.collector import NodeCollector
from kubepilot_workers.nodeagent.metrics import NodeMetricsCollector

log = logging.getLogger(__name__)


class NodeAgentServer:
    """A threaded HTTP server over one :class:`NodeCollector`."""

    def __init__(self, collector: NodeCollector, host: str, port: int) -> None:
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeMetricsCollector(collector))
        agent = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "kubepilot-node-agent"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(agent.registry))
                elif path == "/v1/snapshot":
                    body = agent.collector.snapshot().model_dump_json().encode()
                    self._send(200, "application/json", body)
                elif path == "/healthz":
                    self._send(200, "text/plain; charset=utf-8", b"ok\n")
                else:
                    self._send(404, "application/json", b'{"error":"not found"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> NodeAgentServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="node-agent-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.collector.close()
