"""Pod IPs, readiness probes, Endpoints/EndpointSlices and the Service proxy, with real HTTP servers."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from typing import Any

import pytest
from _dc2_helpers import (
    Clients,
    DevCluster,
    condition,
    container_status,
    pod_body,
    python_container,
    wait_for_pod,
    wait_until,
)

SERVE = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ['WHO'].encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((os.environ['POD_IP'], 8188), Handler).serve_forever()
"""


@pytest.fixture
def kube(devcluster: DevCluster) -> Clients:
    return Clients(devcluster)


def _server_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    container = python_container(
        "main",
        SERVE,
        ports=[{"name": "http", "containerPort": 8188}],
        env=[
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "WHO", "value": name},
        ],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    )
    body = pod_body(name, [container], terminationGracePeriodSeconds=2)
    body["metadata"]["labels"] = labels
    return body


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as response:
        text: str = response.read().decode()
        return text


def test_two_pods_listen_on_the_same_port_and_a_service_proxies_to_ready_ones(
    kube: Clients, namespace: str
) -> None:
    for name in ("web-a", "web-b"):
        kube.core.create_namespaced_pod(namespace, _server_pod(name, {"app": "web"}))
    for name in ("web-a", "web-b"):
        pod = wait_for_pod(kube, namespace, name, lambda p: condition(p, "Ready").get("status") == "True")
        assert container_status(pod)["ready"] is True
    ips = {name: (kube.pod(namespace, name) or {})["status"]["podIP"] for name in ("web-a", "web-b")}
    assert ips["web-a"] != ips["web-b"]
    for name, ip in ips.items():
        assert _get(f"http://{ip}:8188/") == name

    service = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 9000, "targetPort": "http"}]},
    }
    kube.core.create_namespaced_service(namespace, service)
    cluster_ip = wait_until(
        lambda: (
            (s := kube.read(kube.core.read_namespaced_service, "web", namespace))
            and s["spec"].get("clusterIP", "").startswith("127.2.")
            and s["spec"]["clusterIP"]
        ),
        what="a 127.2.x.x cluster IP",
    )

    def endpoint_ips() -> set[str]:
        endpoints = kube.read(kube.core.read_namespaced_endpoints, "web", namespace) or {}
        return {a["ip"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []}

    wait_until(lambda: endpoint_ips() == set(ips.values()), what="both pods in the Endpoints")
    slices = kube.discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=web", _preload_content=False
    )
    slice_ips = {a for s in json.loads(slices.data)["items"] for e in s["endpoints"] for a in e["addresses"]}
    assert slice_ips == set(ips.values())

    answers = wait_until(
        lambda: {_get(f"http://{cluster_ip}:9000/") for _ in range(4)} == {"web-a", "web-b"},
        what="the proxy to reach both pods",
    )
    assert answers

    kube.core.delete_namespaced_pod("web-a", namespace)
    wait_until(lambda: endpoint_ips() == {ips["web-b"]}, what="web-a to leave the Endpoints")
    assert {_get(f"http://{cluster_ip}:9000/") for _ in range(3)} == {"web-b"}


def test_failing_liveness_probe_restarts_the_container(kube: Clients, namespace: str) -> None:
    container = python_container(
        "main",
        "import time; time.sleep(3600)",
        livenessProbe={"tcpSocket": {"port": 8189}, "periodSeconds": 1, "failureThreshold": 1},
    )
    kube.core.create_namespaced_pod(
        namespace, pod_body("unhealthy", [container], terminationGracePeriodSeconds=1)
    )
    pod = wait_for_pod(
        kube, namespace, "unhealthy", lambda p: container_status(p).get("restartCount", 0) >= 1, timeout=30
    )
    last = container_status(pod)["lastState"]["terminated"]
    assert last["reason"] == "Error" and last["exitCode"] in (137, 143)


def test_service_without_selector_proxies_to_manually_managed_endpoints(
    kube: Clients, namespace: str
) -> None:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"host")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kube.core.create_namespaced_service(
            namespace,
            {"metadata": {"name": "external"}, "spec": {"ports": [{"port": 9100, "targetPort": 9100}]}},
        )
        kube.core.create_namespaced_endpoints(
            namespace,
            {
                "metadata": {"name": "external"},
                "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": server.server_port}]}],
            },
        )
        cluster_ip = wait_until(
            lambda: (
                (s := kube.read(kube.core.read_namespaced_service, "external", namespace))
                and s["spec"].get("clusterIP", "").startswith("127.2.")
                and s["spec"]["clusterIP"]
            ),
            what="a cluster IP",
        )

        def answer() -> str:
            try:
                return _get(f"http://{cluster_ip}:9100/")
            except OSError:
                return ""

        assert wait_until(answer, what="the proxy to reach the host process") == "host"
    finally:
        server.shutdown()
        server.server_close()


def test_startup_probe_holds_off_liveness_while_a_slow_server_starts(kube: Clients, namespace: str) -> None:
    slow = "import time\ntime.sleep(2.5)\n" + SERVE
    probe = {"tcpSocket": {"port": 8188}, "periodSeconds": 1}
    container = python_container(
        "main",
        slow,
        env=[
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "WHO", "value": "slow"},
        ],
        startupProbe=probe | {"failureThreshold": 10},
        livenessProbe=probe | {"failureThreshold": 1},
        readinessProbe=probe,
    )
    kube.core.create_namespaced_pod(namespace, pod_body("slow", [container], terminationGracePeriodSeconds=1))
    starting = wait_for_pod(
        kube, namespace, "slow", lambda p: "running" in container_status(p).get("state", {})
    )
    assert container_status(starting)["started"] is False
    ready = wait_for_pod(
        kube, namespace, "slow", lambda p: condition(p, "Ready").get("status") == "True", timeout=30
    )
    status = container_status(ready)
    assert status["started"] is True and status["restartCount"] == 0
