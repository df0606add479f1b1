"""Benchmark of the operator under a burst of GenerationJobs (a script, not a test).

One devcluster without controllers (Jobs stay objects, no pod starts) with our CRDs, then three
phases on the same cluster, each in a namespace of its own, each with the same N GenerationJobs
(txt2img, 64x64) created at once by several client threads:

* baseline: an empty kopf operator (``bench/empty_kopf_operator.py``, kopf configured as the
  operator configures it, one no-op ``on.event`` handler): the time from each object's create call
  until the handler saw it;
* the kopf floor (the same script with ``--children``: a minimal kopf operator that creates a
  token Secret and a Job per object, writes ``status.jobName`` through kopf's patch and watches its
  Jobs, what every operator meeting the issue must do): the time until its child Job's ADDED event
  reaches the bench's watch. The ratio of the operator to it is what the operator itself adds;
* ``kubepilot operator`` (the real process, no ServiceInstance, so each job becomes a one-shot
  generator Job ``<name>-gen`` plus a Secret): the time from each create call until the child Job's
  ADDED event reaches the bench's watch, and until ``status.jobName`` is written.

Each phase first runs one warm-up object through, so every watch is open and every import done.
Figures: totals (first create call until the last object is handled), per-object latency p50/p99,
also until the operator's last status write on each object (no GenerationJob event for 2 s), the
latency of the bench's own watch (what the API server adds), peak RSS of the operator (children
included), CPU seconds of each process, and cluster writes per object (the devcluster's global
resourceVersion: creates, patches, Events, and the operator's Lease renewals, about one a second).

The ratio of the totals is the target's; on a machine shared with other work it swings with the
load, so the ratio of the CPU the three processes (operator, devcluster, bench) spent until every
object was handled is printed next to it: the work each phase cost, whatever the waiting.

Targets: total at most 1.5x the empty-kopf baseline; p99 create -> child under 1 s; peak RSS under
200 MB. It exits 0 whatever the figures: it is a measurement.

    .venv/bin/python bench/operator_bench.py [--count 1000] [--threads 8] [--workers N] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from kubepilot_devcluster.testing import DevCluster

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tests.operator.harness` importable
    sys.path.insert(0, str(ROOT))

from tests.operator.harness import GROUP, VERSION, OperatorProcess, Storage, apply_crds  # noqa: E402

PLURAL = "generationjobs"
MODEL = "bench/tiny-sd"
EMPTY_OPERATOR = ROOT / "bench" / "empty_kopf_operator.py"
TARGET_RATIO = 1.5
TARGET_P99_S = 1.0
TARGET_RSS_MB = 200.0
WARMUP = "warmup"
QUIET_S = 2.0


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Arrivals:
    """The first time each name was seen (CLOCK_MONOTONIC, comparable across processes)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.last: dict[str, float] = {}
        """The latest time each name was seen (``touch``)."""
        self.last_any = 0.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def record(self, name: str, at: float) -> None:
        with self._changed:
            if name not in self.times:
                self.times[name] = at
                self._changed.notify_all()

    def touch(self, name: str, at: float) -> None:
        """Another event of ``name``: its first time stays, its latest moves."""
        self.record(name, at)
        with self._lock:
            self.last[name] = at
            self.last_any = max(self.last_any, at)

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Wait until nothing was touched for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                since = time.monotonic() - self.last_any
            if since >= quiet:
                return True
            time.sleep(min(quiet - since, 0.1) + 0.01)
        return False

    def wait(self, names: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not names.issubset(self.times):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True


class Watch(threading.Thread):
    """A raw watch (no model deserialization) calling ``on_event(type, object)`` for each line."""

    def __init__(
        self, open_stream: Callable[[], Any], on_event: Callable[[str, dict[str, Any]], None]
    ) -> None:
        super().__init__(daemon=True)
        self._open = open_stream
        self._on_event = on_event
        self._response: Any = None
        self._stopped = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._response = self._open()
            for line in iter_resp_lines(self._response):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                self._on_event(str(event.get("type")), event.get("object") or {})
        except BaseException as error:
            if not self._stopped.is_set():
                self.error = error

    def stop(self) -> None:
        self._stopped.set()
        if self._response is not None:
            with contextlib.suppress(Exception):
                self._response.shutdown()  # unblocks the reading thread; close() alone would wait on it
            with contextlib.suppress(Exception):
                self._response.close()


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples: list[int] = []
        self._stopped = threading.Event()

    def rss(self) -> int:
        total = 0
        for proc in (self.process, *self.process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def run(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(psutil.Error):
                value = self.rss()
                self.samples.append(value)
                self.peak = max(self.peak, value)
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its (live) children."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        for proc in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def _own_cpu() -> float:
    """CPU time of this process (the creating threads and the bench's watches)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _listening(pid: int) -> list[str]:
    """The addresses a process and its children listen on (TCP)."""
    found = []
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        for proc in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        found.append(f"{conn.laddr.ip}:{conn.laddr.port}")
    return sorted(set(found))


def _non_loopback(addresses: list[str]) -> list[str]:
    return [a for a in addresses if not ipaddress.ip_address(a.rsplit(":", 1)[0].strip("[]")).is_loopback]


def _body(namespace: str, name: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "txt2img",
            "model": MODEL,
            "prompt": f"a lighthouse at dusk, variant {index}",
            "width": 64,
            "height": 64,
        },
    }


def _create(
    api: client.ApiClient, namespace: str, names: list[str], threads: int, sent: dict[str, float]
) -> None:
    """Create every name as fast as ``threads`` client threads can; ``sent`` gets each call's start."""
    custom = client.CustomObjectsApi(api)

    def one(item: tuple[int, str]) -> None:
        index, name = item
        body = _body(namespace, name, index)
        sent[name] = time.monotonic()
        response: Any = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, _preload_content=False
        )
        response.read()
        response.release_conn()

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="create") as pool:
        list(pool.map(one, enumerate(names)))


@dataclass
class Phase:
    """What one phase measured."""

    label: str
    count: int
    created_in: float = 0.0
    total: float = 0.0
    handled: int = 0
    latencies: list[float] = field(default_factory=list)
    status_latencies: list[float] = field(default_factory=list)
    status_total: float = 0.0
    last_write: list[float] = field(default_factory=list)
    quiet_total: float = 0.0
    quiet_cpu: float = 0.0
    watch_floor: list[float] = field(default_factory=list)
    peak_rss: int = 0
    idle_rss: int = 0
    cpu: float = 0.0
    cluster_cpu: float = 0.0
    bench_cpu: float = 0.0
    writes: int = 0
    listening: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _watches(api: client.ApiClient, watchers: list[Watch]) -> Iterator[None]:
    for watch in watchers:
        watch.start()
    try:
        yield
    finally:
        for watch in watchers:
            watch.stop()
        api.close()  # type: ignore[no-untyped-call]  # unblocks the streams
        for watch in watchers:
            watch.join(timeout=5)


def _gj_watch(api: client.ApiClient, namespace: str, added: Arrivals, job_named: Arrivals | None) -> Watch:
    custom = client.CustomObjectsApi(api)

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        name = str((obj.get("metadata") or {}).get("name", ""))
        added.touch(name, now)
        if job_named is not None and (obj.get("status") or {}).get("jobName"):
            job_named.record(name, now)

    return Watch(
        lambda: custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, watch=True, timeout_seconds=3600, _preload_content=False
        ),
        on_event,
    )


def _job_watch(api: client.ApiClient, namespace: str, children: Arrivals) -> Watch:
    batch = client.BatchV1Api(api)

    def on_event(kind: str, obj: dict[str, Any]) -> None:
        now = time.monotonic()
        if kind == "DELETED":
            return
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "GenerationJob":
                children.record(str(ref.get("name")), now)

    return Watch(
        lambda: batch.list_namespaced_job(
            namespace, watch=True, timeout_seconds=3600, _preload_content=False
        ),
        on_event,
    )


def _client(cluster: DevCluster, pool: int) -> client.ApiClient:
    configuration = client.Configuration(host=cluster.url)
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def _finish(phase: Phase, names: list[str], sent: dict[str, float], handled: dict[str, float]) -> None:
    done = [n for n in names if n in handled]
    phase.handled = len(done)
    phase.latencies = [max(0.0, handled[n] - sent[n]) for n in done]
    if done:
        phase.total = max(handled[n] for n in done) - min(sent.values())


def _run_baseline(
    args: argparse.Namespace, cluster: DevCluster, api: client.ApiClient, work: Path, children: bool = False
) -> Phase:
    """The empty kopf operator, or with ``children`` the kopf floor (a Secret, a Job, the status)."""
    namespace = "bench-kopf-floor" if children else "bench-empty-kopf"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    phase = Phase("kopf floor" if children else "empty kopf", args.count)
    seen = Arrivals()
    jobs, job_named = Arrivals(), Arrivals()
    log_path = work / f"{namespace}.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(EMPTY_OPERATOR), "--namespace", namespace, *(["--children"] * children)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=ROOT,
        )

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            name, _, at = raw.decode().strip().partition(" ")
            if at:
                seen.record(name, float(at))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    floor = Arrivals()
    watch_api = _client(cluster, 4)
    watchers = [_gj_watch(watch_api, namespace, floor, job_named if children else None)]
    if children:
        watchers.append(_job_watch(watch_api, namespace, jobs))
    handled = jobs if children else seen
    try:
        with _watches(watch_api, watchers):
            _warm_up(api, namespace, handled, process, log_path)
            phase.listening = _listening(process.pid)
            phase.idle_rss = RssSampler(process.pid).rss()
            sampler = RssSampler(process.pid)
            sampler.start()
            names = [f"gj-{i:05d}" for i in range(args.count)]
            sent: dict[str, float] = {}
            cpu0, cluster0, own0 = _cpu_seconds(process.pid), _cpu_seconds(_pid(cluster)), _own_cpu()
            version0 = _cluster_version(api)
            started = time.monotonic()
            _create(api, namespace, names, args.threads, sent)
            phase.created_in = time.monotonic() - started
            if not handled.wait(set(names), args.timeout):
                phase.notes.append(f"timed out after {args.timeout}s")
            phase.cpu = _cpu_seconds(process.pid) - cpu0
            phase.cluster_cpu = _cpu_seconds(_pid(cluster)) - cluster0
            phase.bench_cpu = _own_cpu() - own0
            if children and not job_named.wait(set(names), 30):
                phase.notes.append("status.jobName missing on some objects 30 s after the last Job")
            phase.writes = _cluster_version(api) - version0
            sampler.stop()
            phase.peak_rss = sampler.peak
            floor.wait(set(names), 10)
            phase.watch_floor = [floor.times[n] - sent[n] for n in names if n in floor.times]
            _finish(phase, names, sent, handled.times)
            named = [n for n in names if n in job_named.times]
            phase.status_latencies = [job_named.times[n] - sent[n] for n in named]
            if named:
                phase.status_total = max(job_named.times[n] for n in named) - min(sent.values())
    finally:
        _stop(process)
    return phase


def _warm_up(api: client.ApiClient, namespace: str, seen: Arrivals, process: Any, log_path: Path) -> None:
    """One object through the whole path: watches open, imports done, first-time work (accounts)."""
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _body(namespace, WARMUP, 0))
    deadline = time.monotonic() + 60
    while not seen.wait({WARMUP}, 0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"warm-up object not handled in {namespace}: {tail}")


def _run_operator(args: argparse.Namespace, cluster: DevCluster, api: client.ApiClient, work: Path) -> Phase:
    namespace = "bench-operator"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    phase = Phase("kubepilot operator", args.count)
    extra: dict[str, Any] = {"healthPort": 0, "namespaces": [namespace]}  # healthPort 0: no 0.0.0.0 listener
    if args.workers:
        extra["reconcileWorkers"] = args.workers
    storage = Storage(work / "volumes")
    # The jobs' model must be on the models volume (the operator checks before it starts a Job);
    # an empty folder will do: no pod runs here.
    (storage.models / MODEL).mkdir(parents=True, exist_ok=True)
    operator = OperatorProcess(cluster, storage, work / "operator", extra=extra)
    children, job_named, floor = Arrivals(), Arrivals(), Arrivals()
    watch_api = _client(cluster, 4)
    try:
        operator.start()
        assert operator.process is not None
        pid = operator.process.pid
        watchers = [
            _job_watch(watch_api, namespace, children),
            _gj_watch(watch_api, namespace, floor, job_named),
        ]
        with _watches(watch_api, watchers):
            _warm_up(api, namespace, children, operator.process, operator.log_path)
            job_named.wait({WARMUP}, 10)
            phase.listening = _listening(pid)
            phase.idle_rss = RssSampler(pid).rss()
            sampler = RssSampler(pid)
            sampler.start()
            names = [f"gj-{i:05d}" for i in range(args.count)]
            sent: dict[str, float] = {}
            cpu0, cluster0, own0 = _cpu_seconds(pid), _cpu_seconds(_pid(cluster)), _own_cpu()
            version0 = _cluster_version(api)
            started = time.monotonic()
            _create(api, namespace, names, args.threads, sent)
            phase.created_in = time.monotonic() - started
            if not children.wait(set(names), args.timeout):
                phase.notes.append(f"timed out after {args.timeout}s waiting for Jobs")
            phase.cpu = _cpu_seconds(pid) - cpu0
            phase.cluster_cpu = _cpu_seconds(_pid(cluster)) - cluster0
            phase.bench_cpu = _own_cpu() - own0
            if not job_named.wait(set(names), 30):
                phase.notes.append("status.jobName missing on some objects 30 s after the last Job")
            _finish(phase, names, sent, children.times)
            named = [n for n in names if n in job_named.times]
            phase.status_latencies = [job_named.times[n] - sent[n] for n in named]
            if named:
                phase.status_total = max(job_named.times[n] for n in named) - min(sent.values())
            floor.wait(set(names), 10)
            phase.watch_floor = [floor.times[n] - sent[n] for n in names if n in floor.times]
            # The operator's work is done when its last status write has come and gone: no event
            # on any GenerationJob for QUIET_S (its Lease renewals are not GenerationJobs).
            if not floor.wait_quiet(QUIET_S, args.timeout):
                phase.notes.append(f"GenerationJobs still changing after {args.timeout}s")
            phase.quiet_cpu = _cpu_seconds(pid) - cpu0
            phase.writes = _cluster_version(api) - version0
            phase.last_write = [floor.last[n] - sent[n] for n in names if n in floor.last]
            if phase.last_write:
                phase.quiet_total = max(floor.last[n] for n in names if n in floor.last) - min(sent.values())
            if args.settle > 0:
                cpu1, version1 = _cpu_seconds(pid), _cluster_version(api)
                time.sleep(args.settle)
                settle_cpu = _cpu_seconds(pid) - cpu1
                settle_writes = _cluster_version(api) - version1
                phase.notes.append(
                    f"then idle with {args.count + 1} jobs held, over {args.settle:g} s: "
                    f"{settle_cpu / args.settle * 100:.0f} % of a core, {settle_writes} cluster writes "
                    f"(its Lease renewals included), rss {sampler.rss() / 2**20:.0f} MiB"
                )
            sampler.stop()
            phase.peak_rss = sampler.peak
            phase.notes.extend(_operator_notes(operator))
    finally:
        operator.stop()
    return phase


def _operator_notes(operator: OperatorProcess) -> list[str]:
    notes = []
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"{operator.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        passes = {
            m.group(1): float(m.group(2))
            for m in re.finditer(
                r'^kubepilot_reconcile_total\{kind="GenerationJob",result="(\w+)"\} (\S+)$', text, re.M
            )
        }
        sums = re.search(
            r'^kubepilot_reconcile_duration_seconds_sum\{kind="GenerationJob"\} (\S+)$', text, re.M
        )
        counts = re.search(
            r'^kubepilot_reconcile_duration_seconds_count\{kind="GenerationJob"\} (\S+)$', text, re.M
        )
        if passes:
            notes.append(
                "GenerationJob reconcile passes: " + ", ".join(f"{k} {v:.0f}" for k, v in passes.items())
            )
        if sums and counts and float(counts.group(1)):
            notes.append(
                f"mean reconcile pass: {float(sums.group(1)) / float(counts.group(1)) * 1000:.1f} ms"
            )
    warnings = [
        line for line in operator.log_tail(100_000).splitlines() if " WARNING " in line or " ERROR " in line
    ]
    if warnings:
        notes.append(f"operator log: {len(warnings)} warning/error lines, first: {warnings[0][:300]}")
    return notes


def _cluster_version(api: client.ApiClient) -> int:
    """The devcluster's global resourceVersion: one step per write (create, patch, delete) anywhere."""
    listing: Any = client.CoreV1Api(api).list_namespace(limit=1)
    return int(listing.metadata.resource_version)


def _pid(cluster: DevCluster) -> int:
    assert cluster.process is not None
    return cluster.process.pid


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _work_cpu(phase: Phase) -> float:
    """CPU seconds of the operator (or empty kopf), the devcluster and this process in a phase."""
    return phase.cpu + phase.cluster_cpu + phase.bench_cpu


def _ms(samples: list[float], fraction: float) -> str:
    return f"{_percentile(samples, fraction) * 1000:.0f} ms" if samples else "-"


def _report(base: Phase, floor: Phase, op: Phase, cluster_listening: list[str], command: str) -> None:
    phases = (base, floor, op)

    def row(name: str, value: Callable[[Phase], str], only: tuple[Phase, ...] = phases) -> tuple[str, ...]:
        return (name, *(value(p) if p in only else "-" for p in phases))

    children = (floor, op)
    rows: list[tuple[str, ...]] = [
        row("objects handled", lambda p: f"{p.handled}/{p.count}" + (" with a Job" if p is not base else "")),
        row("creates issued in", lambda p: f"{p.created_in:.2f} s"),
        row("total: first create -> last handled", lambda p: f"{p.total:.2f} s"),
        row("create -> seen / child Job p50", lambda p: _ms(p.latencies, 0.5)),
        row("create -> seen / child Job p99", lambda p: _ms(p.latencies, 0.99)),
        row("create -> status.jobName p50", lambda p: _ms(p.status_latencies, 0.5), children),
        row("create -> status.jobName p99", lambda p: _ms(p.status_latencies, 0.99), children),
        row("total until every status.jobName", lambda p: f"{p.status_total:.2f} s", children),
        row("create -> last status write p50", lambda p: _ms(p.last_write, 0.5), (op,)),
        row("create -> last status write p99", lambda p: _ms(p.last_write, 0.99), (op,)),
        row("total until the last status write", lambda p: f"{p.quiet_total:.2f} s", (op,)),
        row("bench watch, create -> ADDED p50", lambda p: _ms(p.watch_floor, 0.5)),
        row("bench watch, create -> ADDED p99", lambda p: _ms(p.watch_floor, 0.99)),
        row("rss before the burst", lambda p: f"{p.idle_rss / 2**20:.0f} MiB"),
        row("peak rss", lambda p: f"{p.peak_rss / 2**20:.0f} MiB"),
        row("operator cpu until every one handled", lambda p: f"{p.cpu:.1f} s"),
        row("operator cpu until the last write", lambda p: f"{p.quiet_cpu:.1f} s", (op,)),
        row("devcluster cpu until every one handled", lambda p: f"{p.cluster_cpu:.1f} s"),
        row("bench process cpu (creates, watches)", lambda p: f"{p.bench_cpu:.1f} s"),
        row("cpu of the three processes", lambda p: f"{_work_cpu(p):.1f} s"),
        row("cluster writes per object", lambda p: f"{p.writes / p.count:.2f}"),
    ]
    print()
    print(f"{'':<38}" + "".join(f"{p.label:>20}" for p in phases))
    for name, *values in rows:
        print(f"{name:<38}" + "".join(f"{v:>20}" for v in values))
    for phase in phases:
        if phase.latencies:
            print(f"{phase.label}: mean create -> handled {statistics.fmean(phase.latencies) * 1000:.0f} ms")
        for note in phase.notes:
            print(f"{phase.label}: {note}")
    listening = {"devcluster": cluster_listening, **{p.label: p.listening for p in phases}}
    exposed = {k: _non_loopback(v) for k, v in listening.items() if _non_loopback(v)}
    print("listening: " + "; ".join(f"{k} {', '.join(v) or 'nothing'}" for k, v in listening.items()))
    print(f"non-loopback listeners: {exposed or 'none'}")

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("inf")

    complete = all(p.handled == p.count for p in phases)
    total_ratio = ratio(op.total, base.total)
    p99 = _percentile(op.latencies, 0.99) if op.latencies else float("inf")
    rss_mb = op.peak_rss / 1e6
    print()
    print(
        f"ratio operator/empty kopf (total time): {total_ratio:.2f}x  (target <= {TARGET_RATIO}x)  "
        f"{'PASS' if complete and total_ratio <= TARGET_RATIO else 'MISS'}"
    )
    print(
        f"cpu ratio operator/empty kopf (operator + devcluster + bench, until every one handled): "
        f"{ratio(_work_cpu(op), _work_cpu(base)):.2f}x  (the work done, not the waiting: steadier than "
        "the total on a busy machine)"
    )
    print(
        "the floor, kopf doing only the required writes / empty kopf: "
        f"total {ratio(floor.total, base.total):.2f}x, cpu {ratio(_work_cpu(floor), _work_cpu(base)):.2f}x  "
        "(what any kopf operator creating a Secret and a Job and writing the status pays here)"
    )
    print(
        f"operator / the floor: total {ratio(op.total, floor.total):.2f}x, "
        f"cpu {ratio(_work_cpu(op), _work_cpu(floor)):.2f}x, "
        f"operator process cpu {ratio(op.cpu, floor.cpu):.2f}x  (what the operator adds over the floor)"
    )
    print(
        f"p99 create -> child Job: {p99 * 1000:.0f} ms  (target < {TARGET_P99_S * 1000:.0f} ms)  "
        f"{'PASS' if complete and p99 < TARGET_P99_S else 'MISS'}"
    )
    print(
        f"peak operator rss: {rss_mb:.0f} MB ({op.peak_rss / 2**20:.0f} MiB)  "
        f"(target < {TARGET_RSS_MB:.0f} MB)  {'PASS' if rss_mb < TARGET_RSS_MB else 'MISS'}"
    )
    print(f"command: {command}")


def _command(args: argparse.Namespace) -> str:
    python = sys.executable
    with contextlib.suppress(ValueError):
        relative = os.path.relpath(python, Path.cwd())
        if not relative.startswith(".."):
            python = relative
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    parts = [python, script, "--count", str(args.count), "--threads", str(args.threads)]
    if args.workers:
        parts += ["--workers", str(args.workers)]
    parts += ["--settle", f"{args.settle:g}", "--timeout", f"{args.timeout:g}"]
    if args.keep:
        parts.append("--keep")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="GenerationJobs per phase")
    parser.add_argument("--threads", type=int, default=8, help="client threads creating them")
    parser.add_argument("--workers", type=int, default=0, help="the operator's reconcileWorkers (0: default)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to watch the operator afterwards")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for a phase")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs, devcluster data)")
    args = parser.parse_args(argv)
    command = _command(args)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so the finally blocks stop every process started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print("command:", command)
    work = Path(tempfile.mkdtemp(prefix="operator-bench-"))
    cluster = DevCluster(work / "devcluster", controllers=False)
    try:
        cluster.start()
        print(f"devcluster: {cluster.url} (controllers off), data in {work}")
        api = _client(cluster, max(args.threads, 4))
        try:
            apply_crds(api)
            cluster_listening = _listening(_pid(cluster))
            base = _run_baseline(args, cluster, api, work)
            print(f"empty kopf: {base.handled}/{base.count} seen in {base.total:.2f} s")
            floor = _run_baseline(args, cluster, api, work, children=True)
            print(f"kopf floor: {floor.handled}/{floor.count} Jobs in {floor.total:.2f} s")
            op = _run_operator(args, cluster, api, work)
            print(f"operator: {op.handled}/{op.count} Jobs in {op.total:.2f} s")
        finally:
            api.close()  # type: ignore[no-untyped-call]
        _report(base, floor, op, cluster_listening, command)
    finally:
        cluster.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
