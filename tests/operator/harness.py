"""The operator end to end: a devcluster, our CRDs, host-folder storage and `kubepilot operator`.

The operator runs as its own process (``kubepilot operator``), exactly as a user starts it; the
workers run as pods of the devcluster's process kubelet. Objects are created with the official
Python client; assertions read what kubectl would show (status, Events, children).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster, free_port

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubepilot.io", "v1alpha1"
JsonObject = dict[str, Any]


def apply_crds(api: client.ApiClient) -> None:
    """Create (or keep) our four CRDs and wait until they are served."""
    extensions = client.ApiextensionsV1Api(api)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        try:
            extensions.create_custom_resource_definition(body)
        except client.ApiException as error:
            if error.status != 409:
                raise
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, "serviceinstances")
            return
        except client.ApiException:
            time.sleep(0.1)
    raise TimeoutError("CRDs not served")


class Storage:
    """The three volumes as host folders (mount path = host path, as in the devcluster)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models = root / "models"
        self.datasets = root / "datasets"
        self.outputs = root / "outputs"
        for folder in (self.models, self.datasets, self.outputs):
            folder.mkdir(parents=True, exist_ok=True)

    def settings(self) -> JsonObject:
        def volume(path: Path) -> JsonObject:
            return {"hostPath": str(path), "mountPath": str(path), "operatorPath": str(path)}

        return {
            "models": volume(self.models),
            "datasets": volume(self.datasets),
            "outputs": volume(self.outputs),
        }


class OperatorProcess:
    """``kubepilot operator`` against a devcluster, with its intake on a free loopback port."""

    def __init__(
        self,
        cluster: DevCluster,
        storage: Storage,
        workdir: Path,
        extra: JsonObject | None = None,
        record_api_use: Path | None = None,
    ) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.intake_port = free_port()
        self.health_port = free_port()
        self.record_api_use = record_api_use
        settings: JsonObject = {
            "operatorNamespace": "default",
            "storage": storage.settings(),
            "intake": {"host": "127.0.0.1", "port": self.intake_port, "statusWriteIntervalSeconds": 0.5},
            "healthPort": self.health_port,
            "leaderElection": {"leaseDurationSeconds": 4, "renewIntervalSeconds": 1},
            # The devcluster's pods share the host's network: rank 0 cannot listen on the port its
            # Service answers on, so the Service forwards 29400 to 29500.
            "rendezvous": {"servicePort": 29400, "listenPort": 29500},
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(settings.get(key), dict):
                settings[key] = {**settings[key], **value}
            else:
                settings[key] = value
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings_path = workdir / f"operator-{self.intake_port}.yaml"
        self.settings_path.write_text(yaml.safe_dump(settings))
        self.log_path = workdir / f"operator-{self.intake_port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    def start(self, wait: bool = True) -> OperatorProcess:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        if self.record_api_use is not None:
            env["KUBEPILOT_OPERATOR_RECORD_API_USE"] = str(self.record_api_use)
        command = [
            sys.executable,
            "-m",
            "kubepilot_api.cli",
            "operator",
            "--settings",
            str(self.settings_path),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"operator exited {self.process.returncode}: {self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response,
            ):
                if json.loads(response.read()).get("leader"):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"operator not leading within {timeout}s: {self.log_tail()}")

    def health(self) -> JsonObject:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
            result: JsonObject = json.loads(response.read())
            return result

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_operator(*args: Any, **kwargs: Any) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(*args, **kwargs).start()
    try:
        yield operator
    finally:
        operator.stop()


class Objects:
    """Create, read and wait on our CRs and their children in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)

    def create(self, plural: str, kind: str, name: str, spec: JsonObject, **meta: Any) -> JsonObject:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace, **meta},
            "spec": spec,
        }
        return cast(
            JsonObject,
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body),
        )

    def get(self, plural: str, name: str) -> JsonObject:
        return cast(
            JsonObject, self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        )

    def patch(self, plural: str, name: str, body: JsonObject) -> JsonObject:
        return cast(
            JsonObject,
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body),
        )

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def status(self, plural: str, name: str) -> JsonObject:
        return dict(self.get(plural, name).get("status") or {})

    def wait(
        self, plural: str, name: str, check: Callable[[JsonObject], bool], timeout: float = 60, what: str = ""
    ) -> JsonObject:
        deadline = time.monotonic() + timeout
        status: JsonObject = {}
        while time.monotonic() < deadline:
            try:
                status = self.status(plural, name)
            except client.ApiException as error:
                if error.status != 404:
                    raise
            if check(status):
                return status
            time.sleep(0.2)
        raise AssertionError(
            f"{plural}/{name}: {what or 'condition'} not reached in {timeout}s; status={status}"
        )

    def wait_phase(self, plural: str, name: str, *phases: str, timeout: float = 60) -> JsonObject:
        return self.wait(plural, name, lambda s: s.get("phase") in phases, timeout, f"phase in {phases}")

    def wait_gone(self, plural: str, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get(plural, name)
            except client.ApiException as error:
                if error.status == 404:
                    return
                raise
            time.sleep(0.2)
        raise AssertionError(f"{plural}/{name} still exists after {timeout}s")

    def events(self, name: str) -> list[str]:
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return [
            f"{e.reason}: {e.message}"
            for e in sorted(items, key=lambda e: str(e.metadata.creation_timestamp))
        ]

    def jobs(self) -> list[Any]:
        return list(self.batch.list_namespaced_job(self.namespace).items)

    def pods(self, selector: str = "") -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)


def condition(status: JsonObject, type_: str) -> JsonObject:
    for item in status.get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


@pytest.fixture(scope="session")
def crds(devcluster: DevCluster) -> None:
    """Our four CRDs on the session's devcluster (conftests import this fixture)."""
    api = client.ApiClient(client.Configuration(host=devcluster.url))
    try:
        apply_crds(api)
    finally:
        api.close()  # type: ignore[no-untyped-call]


TINY_MODEL = "diffusers/tiny-sd"
"""The tiny Stable Diffusion folder the ``tiny_sd`` fixture builds, relative to the models volume."""


def tiny_lora_run(dataset: str, output: str, max_steps: int, **extra: Any) -> JsonObject:
    """A built-in LoRA TrainingRun spec on the tiny model, small enough for a CPU."""
    return {
        "trainer": "kubepilot-lora",
        "baseModel": {"path": TINY_MODEL},
        "dataset": {"path": dataset},
        "output": {"name": output},
        "hyperparameters": {"resolution": 64, "maxSteps": max_steps, "rank": 4, "alpha": 4},
        **extra,
    }


def tiny_txt2img(**extra: Any) -> JsonObject:
    """A 64x64 txt2img GenerationJob spec on the tiny model."""
    return {"type": "txt2img", "model": TINY_MODEL, "prompt": "a cat", "width": 64, "height": 64, **extra}


def tiny_generator(objects: Objects, name: str, **extra: Any) -> None:
    """A kubepilot-generator ServiceInstance serving the tiny model."""
    spec = {"serviceType": "kubepilot-generator", "models": [TINY_MODEL], **extra}
    objects.create("serviceinstances", "ServiceInstance", name, spec)
