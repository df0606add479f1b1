"""OneTrainer's system endpoints (OT-18 … OT-20) over a real node agent process and the devcluster.

The node agent runs as its DaemonSet command does (``python -m kubepilot_workers.nodeagent``) on a
free local port; this machine has no GPU, so the GPU mapping and the choice of the trainer's node
among several agents are checked on snapshots built with the agent's own model (what it sends on a
GPU node). The session is a real TrainingRun and its trainer pod a real devcluster pod (a local
process) with the labels the operator gives it; no operator runs, so the test creates both.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kubepilot_api.constants import LABEL_KIND, LABEL_NAME
from kubepilot_devcluster.testing import free_port
from kubepilot_gateway.app.errors import install_error_envelope
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import PODS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot.telemetry import AgentSnapshot, LocalHost, Reading
from kubepilot_gateway.profiles.onetrainer import envelope, routes_system, system
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.settings import Settings, Volumes
from kubepilot_workers.nodeagent.snapshot import (
    CpuSnapshot,
    DiskSnapshot,
    GpuSnapshot,
    MemorySnapshot,
    NodeSnapshot,
    NvmlStatus,
)
from tests.gateway.nodeagent_process import Agent

JsonObject = dict[str, Any]
GIB = 1024**3
PREFIX = "ot-sys"
RUN = f"{PREFIX}-1"
TR = resource_for("TrainingRun")
INFO_KEYS = ["os", "cpu", "memory", "disk", "gpu"]
RESOURCES_KEYS = ["cpu_percent", "memory_percent", "disk_percent", "gpu_memory"]
PROCESS_KEYS = ["pid", "cpu_percent", "memory_percent", "memory_mb", "num_threads", "status"]
PROCESS_EXTRA = ["training_run", "pod_name", "pod_phase", "node", "start_time"]


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    paths = {name: tmp_path / name for name in ("models", "datasets", "outputs")}
    for path in paths.values():
        path.mkdir()
    return Volumes(**{name: str(path) for name, path in paths.items()})


class Apps:
    """Builds the profile's system routes over the test's namespace with given agent URLs."""

    def __init__(self, kube: KubeClient, cache: ClusterCache, store: CrStore, ns: str, vols: Volumes) -> None:
        self.kube, self.cache, self.store, self.namespace, self.volumes = kube, cache, store, ns, vols

    def client(self, *urls: str) -> httpx.AsyncClient:
        profile = {"system": {"nodeAgentUrls": list(urls)}, "training": {"runPrefix": PREFIX}}
        settings = Settings(
            namespace=self.namespace, volumes=self.volumes, profileSettings={"onetrainer": profile}
        )
        ctx = GatewayContext(
            settings=settings, client=self.kube, cache=self.cache, store=self.store, bus=self.cache.bus
        )
        app = FastAPI()
        install_error_envelope(app, envelope, validation_status=400)
        app.include_router(routes_system.create_router(ctx))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://onetrainer.test")


@pytest.fixture
def apps(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes) -> Apps:
    return Apps(kube, cache, store, namespace, volumes)


@pytest.fixture
async def http(apps: Apps, agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with apps.client(agent.url) as client:
        yield client


async def get_json(http: httpx.AsyncClient, path: str) -> JsonObject:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    answer: JsonObject = response.json()
    return answer


def gb(value: int) -> float:
    return round(value / GIB, 2)


def mem_total_bytes() -> int:
    """What the gateway's host has, as ``/proc/meminfo`` says."""
    for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# -- OT-18 / OT-19 with the agent ------------------------------------------------------------------


async def test_info_and_resources_map_the_node_agents_snapshot(http: httpx.AsyncClient, agent: Agent) -> None:
    info = await get_json(http, "/api/system/info")
    resources = await get_json(http, "/api/system/resources")
    snapshot = agent.snapshot()
    assert list(info) == INFO_KEYS
    assert list(info["os"]) == ["system", "release", "version", "machine", "processor"]
    assert info["os"]["system"] == os.uname().sysname and info["os"]["release"] == os.uname().release
    assert info["os"]["processor"]
    assert info["cpu"]["count"] == snapshot["cpu"]["count"]
    assert 0 <= info["cpu"]["usage_percent"] <= 100
    memory = snapshot["memory"]
    assert info["memory"]["total_gb"] == gb(memory["totalBytes"])
    assert 0 < info["memory"]["used_gb"] < info["memory"]["total_gb"]
    assert 0 < info["memory"]["available_gb"] <= info["memory"]["total_gb"]
    assert 0 < info["memory"]["usage_percent"] < 100
    # The agent's configured disk (its node's), not the gateway's volumes or root.
    disk = shutil.disk_usage(agent.disk)
    assert info["disk"]["total_gb"] == gb(disk.total)
    assert info["disk"]["usage_percent"] == pytest.approx(100 * disk.used / disk.total, abs=1)
    assert info["gpu"] == {"available": False, "count": 0, "devices": []} and snapshot["gpus"] == []

    assert list(resources) == RESOURCES_KEYS
    assert 0 <= resources["cpu_percent"] <= 100 and 0 < resources["memory_percent"] < 100
    assert resources["disk_percent"] == pytest.approx(info["disk"]["usage_percent"], abs=1)
    assert resources["gpu_memory"] == []


async def test_an_agent_that_is_down_leaves_the_gateways_own_figures(
    apps: Apps, volumes: Volumes, caplog: pytest.LogCaptureFixture
) -> None:
    async with apps.client(down_url()) as http:
        info = await get_json(http, "/api/system/info")
        resources = await get_json(http, "/api/system/resources")
        processes = await get_json(http, "/api/system/processes")
    assert info["cpu"]["count"] == os.cpu_count()
    assert info["memory"]["total_gb"] == gb(mem_total_bytes())
    outputs = shutil.disk_usage(volumes.outputs)  # where a session writes: the gateway mounts it
    assert info["disk"]["total_gb"] == gb(outputs.total)
    assert info["gpu"] == {"available": False, "count": 0, "devices": []}
    assert 0 <= resources["cpu_percent"] <= 100 and resources["gpu_memory"] == []
    assert processes["status"] == "idle"
    assert "no snapshot" in caplog.text


# -- OT-20 -----------------------------------------------------------------------------------------


async def test_processes_without_a_session_is_idle(http: httpx.AsyncClient) -> None:
    body = await get_json(http, "/api/system/processes")
    assert list(body) == PROCESS_KEYS + PROCESS_EXTRA
    assert body["status"] == "idle"
    assert all(body[key] is None for key in PROCESS_KEYS + PROCESS_EXTRA if key != "status")


async def wait_for(check: Any, what: str, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # the pod's process starts on its own; its phase comes from the kubelet


async def test_processes_report_the_sessions_trainer_pod(
    apps: Apps, agent: Agent, store: CrStore, cache: ClusterCache, namespace: str
) -> None:
    run = ot.training_run(
        RUN,
        slot=PREFIX,
        config={"batch_size": 1},
        base_model="sd/base.safetensors",
        dataset="cats",
        output="cats",
        source="test",
        gpu=None,
        env={},
    )
    await store.create(TR, run)
    async with apps.client(down_url(), agent.url) as http:
        # An active session whose pod is not there yet.
        body = await get_json(http, "/api/system/processes")
        assert body["status"] == "pending" and body["training_run"] == RUN and body["pod_name"] is None

        pod: JsonObject = {
            "metadata": {
                "name": f"{RUN}-train-abcde",
                "labels": {LABEL_KIND: "TrainingRun", LABEL_NAME: RUN},
            },
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "trainer",
                        "image": "kubepilot/trainer:test",
                        "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                    }
                ],
            },
        }
        await store.create(PODS, pod)

        def running() -> JsonObject | None:
            seen = cache.get(PODS, pod["metadata"]["name"], namespace)
            return seen if ((seen or {}).get("status") or {}).get("phase") == "Running" else None

        seen = await wait_for(running, "the pod to run")
        body = await get_json(http, "/api/system/processes")
        assert list(body) == PROCESS_KEYS + PROCESS_EXTRA
        assert body["status"] == "running" and body["pod_phase"] == "Running"
        assert body["training_run"] == RUN and body["pod_name"] == f"{RUN}-train-abcde"
        assert body["node"] == seen["spec"]["nodeName"] and body["node"]
        assert body["start_time"] == seen["status"]["startTime"]
        assert datetime.fromisoformat(body["start_time"]) <= datetime.now(UTC)
        # No metrics-server or in-pod agent: the process figures are unknown, not zero.
        assert all(
            body[key] is None for key in ("pid", "cpu_percent", "memory_percent", "memory_mb", "num_threads")
        )

        # The node's figures still come from the agent that answers (its hostname is not the node's
        # name here, so the first that answered is used).
        info = await get_json(http, "/api/system/info")
        assert info["disk"]["total_gb"] == gb(shutil.disk_usage(agent.disk).total)

        # The trainer's own figures, as its progress report carries them and the operator copies
        # them into status.metrics (no GPU here: the figures are written in that format).
        await store.patch_status(TR, RUN, {"phase": "Running", "jobName": "j", "metrics": TRAINER_METRICS})
        await wait_for(
            lambda: (cache.get(TR, RUN, namespace) or {}).get("status", {}).get("metrics"), "metrics"
        )
        body = await get_json(http, "/api/system/processes")
        assert {key: body[key] for key in PROCESS_KEYS} == {
            "pid": 57,
            "cpu_percent": 125.5,
            "memory_percent": 15.2,
            "memory_mb": 9728.5,
            "num_threads": 24,
            "status": "running",
        }
        info = await get_json(http, "/api/system/info")
        assert info["gpu"] == {"available": True, "count": 1, "devices": [TRAINER_DEVICE | {"name": ""}]}
        resources = await get_json(http, "/api/system/resources")
        assert resources["gpu_memory"] == [{"device": 0, "allocated_percent": 10.6, "reserved_percent": 12.5}]

        # A finished session's process is gone: its last figures are not shown.
        await store.patch_status(TR, RUN, {"phase": "Stopped"})
        await wait_for(
            lambda: (cache.get(TR, RUN, namespace) or {}).get("status", {}).get("phase") == "Stopped",
            "Stopped",
        )
        body = await get_json(http, "/api/system/processes")
        assert body["pid"] is None and body["memory_mb"] is None and body["training_run"] == RUN
        assert (await get_json(http, "/api/system/info"))["gpu"]["count"] == 0
        await store.delete(PODS, pod["metadata"]["name"])


# -- the mapping on GPU nodes (no GPU here) --------------------------------------------------------

TRAINER_METRICS = {
    "loss": 0.12,
    "learning_rate": 0.0001,
    "gpu.0.memory_allocated_bytes": 8.5 * GIB,
    "gpu.0.memory_reserved_bytes": 10 * GIB,
    "gpu.0.memory_total_bytes": 80 * GIB,
    "process.pid": 57,
    "process.cpu_percent": 125.54,
    "process.memory_percent": 15.23,
    "process.memory_rss_bytes": 9728.5 * 1024**2,
    "process.num_threads": 24,
}
"""A trainer's report metrics on one 80 GiB GPU (``torch.cuda.memory_allocated`` / ``memory_reserved``
/ ``get_device_properties(0).total_memory``, and its own process), the seed's example figures."""
TRAINER_DEVICE = {"id": 0, "memory_total_gb": 80.0, "memory_allocated_gb": 8.5, "memory_reserved_gb": 10.0}


def node_snapshot(hostname: str, gpus: list[GpuSnapshot], used: int) -> AgentSnapshot:
    sent = NodeSnapshot(
        time=datetime.now(UTC),
        hostname=hostname,
        nvml=NvmlStatus(available=bool(gpus)),
        gpus=gpus,
        cpu=CpuSnapshot(percent=12.5, count=32),
        memory=MemorySnapshot(usedBytes=used, totalBytes=64 * GIB, availableBytes=64 * GIB - used),
        disk=[DiskSnapshot(path="/data", usedBytes=250 * GIB, totalBytes=1000 * GIB, freeBytes=750 * GIB)],
    )
    return AgentSnapshot.model_validate_json(sent.model_dump_json())


def test_the_trainer_nodes_agent_gives_the_figures_and_allocator_figures_stay_null() -> None:
    gpu = GpuSnapshot(index=0, name="NVIDIA H100", memoryUsedBytes=8 * GIB, memoryTotalBytes=80 * GIB)
    other = node_snapshot("node-a", [], used=8 * GIB)
    trainer = node_snapshot("node-b", [gpu], used=32 * GIB)
    local = LocalHost("gw", 1.0, (0.5, 0.5, 0.5), 4, 16 * GIB, 8 * GIB, 8 * GIB)
    reading = system.for_node(Reading(local=local, snapshots=[other, trainer]), "node-b")
    os_info = system.OsInfo("Linux", "6.1", "#1", "x86_64", "cpu")

    info = system.info_body(reading, os_info)
    assert info["cpu"] == {"count": 32, "usage_percent": 12.5}
    assert info["memory"] == {"total_gb": 64.0, "used_gb": 32.0, "available_gb": 32.0, "usage_percent": 50.0}
    assert info["disk"] == {"total_gb": 1000.0, "used_gb": 250.0, "free_gb": 750.0, "usage_percent": 25.0}
    assert info["gpu"] == {
        "available": True,
        "count": 1,
        "devices": [
            {
                "id": 0,
                "name": "NVIDIA H100",
                "memory_total_gb": 80.0,
                "memory_allocated_gb": None,  # PyTorch's, only inside the trainer process
                "memory_reserved_gb": None,
            }
        ],
    }
    assert system.resources_body(reading) == {
        "cpu_percent": 12.5,
        "memory_percent": 50.0,
        "disk_percent": 25.0,
        "gpu_memory": [{"device": 0, "allocated_percent": None, "reserved_percent": None}],
    }
    # No session: the first agent that answered.
    first = system.info_body(system.for_node(Reading(local=local, snapshots=[other, trainer]), ""), os_info)
    assert first["memory"]["used_gb"] == 8.0 and first["gpu"]["count"] == 0


def test_the_trainers_reported_allocator_figures_fill_the_gpu_section_and_the_process() -> None:
    h100 = GpuSnapshot(index=0, name="NVIDIA H100", memoryUsedBytes=12 * GIB, memoryTotalBytes=80 * GIB)
    l4 = GpuSnapshot(index=1, name="NVIDIA L4", memoryUsedBytes=1 * GIB, memoryTotalBytes=24 * GIB)
    local = LocalHost("gw", 1.0, (0.5, 0.5, 0.5), 4, 16 * GIB, 8 * GIB, 8 * GIB)
    os_info = system.OsInfo("Linux", "6.1", "#1", "x86_64", "cpu")
    run: JsonObject = {"metadata": {"name": RUN}, "status": {"phase": "Running", "metrics": TRAINER_METRICS}}
    trainer = system.trainer_gpus(run)
    assert trainer == [
        system.TrainerGpu(index=0, allocated=int(8.5 * GIB), reserved=10 * GIB, total=80 * GIB)
    ]

    # One GPU model on the node: its name. The trainer's view: one device (the pod's), index 0.
    same = Reading(
        local=local, snapshots=[node_snapshot("n", [h100, h100.model_copy(update={"index": 1})], GIB)]
    )
    info = system.info_body(same, os_info, trainer)
    assert info["gpu"] == {
        "available": True,
        "count": 1,
        "devices": [TRAINER_DEVICE | {"name": "NVIDIA H100"}],
    }
    assert system.resources_body(same, trainer)["gpu_memory"] == [
        {"device": 0, "allocated_percent": 10.6, "reserved_percent": 12.5}
    ]
    # Mixed models: the one whose total is the trainer's (within 2 %); none close: no name.
    mixed = Reading(local=local, snapshots=[node_snapshot("n", [l4, h100], GIB)])
    near = system.trainer_gpus({"status": {"metrics": {"gpu.0.memory_total_bytes": 79.3 * GIB}}})
    assert system.info_body(mixed, os_info, near)["gpu"]["devices"][0]["name"] == "NVIDIA H100"
    far = system.trainer_gpus({"status": {"metrics": {"gpu.0.memory_total_bytes": 40 * GIB}}})
    assert system.info_body(mixed, os_info, far)["gpu"]["devices"][0]["name"] == ""
    # Without a total the shares are unknown, never made up.
    partial = system.trainer_gpus({"status": {"metrics": {"gpu.2.memory_allocated_bytes": GIB}}})
    assert system.resources_body(mixed, partial)["gpu_memory"] == [
        {"device": 2, "allocated_percent": None, "reserved_percent": None}
    ]

    process = system.process_body(run, True, None)
    assert (process["pid"], process["memory_mb"], process["num_threads"]) == (57, 9728.5, 24)
    assert (process["cpu_percent"], process["memory_percent"]) == (125.5, 15.2)
    assert process["status"] == "pending", "no pod yet: the figures are the trainer's last report"
    assert system.process_body(run, False, None)["pid"] is None, "a finished run's process is gone"
    # What is not a figure is left out: other keys, negative or non-numeric values.
    odd = {"status": {"metrics": {"gpu.x.memory_total_bytes": 1, "process.pid": -1, "gpu.0.other": 5}}}
    assert system.trainer_gpus(odd) == [] and system.trainer_process(odd) == {}
