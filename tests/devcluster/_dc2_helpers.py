"""Helpers for the controller and kubelet tests: clients from the devcluster fixture, polling, pod specs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kubernetes import client, config

T = TypeVar("T")
JsonObject = dict[str, Any]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
IMAGE = "kubepilot/worker:test"


class DevCluster(Protocol):
    url: str
    kubeconfig: Any


class Clients:
    """The kubernetes Python client APIs the tests use, bound to the devcluster."""

    def __init__(self, devcluster: DevCluster) -> None:
        self.api = config.new_client_from_config(str(devcluster.kubeconfig))  # type: ignore[no-untyped-call]
        # Typed as Any: the tests pass plain dict bodies, which the client accepts at run time.
        self.core: Any = client.CoreV1Api(self.api)
        self.batch: Any = client.BatchV1Api(self.api)
        self.apps: Any = client.AppsV1Api(self.api)
        self.discovery: Any = client.DiscoveryV1Api(self.api)

    def read(self, method: Callable[..., Any], *args: Any) -> JsonObject | None:
        """Call a ``read_*`` method and return the raw JSON object, or None on 404."""
        try:
            response = method(*args, _preload_content=False)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        loaded: JsonObject = json.loads(response.data)
        return loaded

    def pod(self, namespace: str, name: str) -> JsonObject | None:
        return self.read(self.core.read_namespaced_pod, name, namespace)

    def event_reasons(self, namespace: str, name: str) -> list[str]:
        """Reasons of the Events about the object ``name``, oldest first."""
        response: Any = self.core.list_namespaced_event(namespace, _preload_content=False)
        events = [e for e in json.loads(response.data)["items"] if e["involvedObject"].get("name") == name]
        events.sort(key=lambda e: str(e.get("firstTimestamp")))
        return [str(e["reason"]) for e in events]

    def pods(self, namespace: str, selector: str = "") -> list[JsonObject]:
        response: Any = self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
        items: list[JsonObject] = json.loads(response.data)["items"]
        return items


def wait_until(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def kubectl(devcluster: DevCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(devcluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def python_container(name: str, script: str, **extra: Any) -> JsonObject:
    """A container running a Python snippet with the venv's interpreter."""
    return {"name": name, "image": IMAGE, "command": ["python", "-c", script], **extra}


def pod_body(name: str, containers: list[JsonObject], **spec: Any) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers, **spec},
    }


def container_status(pod: JsonObject | None, name: str = "main") -> JsonObject:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            found: JsonObject = status
            return found
    return {}


def condition(obj: JsonObject | None, kind: str) -> JsonObject:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            found: JsonObject = cond
            return found
    return {}


def phase(pod: JsonObject | None) -> str:
    return str(((pod or {}).get("status") or {}).get("phase", ""))


def wait_for_pod(
    kube: Clients, namespace: str, name: str, predicate: Callable[[JsonObject], bool], timeout: float = 20.0
) -> JsonObject:
    """The pod once ``predicate`` holds for it."""

    def check() -> JsonObject | None:
        pod = kube.pod(namespace, name)
        return pod if pod is not None and predicate(pod) else None

    return wait_until(check, timeout, f"pod {namespace}/{name}")
