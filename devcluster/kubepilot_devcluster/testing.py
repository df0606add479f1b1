"""Test helpers: run a devcluster subprocess on a free loopback port, plus pytest fixtures.

Any test folder can use the fixtures by re-exporting them from its ``conftest.py``::

    from kubepilot_devcluster.testing import devcluster, kube_api, namespace  # noqa: F401

``devcluster`` (session) is a running server (controllers included when installed); ``namespace``
is a fresh namespace per test, deleted afterwards; ``kube_api`` is a configured
``kubernetes.client.ApiClient``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

JsonObject = dict[str, Any]

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevCluster:
    """A devcluster server process; ``restart()`` keeps its port and data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, controllers: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.controllers = controllers
        self.process: subprocess.Popen[bytes] | None = None
        self._log = data_dir / "devcluster.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def start(self) -> DevCluster:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "kubepilot_devcluster",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if not self.controllers:
            command.append("--no-controllers")
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"devcluster exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/version", timeout=1) as response:
                    if response.status == 200 and self.kubeconfig.exists():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"devcluster did not answer /version within {START_TIMEOUT_S}s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL after a bounded wait)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: an unclean stop, for persistence tests."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def restart(self, clean: bool = True) -> None:
        """Stop (SIGTERM, or SIGKILL when ``clean`` is False) and start again on the same port and data."""
        if clean:
            self.stop()
        else:
            self.kill()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    # -- admin endpoints (fault injection) -------------------------------------------------------

    def admin(self, method: str, action: str, body: JsonObject | None = None) -> JsonObject:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/_devcluster/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: JsonObject = json.loads(response.read())
            return result

    def inject_fault(self, mode: str, count: int = 1, verb: str = "", resource: str = "") -> None:
        """Fail the next ``count`` requests matching verb/resource with 409/410/429/500 or ``reset``."""
        self.admin("POST", "faults", {"mode": mode, "count": count, "verb": verb, "resource": resource})

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def drop_watches(self) -> int:
        return int(self.admin("POST", "drop-watches")["dropped"])

    def compact(self) -> int:
        """Forget the watch history: watches from older resourceVersions then get 410 Gone."""
        return int(self.admin("POST", "compact")["resourceVersion"])


@contextlib.contextmanager
def running_devcluster(data_dir: Path | None = None, controllers: bool = True) -> Iterator[DevCluster]:
    """A started devcluster, stopped on exit (its temp data dir removed if it made one)."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="devcluster-")))
        cluster = DevCluster(data_dir, controllers=controllers).start()
        try:
            yield cluster
        finally:
            cluster.stop()


def _controllers_wanted() -> bool:
    return os.environ.get("KUBEPILOT_DEVCLUSTER_CONTROLLERS", "1") != "0"


@pytest.fixture(scope="session")
def devcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """One devcluster for the test session (set KUBEPILOT_DEVCLUSTER_CONTROLLERS=0 for API only)."""
    with running_devcluster(
        tmp_path_factory.mktemp("devcluster"), controllers=_controllers_wanted()
    ) as cluster:
        yield cluster


@pytest.fixture
def kube_api(devcluster: DevCluster) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` talking to the devcluster."""
    from kubernetes import client

    # The kubeconfig names this URL and a token the devcluster does not check.
    configuration = client.Configuration(host=devcluster.url)
    api = client.ApiClient(configuration)
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def namespace(devcluster: DevCluster, kube_api: Any) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)
