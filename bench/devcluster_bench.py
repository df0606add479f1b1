"""Benchmark of the devcluster API server (a script, not a test).

Starts ``python -m kubepilot_devcluster --no-controllers`` on a free loopback port with a temporary
data directory, then measures through real HTTP with one keep-alive client:

* create / get / patch latency (p50, p99) over N ConfigMaps (default 10,000);
* watch fan-out: W watchers (default 100) on one namespace, the time from a write's response to the
  event reaching every watcher (p50, p99);
* the server's resident memory with the N objects stored.

Targets: p99 < 5 ms per request, N=10,000 objects under 200 MB RSS.

    .venv/bin/python bench/devcluster_bench.py [--objects 10000] [--watchers 100] [--watch-events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

from kubepilot_devcluster.testing import DevCluster


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _report(name: str, samples_s: list[float]) -> None:
    millis = [s * 1000 for s in samples_s]
    print(
        f"{name:<22} n={len(millis):>6}  p50={_percentile(millis, 0.50):7.3f} ms  "
        f"p99={_percentile(millis, 0.99):7.3f} ms  mean={statistics.fmean(millis):7.3f} ms"
    )


async def _timed(session: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> float:
    started = time.perf_counter()
    async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        await response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {await response.text()}")
    return time.perf_counter() - started


async def _crud(url: str, objects: int) -> None:
    base = f"{url}/api/v1/namespaces/default/configmaps"
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        creates = [
            await _timed(session, "POST", base, json={"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
            for i in range(objects)
        ]
        gets = [await _timed(session, "GET", f"{base}/cm-{i}") for i in range(objects)]
        patches = [
            await _timed(
                session,
                "PATCH",
                f"{base}/cm-{i}",
                data=json.dumps({"data": {"p": "1"}}),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            for i in range(objects)
        ]
    _report("create", creates)
    _report("get", gets)
    _report("patch (merge)", patches)


async def _watch_fanout(url: str, watchers: int, events: int) -> None:
    namespace_url = f"{url}/api/v1/namespaces"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.post(namespace_url, json={"metadata": {"name": "fanout"}}) as response:
            await response.read()
        arrivals: dict[str, list[float]] = {}
        opened: list[bool] = []
        all_open = asyncio.Event()
        complete = asyncio.Event()

        async def watch() -> None:
            params = {"watch": "1", "resourceVersion": "0", "timeoutSeconds": "600"}
            async with session.get(
                f"{namespace_url}/fanout/configmaps", params=params, timeout=aiohttp.ClientTimeout(total=None)
            ) as stream:
                opened.append(True)
                if len(opened) == watchers:
                    all_open.set()
                async for line in stream.content:
                    name = json.loads(line)["object"]["metadata"]["name"]
                    arrivals.setdefault(name, []).append(time.perf_counter())
                    if len(arrivals) == events and all(len(v) == watchers for v in arrivals.values()):
                        complete.set()

        tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
        await asyncio.wait_for(all_open.wait(), timeout=60)
        await asyncio.sleep(0.2)
        sent: dict[str, float] = {}
        writer = aiohttp.ClientSession()
        try:
            for i in range(events):
                name = f"fan-{i}"
                async with writer.post(
                    f"{namespace_url}/fanout/configmaps", json={"metadata": {"name": name}}
                ) as r:
                    await r.read()
                sent[name] = time.perf_counter()
                await asyncio.sleep(0.002)
            await asyncio.wait_for(complete.wait(), timeout=120)
        finally:
            await writer.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    # Time from the writer seeing its response to the LAST of the watchers receiving the event.
    latencies = [max(0.0, max(arrivals[name]) - sent[name]) for name in sent]
    _report(f"watch fan-out x{watchers}", latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--watch-events", type=int, default=200)
    args = parser.parse_args(argv)
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory(prefix="devcluster-bench-") as data_dir:
        cluster = DevCluster(Path(data_dir), controllers=False).start()
        try:
            assert cluster.process is not None
            server = psutil.Process(cluster.process.pid)
            start_rss = server.memory_info().rss / 2**20
            print(f"server: {cluster.url} pid={server.pid} rss at start={start_rss:.1f} MiB")
            asyncio.run(_crud(cluster.url, args.objects))
            print(f"server rss with {args.objects} configmaps: {server.memory_info().rss / 2**20:.1f} MiB")
            asyncio.run(_watch_fanout(cluster.url, args.watchers, args.watch_events))
            print(f"server rss after fan-out: {server.memory_info().rss / 2**20:.1f} MiB")
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
