"""Benchmark of the gateway's read path and its event fan-out (a script, not a test).

One devcluster without controllers (no pod starts: the bench measures the gateway, not the
workloads) with our CRDs, N ServiceInstances in one namespace (the nine ControlPilot services among
them), and the gateway's cluster layer (informer cache, CR store, event bus) started on it.

* **Reads**: ``GET /api/services`` served by the ControlPilot app (in-process ASGI, so the figure
  is the gateway's work, not a socket's) from the informer cache, against the baseline in the same
  run: the same answer rendered from a direct LIST of the namespace's ServiceInstances per
  request, which is what a gateway without a cache does. Target: the cache at least 10x faster.
* **Model catalog reads**: ``GET /api/models`` with N ModelPulls in the namespace, from the cache,
  against the same endpoint preceded by the LIST of ModelPulls a cache-less gateway makes per
  request (the rendering and the volume probe are the same code in both).
* **Pull start**: on a second devcluster *with* controllers, the real operator and a local Hub,
  ``POST /api/models/<name>/pull/start`` for P catalog entries one after another, each timed from
  the request until the ModelPull's status leaves Pending (Downloading, or already Completed for a
  file that downloads between two reports). p50 / p99.
* **WebSocket fan-out**: C clients connected over real sockets to a uvicorn server whose one
  endpoint forwards every bus event of the namespace (the path every profile's WebSocket is fed by:
  watch -> informer -> bus -> socket). The bench patches an object's status M times and measures,
  per client and change, from the moment the patch call starts until the client has the message.
  Target: p99 under 100 ms with 100 clients.

It exits 0 whatever the figures: it is a measurement.

    .venv/bin/python bench/gateway_bench.py [--objects 1000] [--requests 200] [--clients 100]
        [--changes 30] [--pulls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from kubernetes import config

from kubepilot_devcluster.testing import DevCluster, free_port
from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import models as mdl
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.settings import Kube, Settings, Volumes

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tests.operator.harness` importable
    sys.path.insert(0, str(ROOT))

from tests.operator.harness import OperatorProcess, Storage, apply_crds  # noqa: E402
from tests.workers.hubfake import FakeFile, HubFake, bytes_of  # noqa: E402

SI = resource_for("ServiceInstance")
MP = resource_for("ModelPull")
NAMESPACE = "bench"
TARGET_READ_RATIO = 10.0
TARGET_WS_P99_MS = 100.0


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    p50, p99, mean = percentile(ms, 0.5), percentile(ms, 0.99), statistics.fmean(ms)
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, mean {mean:.2f} ms"


def service_instance(name: str, service_type: str) -> dict[str, Any]:
    return {
        "apiVersion": SI.api_version,
        "kind": SI.kind,
        "metadata": {"name": name},
        "spec": {"serviceType": service_type, "running": False},
    }


async def populate(client: KubeClient, count: int) -> None:
    """The nine ControlPilot services plus filler ServiceInstances up to ``count``."""
    await client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
    bodies = [
        svc.new_service_instance(service, running=False)
        for service in svc.KNOWN_SERVICES
        if service.service_type is not None
    ]
    bodies += [service_instance(f"filler-{i:05d}", "jupyter") for i in range(count - len(bodies))]
    semaphore = asyncio.Semaphore(16)

    async def create(body: dict[str, Any]) -> None:
        async with semaphore:
            await client.request("POST", SI.path(NAMESPACE), body=body)

    await asyncio.gather(*(create(body) for body in bodies))


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def bench_reads(ctx: GatewayContext, requests: int) -> float:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def from_cache() -> list[dict[str, Any]]:
            response = await http.get("/api/services")
            assert response.status_code == 200, response.text
            result: list[dict[str, Any]] = response.json()
            return result

        async def from_list() -> list[dict[str, Any]]:
            listed = await ctx.client.request("GET", SI.path(NAMESPACE))
            by_name = {item["metadata"]["name"]: item for item in listed["items"]}
            return [svc.service_item(service, by_name.get(service.name)) for service in svc.KNOWN_SERVICES]

        assert await from_cache() == await from_list(), "both paths must give the same answer"
        await timed(from_cache, 10)
        await timed(from_list, 3)
        cached = await timed(from_cache, requests)
        listed = await timed(from_list, requests)
    ratio = statistics.fmean(listed) / statistics.fmean(cached)
    objects = len(ctx.cache.list(SI, NAMESPACE))
    print(f"GET /api/services, {requests} requests each, {objects} ServiceInstances:")
    print(f"  informer cache:          {summary(cached)}")
    print(f"  direct LIST (baseline):  {summary(listed)}")
    verdict = "PASS" if ratio >= TARGET_READ_RATIO else "MISS"
    print(f"  cache is {ratio:.1f}x faster (target >= {TARGET_READ_RATIO:.0f}x): {verdict}")
    return ratio


def model_pull(name: str) -> dict[str, Any]:
    return {
        "apiVersion": MP.api_version,
        "kind": MP.kind,
        "metadata": {"name": name},
        "spec": {
            "source": {
                "type": "HuggingFace",
                "huggingFace": {"repo": f"org/{name}", "files": ["model.safetensors"]},
            },
            "destination": {"modelType": "checkpoints", "subdir": name},
        },
    }


async def populate_pulls(client: KubeClient, count: int) -> None:
    semaphore = asyncio.Semaphore(16)

    async def create(index: int) -> None:
        async with semaphore:
            await client.request("POST", MP.path(NAMESPACE), body=model_pull(f"pull-{index:05d}"))

    await asyncio.gather(*(create(i) for i in range(count)))


async def bench_model_reads(ctx: GatewayContext, requests: int) -> float:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:

        async def from_cache() -> None:
            response = await http.get("/api/models")
            assert response.status_code == 200, response.text

        async def with_list() -> None:
            await ctx.client.request("GET", MP.path(NAMESPACE))
            await from_cache()

        await timed(from_cache, 10)
        await timed(with_list, 3)
        cached = await timed(from_cache, requests)
        listed = await timed(with_list, requests)
    ratio = statistics.fmean(listed) / statistics.fmean(cached)
    objects = len(ctx.cache.list(MP, NAMESPACE))
    print(f"GET /api/models, {requests} requests each, {objects} ModelPulls:")
    print(f"  informer cache:               {summary(cached)}")
    print(f"  LIST + same render (baseline): {summary(listed)}")
    verdict = "PASS" if ratio >= TARGET_READ_RATIO else "MISS"
    print(f"  cache is {ratio:.1f}x faster (target >= {TARGET_READ_RATIO:.0f}x): {verdict}")
    return ratio


async def bench_pull_start(pulls: int, tmp: Path) -> None:
    """POST pull/start -> ModelPull out of Pending, with the real operator and downloader pods."""
    with HubFake() as hub:
        cluster = DevCluster(tmp / "cluster-with-controllers", controllers=True).start()
        storage = Storage(tmp / "volumes")
        operator = None
        try:
            api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            apply_crds(api)
            operator = OperatorProcess(
                cluster, storage, tmp / "operator", extra={"huggingFaceEndpoint": hub.base_url}
            ).start()
            lines = []
            for index in range(pulls):
                repo = f"org/bench-{index}"
                hub.add_repo(repo, {"model.safetensors": FakeFile(data=bytes_of(repo, 4_000_000))})
                lines.append(f"bench-{index}|hf_file|{repo}:model.safetensors|checkpoints/bench-{index}||")
            hub.throttle_bytes_per_second = 2_000_000
            settings = Settings(
                namespace=NAMESPACE,
                kube=Kube(mode="kubeconfig", kubeconfig=str(cluster.kubeconfig)),
                volumes=Volumes(
                    models=str(storage.models), datasets=str(storage.datasets), outputs=str(storage.outputs)
                ),
            )
            async with KubeClient.from_settings(settings.kube) as client:
                await client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
                configmap = {
                    "metadata": {"name": "controlpilot-models"},
                    "data": {"manifest": "\n".join(lines)},
                }
                await client.request(
                    "POST",
                    CONFIGMAPS.path(NAMESPACE),
                    body={"apiVersion": "v1", "kind": "ConfigMap", **configmap},
                )
                ctx = GatewayContext.build(settings, client)
                async with ctx.cache:
                    await ctx.cache.wait_synced()
                    samples = await time_pull_starts(ctx, pulls)
        finally:
            if operator is not None:
                operator.stop()
            cluster.stop()
    print(f"POST /api/models/<name>/pull/start -> ModelPull out of Pending, {len(samples)} pulls:")
    print(f"  {summary(samples)}")


async def time_pull_starts(ctx: GatewayContext, pulls: int) -> list[float]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    samples = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as http:
        for index in range(pulls):
            name = f"bench-{index}"
            async with ctx.bus.subscribe(kinds=[MP.kind], namespace=NAMESPACE) as events:
                start = time.perf_counter()
                response = await http.post(f"/api/models/{name}/pull/start")
                assert response.status_code == 200, response.text
                pull_name = mdl.pull_name(name)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    current = ctx.cache.get(MP, pull_name, NAMESPACE) or {}
                    if (current.get("status") or {}).get("phase") not in (None, "", "Pending"):
                        samples.append(time.perf_counter() - start)
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(anext(events), 1)
    return samples


def fanout_app(ctx: GatewayContext) -> FastAPI:
    """One WebSocket that forwards the namespace's bus events, as every profile's protocol is fed."""
    app = FastAPI()

    @app.websocket("/ws")
    async def events(socket: WebSocket) -> None:
        await socket.accept()
        async with ctx.bus.subscribe(namespace=NAMESPACE, kinds=[SI.kind]) as subscription:
            await socket.send_text("ready")
            try:
                async for event in subscription:
                    if isinstance(event, ResourceEvent):
                        status = event.object.get("status") or {}
                        await socket.send_text(
                            json.dumps({"name": event.name, "mark": status.get("podName")})
                        )
            except WebSocketDisconnect:
                return

    return app


class Server(threading.Thread):
    """uvicorn on its own thread and loop; the cache lives on that loop too."""

    def __init__(self, settings: Settings, port: int) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.port = port
        self.ready = threading.Event()
        self.server: uvicorn.Server | None = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        async with KubeClient.from_settings(self.settings.kube) as client:
            ctx = GatewayContext.build(self.settings, client)
            async with ctx.cache:
                await ctx.cache.wait_synced()
                config = uvicorn.Config(
                    fanout_app(ctx), host="127.0.0.1", port=self.port, log_level="warning"
                )
                self.server = uvicorn.Server(config)
                self.ready.set()
                await self.server.serve()


async def bench_fanout(settings: Settings, clients: int, changes: int) -> float:
    port = free_port()
    server = Server(settings, port)
    server.start()
    server.ready.wait(60)
    await asyncio.sleep(0.5)
    arrivals: dict[str, list[float]] = {}
    complete: dict[str, asyncio.Event] = {f"bench-{change}": asyncio.Event() for change in range(changes)}
    sockets = []
    for _ in range(clients):
        socket = await websockets.connect(f"ws://127.0.0.1:{port}/ws", max_queue=None)
        assert await socket.recv() == "ready"
        sockets.append(socket)

    async def listen(socket: Any) -> None:
        async for message in socket:
            mark = json.loads(message).get("mark") or ""
            if mark in complete:
                arrivals.setdefault(mark, []).append(time.perf_counter())
                if len(arrivals[mark]) == clients:
                    complete[mark].set()

    listeners = [asyncio.create_task(listen(socket)) for socket in sockets]
    started: dict[str, float] = {}
    async with KubeClient.from_settings(settings.kube) as client:
        for change in range(changes):
            mark = f"bench-{change}"
            started[mark] = time.perf_counter()
            await client.request(
                "PATCH",
                SI.path(NAMESPACE, "comfy", "status"),
                body={"status": {"podName": mark}},
                content_type="application/merge-patch+json",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(complete[mark].wait(), 5)
            await asyncio.sleep(0.05)
    latencies = [at - started[mark] for mark, times in arrivals.items() for at in times]
    missing = clients * changes - len(latencies)
    for socket in sockets:
        await socket.close()
    for task in listeners:
        task.cancel()
    if server.server is not None:
        server.server.should_exit = True
    server.join(10)
    p99_ms = percentile(latencies, 0.99) * 1000
    print(f"WebSocket fan-out, {clients} clients x {changes} status changes ({len(latencies)} messages):")
    print(f"  status patch -> message at the client: {summary(latencies)}; missing {missing}")
    verdict = "PASS" if p99_ms < TARGET_WS_P99_MS and missing == 0 else "MISS"
    print(f"  p99 {p99_ms:.1f} ms (target < {TARGET_WS_P99_MS:.0f} ms): {verdict}")
    return p99_ms


async def main_async(args: argparse.Namespace, cluster: DevCluster) -> None:
    settings = Settings(namespace=NAMESPACE, kube=Kube(mode="kubeconfig", kubeconfig=str(cluster.kubeconfig)))
    async with KubeClient.from_settings(settings.kube) as client:
        start = time.perf_counter()
        await populate(client, args.objects)
        print(f"created {args.objects} ServiceInstances in {time.perf_counter() - start:.1f} s")
        ctx = GatewayContext.build(settings, client)
        async with ctx.cache:
            await ctx.cache.wait_synced()
            await bench_reads(ctx, args.requests)
            start = time.perf_counter()
            await populate_pulls(client, args.objects)
            print(f"created {args.objects} ModelPulls in {time.perf_counter() - start:.1f} s")
            await asyncio.sleep(1)
            await bench_model_reads(ctx, args.requests)
    await bench_fanout(settings, args.clients, args.changes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--pulls", type=int, default=20, help="0: skip the pull-start phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = DevCluster(Path(tmp), controllers=False).start()
        try:
            api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            apply_crds(api)
            asyncio.run(main_async(args, cluster))
        finally:
            cluster.stop()
        if args.pulls:
            asyncio.run(bench_pull_start(args.pulls, Path(tmp)))


if __name__ == "__main__":
    main()
