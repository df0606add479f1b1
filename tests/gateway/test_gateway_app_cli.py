"""``kubepilot gateway`` as a process against the devcluster: it syncs, serves, and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from kubepilot_devcluster.testing import DevCluster, free_port
from kubepilot_gateway.profiles import profiles

ROOT = Path(__file__).resolve().parents[2]

Start = Callable[..., "subprocess.Popen[str]"]


def gateway_env(devcluster: DevCluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBEPILOT_GATEWAY", "KUBERNETES_"))}
    env["KUBECONFIG"] = str(devcluster.kubeconfig)
    return env


@pytest.fixture
def start_gateway(devcluster: DevCluster, crds: None, tmp_path: Path) -> Iterator[Start]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubepilot_gateway.cli", *args],
            cwd=ROOT,
            env=gateway_env(devcluster),
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"gateway-{len(started)}.log").open("w"),
            text=True,
            start_new_session=True,  # its own process group, to check nothing is left behind
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_healthy(url: str, process: subprocess.Popen[str], within: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the gateway exited with {process.returncode}"
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {within}s")


def group_is_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_gateway_serves_healthz_synced_then_exits_0_on_sigterm_leaving_nothing(
    start_gateway: Start, namespace: str
) -> None:
    port = free_port()
    process = start_gateway("--no-native", "--combined-port", str(port), "--namespace", namespace)
    health = wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
    assert health == {"ok": True, "synced": True, "profiles": [p.name for p in profiles()]}
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "kubepilot_gateway_cache_synced 1.0" in metrics
    assert 'kubepilot_gateway_cache_objects{kind="ModelPull"} 0.0' in metrics

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert process.stdout is not None
    lines = process.stdout.read().splitlines()
    assert lines[0].startswith(f"kubepilot gateway: combined: http://127.0.0.1:{port}/ (")
    assert len(lines) == 1  # one line per listener: --no-native leaves the combined one
    assert group_is_gone(process.pid)


def test_gateway_exits_1_at_once_when_its_port_is_taken(start_gateway: Start) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = start_gateway("--no-native", "--combined-port", str(port))
        assert process.wait(timeout=20) == 1
