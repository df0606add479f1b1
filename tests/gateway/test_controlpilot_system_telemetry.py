"""ControlPilot's telemetry (CP-41) and its history (CP-42) over a real node agent process.

The node agent runs as its command does in the DaemonSet (``python -m kubepilot_workers.nodeagent``)
on a free local port; this machine has no GPU, so its snapshot has none. The GPU mapping is checked
on a snapshot built with the agent's own model (what it sends on a GPU node).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kubepilot_devcluster.testing import free_port
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot.telemetry import (
    AgentSnapshot,
    LocalHost,
    Reading,
    telemetry_body,
)
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
HISTORY_TASK = "controlpilot-telemetry-history"
TELEMETRY_KEYS = [
    "host",
    "uptime_seconds",
    "load_avg",
    "cpu_count",
    "mem_total",
    "mem_used",
    "mem_free",
    "disks",
    "gpus",
    "workspace_data_used_bytes",
    "docs",
]


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    paths = {name: tmp_path / name for name in ("models", "datasets", "outputs")}
    for path in paths.values():
        path.mkdir()
    return Volumes(**{name: str(path) for name, path in paths.items()})


def make_ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes, **system: Any
) -> GatewayContext:
    settings = Settings(
        namespace=namespace, volumes=volumes, profileSettings={"controlpilot": {"system": system}}
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
def make_app(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes) -> Any:
    def build(**system: Any) -> FastAPI:
        return create_app(make_ctx(kube, cache, store, namespace, volumes, **system))

    return build


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://controlpilot.test")


def running(app: FastAPI) -> AbstractAsyncContextManager[Any]:
    """The app's lifespan, as the gateway runs it for every profile."""
    return app.router.lifespan_context(app)


def history_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == HISTORY_TASK and not task.done()]


async def get_json(http: httpx.AsyncClient, path: str) -> JsonObject:
    response = await http.get(path)
    assert response.status_code == 200, response.text
    answer: JsonObject = response.json()
    return answer


@pytest.fixture
async def http(make_app: Any, agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(nodeAgentUrls=[agent.url])) as session:
        yield session


# -- CP-41 -----------------------------------------------------------------------------------------


async def test_telemetry_maps_the_node_agents_snapshot(
    http: httpx.AsyncClient, agent: Agent, volumes: Volumes
) -> None:
    body = await get_json(http, "/api/telemetry")
    snapshot = agent.snapshot()
    assert list(body) == TELEMETRY_KEYS
    assert body["host"] == snapshot["hostname"]
    assert body["cpu_count"] == snapshot["cpu"]["count"]
    assert body["mem_total"] == snapshot["memory"]["totalBytes"]
    assert 0 < body["mem_used"] < body["mem_total"] and 0 < body["mem_free"] <= body["mem_total"]
    assert len(body["load_avg"]) == 3 and all(isinstance(value, float) for value in body["load_avg"])
    assert body["uptime_seconds"] > 0
    assert body["gpus"] == [] == snapshot["gpus"]  # no GPU here
    assert body["docs"] is None
    mounts = [disk["mount"] for disk in body["disks"]]
    # The agent's disks first (its node's), then the volumes the gateway mounts; not the gateway's "/".
    assert mounts == [str(agent.disk), volumes.models, volumes.datasets, volumes.outputs]
    for disk in body["disks"]:
        assert list(disk) == ["mount", "total", "used", "free", "pct", "alert"]
        assert disk["total"] > 0 and disk["used"] + disk["free"] <= disk["total"]
        assert disk["pct"] == round(100 * disk["used"] / disk["total"])
        assert disk["alert"] is (disk["pct"] >= 80)


async def test_volume_data_is_counted_once_per_file_and_cached(
    http: httpx.AsyncClient, volumes: Volumes, tmp_path: Path
) -> None:
    model = Path(volumes.models) / "hub" / "blobs" / "weights"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"w" * 1000)
    (Path(volumes.models) / "hub" / "weights.safetensors").symlink_to(model)  # not followed
    (Path(volumes.datasets) / "1_cats").mkdir()
    (Path(volumes.datasets) / "1_cats" / "a.png").write_bytes(b"p" * 2000)
    os.link(model, Path(volumes.outputs) / "copy")  # a hard link: the same data
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"x" * 50_000)
    (Path(volumes.outputs) / "link-out").symlink_to(outside)

    assert (await get_json(http, "/api/telemetry"))["workspace_data_used_bytes"] == 3000
    (Path(volumes.outputs) / "new.png").write_bytes(b"n" * 10)
    # Within the TTL the figure is reused: no walk of the volumes per request.
    assert (await get_json(http, "/api/telemetry"))["workspace_data_used_bytes"] == 3000


async def test_a_short_ttl_refreshes_the_volume_figure_in_the_background(
    make_app: Any, agent: Agent, volumes: Volumes
) -> None:
    async with client_for(make_app(nodeAgentUrls=[agent.url], dataUsageTtlSeconds=0)) as http:
        assert (await get_json(http, "/api/telemetry"))["workspace_data_used_bytes"] == 0
        (Path(volumes.datasets) / "more.bin").write_bytes(b"m" * 123)
        deadline = time.monotonic() + 10
        while (await get_json(http, "/api/telemetry"))["workspace_data_used_bytes"] != 123:
            assert time.monotonic() < deadline, "the volume figure was never refreshed"
            await asyncio.sleep(0.05)


async def test_without_an_agent_telemetry_is_the_gateways_own_reading(
    make_app: Any, volumes: Volumes
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with client_for(make_app(nodeAgentUrls=[down], nodeAgentTimeoutSeconds=1)) as http:
        body = await get_json(http, "/api/telemetry")
    assert list(body) == TELEMETRY_KEYS
    assert body["host"] == socket.gethostname()
    assert body["cpu_count"] == os.cpu_count()
    assert body["mem_total"] > 0 and body["gpus"] == []
    assert [disk["mount"] for disk in body["disks"]] == [
        "/",
        volumes.models,
        volumes.datasets,
        volumes.outputs,
    ]
    assert body["workspace_data_used_bytes"] == 0


def test_gpus_of_the_agents_snapshot_map_to_controlpilots_fields() -> None:
    gpu_node = NodeSnapshot(
        time=datetime.now(UTC),
        hostname="gpu-node-1",
        nvml=NvmlStatus(available=True, driverVersion="550.54"),
        gpus=[
            GpuSnapshot(
                index=0,
                name="NVIDIA H100 80GB HBM3",
                utilizationPercent=37.6,
                memoryUsedBytes=2 * 1024**3,
                memoryTotalBytes=80 * 1024**3,
            ),
            GpuSnapshot(index=1, name="NVIDIA H100 80GB HBM3 MIG 1g.10gb"),  # a MIG slice: no utilisation
        ],
        cpu=CpuSnapshot(percent=12.5, count=64),
        memory=MemorySnapshot(usedBytes=10, totalBytes=100, availableBytes=90),
        disk=[
            DiskSnapshot(path="/", usedBytes=85, totalBytes=100, freeBytes=15),
            DiskSnapshot(path="/mnt/missing", error="No such file or directory"),
        ],
    )
    snapshot = AgentSnapshot.model_validate_json(gpu_node.model_dump_json())
    local = LocalHost("gateway-pod", 5.0, (0.5, 0.25, 0.125), 2, 4, 3, 1)
    body = telemetry_body(Reading(local=local, snapshots=[snapshot]), None)
    assert body["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "util": 38,
            "mem_used": 2 * 1024**3,
            "mem_total": 80 * 1024**3,
        },
        {
            "index": 1,
            "name": "NVIDIA H100 80GB HBM3 MIG 1g.10gb",
            "util": None,
            "mem_used": None,
            "mem_total": None,
        },
    ]
    assert (body["host"], body["cpu_count"], body["mem_total"], body["mem_used"], body["mem_free"]) == (
        "gpu-node-1",
        64,
        100,
        10,
        90,
    )
    # The agent's unreadable path is left out; "/" at 85 % raises the alert.
    assert body["disks"] == [{"mount": "/", "total": 100, "used": 85, "free": 15, "pct": 85, "alert": True}]
    # What the agent does not send comes from the gateway's host.
    assert (body["load_avg"], body["uptime_seconds"]) == ([0.5, 0.25, 0.125], 5.0)


# -- CP-42 -----------------------------------------------------------------------------------------


async def test_history_is_sampled_while_the_app_runs_and_the_sampler_stops_with_it(
    make_app: Any, agent: Agent
) -> None:
    app = make_app(nodeAgentUrls=[agent.url], historySampleSeconds=0.1, historyRetentionSeconds=60)
    async with client_for(app) as http:
        async with running(app):
            assert len(history_tasks()) == 1
            deadline = time.monotonic() + 15
            while len((body := await get_json(http, "/api/telemetry/history"))["points"]) < 4:
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.05)
        assert history_tasks() == []  # stopped with the lifespan
        after = await get_json(http, "/api/telemetry/history")

    assert list(body) == [
        "sample_seconds",
        "retention_seconds",
        "available_seconds",
        "from_ts",
        "to_ts",
        "points",
    ]
    assert (body["sample_seconds"], body["retention_seconds"]) == (0.1, 60)
    points = body["points"]
    assert body["from_ts"] == points[0]["ts"] and body["to_ts"] == points[-1]["ts"]
    assert [point["ts"] for point in points] == sorted(point["ts"] for point in points)
    assert body["available_seconds"] == pytest.approx(points[-1]["ts"] - points[0]["ts"], abs=0.01)
    assert body["available_seconds"] >= 0.2
    for point in points:
        assert list(point) == ["ts", "cpu", "gpus"]
        assert list(point["cpu"]) == ["load_avg", "cpu_count", "pct"]
        assert point["cpu"]["cpu_count"] == agent.snapshot()["cpu"]["count"]
        assert 0 <= point["cpu"]["pct"] <= 100 and isinstance(point["cpu"]["load_avg"], float)
        assert point["gpus"] == []
    # The points taken stay readable after the sampler stopped (the buffer lives with the app).
    assert len(after["points"]) >= len(points)


async def test_max_seconds_limits_the_window_and_zero_means_everything(make_app: Any, agent: Agent) -> None:
    app = make_app(nodeAgentUrls=[agent.url], historySampleSeconds=0.1, historyRetentionSeconds=60)
    async with client_for(app) as http:
        async with running(app):
            deadline = time.monotonic() + 15
            while (await get_json(http, "/api/telemetry/history"))["available_seconds"] < 1.5:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        everything = await get_json(http, "/api/telemetry/history?max_seconds=0")
        default = await get_json(http, "/api/telemetry/history")
        recent = await get_json(http, "/api/telemetry/history?max_seconds=1")
        now = time.time()
        for bad in ("-1", "soon"):
            response = await http.get(f"/api/telemetry/history?max_seconds={bad}")
            assert response.status_code == 422 and isinstance(response.json()["detail"], list)
    assert everything["points"] == default["points"]
    assert 0 < len(recent["points"]) < len(everything["points"])
    assert all(point["ts"] >= now - 1.5 for point in recent["points"])
    assert recent["points"] == everything["points"][-len(recent["points"]) :]


async def test_history_keeps_only_the_retention_window(make_app: Any, agent: Agent) -> None:
    app = make_app(nodeAgentUrls=[agent.url], historySampleSeconds=0.05, historyRetentionSeconds=1)
    async with client_for(app) as http, running(app):
        deadline = time.monotonic() + 15
        while (body := await get_json(http, "/api/telemetry/history"))["available_seconds"] < 0.5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for _ in range(10):
            body = await get_json(http, "/api/telemetry/history")
            assert body["available_seconds"] <= 1
            assert len(body["points"]) <= 1 / 0.05 + 1
            assert body["points"][0]["ts"] >= time.time() - 1.5
            await asyncio.sleep(0.1)


async def test_history_without_an_agent_still_samples_the_gateways_host(make_app: Any) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    app = make_app(nodeAgentUrls=[down], nodeAgentTimeoutSeconds=0.5, historySampleSeconds=0.1)
    async with client_for(app) as http:
        empty = await get_json(http, "/api/telemetry/history")
        assert (empty["points"], empty["from_ts"], empty["to_ts"], empty["available_seconds"]) == (
            [],
            None,
            None,
            0,
        )
        async with running(app):
            deadline = time.monotonic() + 15
            while not (body := await get_json(http, "/api/telemetry/history"))["points"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    point = body["points"][0]
    assert point["cpu"]["cpu_count"] == os.cpu_count() and point["gpus"] == []
    assert 0 <= point["cpu"]["pct"] <= 100
