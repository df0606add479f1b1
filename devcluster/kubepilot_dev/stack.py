"""The local stack, started in dependency order and stopped in reverse.

devcluster → CRDs (generated from the API package, created or updated) → operator (ready when it
leads) → node agent → gateway (ready when its cache is synced). Any child that dies stops the
whole stack with its log tail, so a broken stack never looks like a working one.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_api.crdgen import crd_manifest
from kubepilot_api.registry import KINDS
from kubepilot_dev import demo
from kubepilot_dev.children import Child, ChildFailed
from kubepilot_dev.layout import (
    Layout,
    Ports,
    gateway_settings,
    node_agent_config,
    operator_settings,
    write_json,
    write_yaml,
)

READY_TIMEOUT_SECONDS = 120.0
GATEWAY_LINE = "kubepilot gateway: "


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except (urllib.error.URLError, OSError):
        return False


def http_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The JSON at ``url``, or None while it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


@dataclass
class Stack:
    layout: Layout
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    hf_endpoint: str = ""
    native: bool = True
    """Each profile also on its own port (ControlPilot 7878, ...); off: only the combined port."""
    controlpilot_ui: str = ""
    """A copy of ControlPilot's static web UI folder to serve at its root; empty: the API only."""
    demo_models: bool = True
    """Build the tiny demo models (``demo``) and point the operator and the image profiles at them."""
    children: list[Child] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.layout.kubeconfig)}

    def _start(self, name: str, args: list[str]) -> Child:
        child = Child.kubepilot(name, args, self.layout.logs, self.env).start()
        self.children.append(child)
        return child

    def start(self) -> None:
        """Bring every component up; raises ``ChildFailed`` (after stopping what started)."""
        self.layout.create()
        try:
            if self.demo_models:
                demo.build(self.layout.volume("models"), self.layout.logs / "demo-models.log")
            self._start_cluster()
            self._apply_crds()
            self._start_operator()
            self._start_node_agent()
            self._start_gateway()
        except BaseException:
            self.stop()
            raise

    def _start_cluster(self) -> None:
        args = ["devcluster", "--host", self.host, "--port", str(self.ports.cluster)]
        cluster = self._start("devcluster", [*args, "--data-dir", str(self.layout.cluster)])
        cluster.wait_until(self._api_answers, READY_TIMEOUT_SECONDS, "the API server answering")

    def _api(self) -> client.ApiClient:
        api: client.ApiClient = config.new_client_from_config(str(self.layout.kubeconfig))  # type: ignore[no-untyped-call]
        return api

    def _api_answers(self) -> bool:
        if not self.layout.kubeconfig.is_file():
            return False
        try:
            with self._api() as api:
                client.CoreV1Api(api).list_namespace(limit=1, _request_timeout=2)
        except Exception:
            # Not up yet (connection refused, a kubeconfig being written): keep polling.
            return False
        return True

    def _apply_crds(self) -> None:
        """Create our CRDs, or replace them when this version of kubepilot changed them."""
        with self._api() as api:
            # Manifests are plain dicts (generated from the API package); the client takes them as
            # they are, though its stubs ask for model objects.
            extensions: Any = client.ApiextensionsV1Api(api)
            for kind in KINDS():
                manifest = crd_manifest(kind)
                name = manifest["metadata"]["name"]
                try:
                    extensions.create_custom_resource_definition(manifest)
                except client.ApiException as error:
                    if error.status != 409:
                        raise
                    current = extensions.read_custom_resource_definition(name)
                    manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
                    extensions.replace_custom_resource_definition(name, manifest)
            custom = client.CustomObjectsApi(api)
            deadline = time.monotonic() + 30
            for kind in KINDS():
                plural = kind.crd.plural
                while True:
                    try:
                        custom.list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
                        break
                    except client.ApiException:
                        if time.monotonic() > deadline:
                            raise ChildFailed(f"the {plural} CRD is not served") from None
                        time.sleep(0.1)

    def _start_operator(self) -> None:
        settings = write_yaml(
            self.layout.settings / "operator.yaml",
            operator_settings(
                self.layout, self.ports, self.host, self.hf_endpoint, demo_models=self.demo_models
            ),
        )
        operator = self._start("operator", ["operator", "--settings", str(settings)])
        health = f"http://{self.host}:{self.ports.intake}/healthz"
        operator.wait_until(
            lambda: bool((http_json(health) or {}).get("leader")), READY_TIMEOUT_SECONDS, "leading"
        )

    def _start_node_agent(self) -> None:
        agent_config = write_json(
            self.layout.settings / "node-agent.json", node_agent_config(self.layout, self.ports, self.host)
        )
        agent = self._start("node-agent", ["node-agent", "--config", str(agent_config)])
        health = f"http://{self.host}:{self.ports.node_agent}/healthz"
        agent.wait_until(lambda: http_ok(health), READY_TIMEOUT_SECONDS, "serving")

    def _start_gateway(self) -> None:
        settings = write_yaml(
            self.layout.settings / "gateway.yaml",
            gateway_settings(
                self.layout,
                self.ports,
                self.host,
                native=self.native,
                controlpilot_ui=self.controlpilot_ui,
                demo_models=self.demo_models,
            ),
        )
        gateway = self._start("gateway", ["gateway", "--settings", str(settings)])
        health = f"http://{self.host}:{self.ports.gateway}/healthz"
        gateway.wait_until(
            lambda: bool((http_json(health) or {}).get("synced")), READY_TIMEOUT_SECONDS, "its cache synced"
        )
        # The gateway prints one line per listener before it reports itself synced.
        lines = gateway.output().splitlines()
        self.urls = [line.split(GATEWAY_LINE, 1)[1] for line in lines if line.startswith(GATEWAY_LINE)]

    def failed_child(self) -> Child | None:
        """The first child that has exited, if any."""
        return next((c for c in self.children if c.exit_code() is not None), None)

    def wait(self, stop: threading.Event, poll: float = 0.5) -> Child | None:
        """Until ``stop`` is set (None) or a child exits (that child)."""
        while not stop.wait(poll):
            failed = self.failed_child()
            if failed is not None:
                return failed
        return None

    def stop(self) -> None:
        """Stop every child, the last started first (the gateway before the cluster it watches)."""
        while self.children:
            self.children.pop().stop()
