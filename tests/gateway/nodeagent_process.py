"""A real node agent process for the gateway's telemetry tests (ControlPilot, OneTrainer)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_devcluster.testing import free_port

JsonObject = dict[str, Any]


class Agent:
    """The agent's URL and the one disk path it reports."""

    def __init__(self, url: str, disk: Path) -> None:
        self.url = url
        self.disk = disk

    def snapshot(self) -> JsonObject:
        answer: JsonObject = httpx.get(self.url + "/v1/snapshot", timeout=5).json()
        return answer


@contextlib.contextmanager
def running_agent(folder: Path) -> Iterator[Agent]:
    """``kubepilot_workers.nodeagent`` on a free loopback port, reporting ``folder`` as its disk."""
    port = free_port()
    config = folder / "config.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "diskPaths": [str(folder)]}))
    command = [sys.executable, "-m", "kubepilot_workers.nodeagent", "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the node agent did not come up"
            time.sleep(0.05)
        yield Agent(url, folder)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One node agent process for the module, reporting one disk path of its own."""
    with running_agent(tmp_path_factory.mktemp("nodeagent")) as started:
        yield started
