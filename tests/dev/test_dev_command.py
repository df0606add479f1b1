"""``kubepilot dev``: the whole stack from one command, stopped cleanly, its state kept for the next run.

Real processes throughout: the command starts the devcluster, the operator, the node agent and
the gateway; the test drives the gateway over HTTP and the cluster with kubectl, as a user would.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
from PIL import Image

START_TIMEOUT_SECONDS = 150


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class DevRun:
    """One ``kubepilot dev`` process whose output is collected line by line."""

    def __init__(self, data_dir: Path, ports: dict[str, int], extra: list[str]) -> None:
        self.data_dir = data_dir
        self.ports = ports
        argv = [sys.executable, "-m", "kubepilot_api.cli", "dev", "--data-dir", str(data_dir), "--no-native"]
        for flag, port in ports.items():
            argv += [f"--{flag}", str(port)]
        argv += extra
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not printed; output:\n" + "\n".join(self.lines[-60:]))

    def gateway(self, method: str, path: str) -> Any:
        url = f"http://127.0.0.1:{self.ports['gateway-port']}{path}"
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def post_json(self, path: str, body: dict[str, Any], timeout: float = 180) -> Any:
        url = f"http://127.0.0.1:{self.ports['gateway-port']}{path}"
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def page(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.ports['gateway-port']}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def kubectl(self, *args: str) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.data_dir / "cluster" / "kubeconfig")}
        return subprocess.run(
            ["kubectl", *args], env=env, capture_output=True, text=True, check=True, timeout=30
        ).stdout


def stack_processes(data_dir: Path) -> list[str]:
    """Command lines of live processes that belong to this stack (they all name its data folder)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found


@contextmanager
def dev_stack(data_dir: Path, ports: dict[str, int], *extra: str) -> Iterator[DevRun]:
    run = DevRun(data_dir, ports, list(extra))
    try:
        run.wait_for("kubepilot dev is up", START_TIMEOUT_SECONDS)
        yield run
    finally:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGINT)
        try:
            run.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            run.process.kill()
            raise


def test_one_command_starts_the_stack_stops_it_cleanly_and_keeps_its_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    ports = {
        name: free_port()
        for name in ("cluster-port", "gateway-port", "intake-port", "operator-health-port", "node-agent-port")
    }

    ui = tmp_path / "controlpilot-ui"
    ui.mkdir()
    (ui / "index.html").write_text("<html>LoRA Pilot portal</html>")
    with dev_stack(data_dir, ports, "--controlpilot-ui", str(ui)) as first:
        banner = "\n".join(first.lines)
        assert f"http://127.0.0.1:{ports['gateway-port']}/ (/p/controlpilot/" in banner
        assert str(data_dir / "cluster" / "kubeconfig") in banner
        health = first.gateway("GET", "/healthz")
        assert health["synced"] is True and "controlpilot" in health["profiles"]
        assert "serviceinstances.kubepilot.io" in first.kubectl("get", "crd", "-o", "name")
        telemetry = first.gateway("GET", "/p/controlpilot/api/telemetry")
        assert telemetry["cpu_count"] >= 1 and telemetry["mem_total"] > 0
        gateway_log = (data_dir / "logs" / "gateway.log").read_text()
        assert "no snapshot" not in gateway_log, "telemetry comes from the stack's node agent"
        started = first.gateway("POST", "/p/controlpilot/api/services/jupyter/start")
        assert started == {"status": "ok"}
        assert first.page("/p/controlpilot/") == "<html>LoRA Pilot portal</html>", "the product's UI"
        assert (data_dir / "volumes" / "models").is_dir()
        # The demo models answer an A1111 client at once: a real PNG of the asked size.
        answer = first.post_json(
            "/p/sdcpp-studio/sdapi/v1/txt2img",
            {"prompt": "a cat", "width": 64, "height": 96, "steps": 2, "seed": 7},
        )
        with Image.open(io.BytesIO(base64.b64decode(answer["images"][0]))) as image:
            assert (image.format, image.size) == ("PNG", (64, 96))
        assert json.loads(answer["info"])["seed"] == 7
        upscaled = first.post_json(
            "/p/sdcpp-studio/sdapi/v1/extra-single-image",
            {"image": answer["images"][0], "upscaling_resize": 2, "upscaler_1": "Tiny 4x"},
        )
        with Image.open(io.BytesIO(base64.b64decode(upscaled["image"]))) as image:
            assert image.size == (128, 192)
    assert first.process.returncode == 0, "\n".join(first.lines[-40:])
    assert "kubepilot dev: stopped" in first.lines
    assert stack_processes(data_dir) == [], "nothing of the stack may outlive Ctrl-C"

    with dev_stack(data_dir, ports) as second:
        wanted = second.kubectl("get", "serviceinstances", "-o", "jsonpath={.items[*].spec.running}")
        assert wanted == "true", "the second run keeps the first run's ServiceInstance, still wanted running"
        services = {s["name"]: s for s in second.gateway("GET", "/p/controlpilot/api/services")}
        assert services["jupyter"]["state"] != "STOPPED", services["jupyter"]
    assert second.process.returncode == 0
    assert stack_processes(data_dir) == []
