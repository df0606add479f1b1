"""The node agent over real HTTP: the CPU-node path with the real pynvml, and the GPU path through a
stand-in NVML module (a fake, because no GPU exists on this machine; the gpu-marked test reads real GPUs)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubepilot_workers.nodeagent.collector import NodeCollector, NvmlReader
from kubepilot_workers.nodeagent.server import NodeAgentServer

MiB = 1024 * 1024


class FakeNvml:
    """The slice of pynvml's interface the agent uses, with two devices (the second a MIG-like device
    that supports neither utilisation nor power readings)."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self, *, fail_init: int = 0) -> None:
        self.fail_init = fail_init
        self.lost = False
        self.init_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.fail_init > 0:
            self.fail_init -= 1
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        return None

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        if self.lost:
            raise self.NVMLError("GPU is lost")
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3" if handle == 0 else b"NVIDIA H100 80GB HBM3 MIG 1g.10gb"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-0000000{handle}-fake"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        if handle == 1:
            raise self.NVMLError_NotSupported("Not Supported")
        return type("Utilization", (), {"gpu": 87, "memory": 40})()

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return type("Memory", (), {"used": (20_000 + handle) * MiB, "total": 81_559 * MiB, "free": 0})()

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 61 + handle

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise self.NVMLError_NotSupported("Not Supported")
        return 312_456

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        if handle == 1:
            raise self.NVMLError_NotSupported("Not Supported")
        return 700_000

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        if handle == 1:
            return []
        process = type("Process", (), {})
        mine, hidden = process(), process()
        mine.pid, mine.usedGpuMemory = os.getpid(), 1_024 * MiB
        hidden.pid, hidden.usedGpuMemory = 4_194_000, None
        return [mine, hidden]


def scrape(base: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = httpx.get(base + "/metrics", timeout=5).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[NodeAgentServer] = []

    def start(collector: NodeCollector) -> str:
        server = NodeAgentServer(collector, "127.0.0.1", 0).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def test_a_cpu_node_reports_nvml_unavailable_and_host_usage(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real pynvml, with nvmlInit failing as it does on a node without the NVIDIA driver (exactly
    # what it does unpatched on this CPU machine); patched so the test means the same on a GPU machine.
    def library_not_found() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", library_not_found)
    missing = str(tmp_path / "not-mounted")
    base = serve(NodeCollector([str(tmp_path), missing], ttl=0))

    metrics = scrape(base)
    assert metrics["kubepilot_node_nvml_available"] == {(): 0.0}
    assert metrics["kubepilot_node_gpu_count"] == {(): 0.0}
    assert "kubepilot_node_gpu_memory_used_bytes" not in metrics
    assert metrics["kubepilot_node_memory_total_bytes"][()] > 0
    assert 0 <= metrics["kubepilot_node_cpu_utilization_percent"][()] <= 100
    assert metrics["kubepilot_node_disk_total_bytes"][(("path", str(tmp_path)),)] > 0
    assert (("path", missing),) not in metrics["kubepilot_node_disk_total_bytes"]

    snapshot = httpx.get(base + "/v1/snapshot", timeout=5).json()
    assert snapshot["nvml"] == {
        "available": False,
        "error": "NVML Shared Library Not Found",
        "driverVersion": "",
    }
    assert snapshot["gpus"] == []
    assert snapshot["memory"]["totalBytes"] >= snapshot["memory"]["usedBytes"] > 0
    assert snapshot["cpu"]["count"] >= 1
    assert [d["path"] for d in snapshot["disk"]] == [str(tmp_path), missing]
    assert snapshot["disk"][0]["totalBytes"] > 0 and snapshot["disk"][1]["error"]
    assert httpx.get(base + "/healthz", timeout=5).text == "ok\n"
    assert httpx.get(base + "/nope", timeout=5).status_code == 404


def test_gpu_readings_become_labelled_metrics_and_unsupported_values_are_left_out(serve: Any) -> None:
    base = serve(NodeCollector(["/"], nvml=NvmlReader(FakeNvml()), ttl=0))

    metrics = scrape(base)
    gpu0 = (("gpu", "0"), ("model", "NVIDIA H100 80GB HBM3"), ("uuid", "GPU-00000000-fake"))
    gpu1 = (("gpu", "1"), ("model", "NVIDIA H100 80GB HBM3 MIG 1g.10gb"), ("uuid", "GPU-00000001-fake"))
    assert metrics["kubepilot_node_nvml_available"] == {(): 1.0}
    assert metrics["kubepilot_node_gpu_count"] == {(): 2.0}
    assert metrics["kubepilot_node_gpu_utilization_percent"] == {gpu0: 87.0}
    assert metrics["kubepilot_node_gpu_memory_used_bytes"] == {gpu0: 20_000 * MiB, gpu1: 20_001 * MiB}
    assert metrics["kubepilot_node_gpu_memory_total_bytes"][gpu1] == 81_559 * MiB
    assert metrics["kubepilot_node_gpu_temperature_celsius"] == {gpu0: 61.0, gpu1: 62.0}
    assert metrics["kubepilot_node_gpu_power_watts"] == {gpu0: pytest.approx(312.456)}
    assert metrics["kubepilot_node_gpu_power_limit_watts"] == {gpu0: 700.0}
    [(labels, used)] = metrics["kubepilot_node_gpu_process_memory_used_bytes"].items()
    assert dict(labels)["pid"] == str(os.getpid()) and dict(labels)["process"] and used == 1_024 * MiB

    snapshot = httpx.get(base + "/v1/snapshot", timeout=5).json()
    assert snapshot["nvml"] == {"available": True, "error": "", "driverVersion": "550.54.15"}
    first, second = snapshot["gpus"]
    assert first["utilizationPercent"] == 87.0 and first["powerWatts"] == pytest.approx(312.456)
    assert second["utilizationPercent"] is None and second["powerWatts"] is None
    assert [p["pid"] for p in first["processes"]] == [os.getpid(), 4_194_000]
    assert first["processes"][1] == {"pid": 4_194_000, "name": "", "usedMemoryBytes": None}


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """One core kept busy by another process for the length of the test."""
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.perf_counter()"])
    try:
        time.sleep(0.3)  # past interpreter start-up: spinning from here on
        assert spinner.poll() is None
        yield
    finally:
        spinner.kill()
        spinner.wait()


def test_the_first_reading_after_start_reports_the_load_of_a_busy_node(serve: Any, busy_cpu: None) -> None:
    # Read at once after creation: nothing but the collector's own priming came before.
    first = NodeCollector(["/"], nvml=NvmlReader(FakeNvml()), ttl=0).snapshot()
    assert first.cpu.percent > 0, "a node with a busy core must not read 0 % on its first snapshot"

    base = serve(NodeCollector(["/"], nvml=NvmlReader(FakeNvml()), ttl=0))
    scraped = scrape(base)["kubepilot_node_cpu_utilization_percent"][()]
    assert 0 < scraped <= 100, "nor on the first scrape of /metrics"


def test_a_disk_path_that_does_not_exist_is_reported_unavailable_and_logged_once(
    serve: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "models-volume-not-mounted"
    with caplog.at_level(logging.WARNING, logger="kubepilot_workers.nodeagent.collector"):
        base = serve(NodeCollector([str(tmp_path), str(missing)], nvml=NvmlReader(FakeNvml()), ttl=0))
        first, second = scrape(base), scrape(base)

    for metrics in (first, second):
        assert metrics["kubepilot_node_disk_path_available"] == {
            (("path", str(tmp_path)),): 1.0,
            (("path", str(missing)),): 0.0,
        }
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(missing) in warnings[0], "logged when seen, not on every scrape"

    missing.mkdir()
    assert scrape(base)["kubepilot_node_disk_path_available"][(("path", str(missing)),)] == 1.0


def test_nvml_initialisation_is_retried_and_a_lost_driver_is_reported() -> None:
    fake = FakeNvml(fail_init=1)
    reader = NvmlReader(fake, retry_seconds=0)
    status, gpus = reader.read()
    assert (status.available, status.error, gpus) == (False, "Driver Not Loaded", [])
    status, gpus = reader.read()
    assert status.available and len(gpus) == 2
    fake.lost = True
    status, gpus = reader.read()
    assert (status.available, status.error, gpus) == (False, "GPU is lost", [])
    fake.lost = False
    status, _ = reader.read()
    assert status.available and fake.init_calls == 3


def test_nvml_is_not_retried_before_the_retry_interval() -> None:
    fake = FakeNvml(fail_init=5)
    reader = NvmlReader(fake, retry_seconds=3600)
    for _ in range(3):
        assert reader.read()[0].available is False
    assert fake.init_calls == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_node_agent_command_serves_until_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "diskPaths": [str(tmp_path)]}))
    command = [sys.executable, "-m", "kubepilot_workers.nodeagent", "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the node agent did not come up"
            time.sleep(0.05)
        metrics = scrape(f"http://127.0.0.1:{port}")
        assert metrics["kubepilot_node_disk_free_bytes"][(("path", str(tmp_path)),)] > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_node_agent_command_rejects_a_bad_config_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"port": 0}))
    command = [sys.executable, "-m", "kubepilot_workers.nodeagent", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "invalid config" in result.stderr and "port" in result.stderr and "Traceback" not in result.stderr
    missing = subprocess.run(
        [*command[:-1], str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2 and "cannot read config" in missing.stderr


@pytest.mark.gpu
def test_real_nvml_reads_the_gpus_of_this_machine(serve: Any) -> None:
    base = serve(NodeCollector(["/"], ttl=0))
    snapshot = httpx.get(base + "/v1/snapshot", timeout=5).json()
    assert snapshot["nvml"]["available"] is True, snapshot["nvml"]
    assert snapshot["gpus"] and all(gpu["memoryTotalBytes"] > 0 for gpu in snapshot["gpus"])
    assert snapshot["nvml"]["driverVersion"]
    metrics = scrape(base)
    assert len(metrics["kubepilot_node_gpu_memory_total_bytes"]) == len(snapshot["gpus"])
    assert metrics["kubepilot_node_nvml_available"] == {(): 1.0}
