"""sd.cpp Studio's A1111 txt2img through the gateway against the same generation sent to the
generator directly (a script, not a test).

One devcluster with controllers, the real operator (its worker pods run as local processes), a
tiny random Stable Diffusion model on the models volume, and the sd.cpp Studio app in-process
(ASGI, so the figure is the gateway's work, not a socket's) on the gateway's cluster layer
(informer cache, CR store, event bus). A ``kubepilot-generator`` ServiceInstance serving the model
is started first, so a warm generator takes the jobs, as in a user's cluster.

* **Per image, warm service**: ``POST /sdapi/v1/txt2img`` (GenerationJob -> operator -> dispatch to
  the service's executor API -> generator -> status back through the operator's intake -> watch ->
  the PNG read and base64-encoded) against the **baseline in the same run**: the same request
  (model, size, steps, sampler, seed) posted straight to that very generator's executor API
  (``POST /v1/jobs``; its output folder watched, then the job read, the PNG read back).
  Interleaved, rotating which goes first. The overhead is reported twice: gateway minus
  baseline, paired per round (p50, p99; on a shared CPU the generation's own jitter, seconds,
  swamps it), and each gateway call minus the
  generator's own time for that very job (from the moment the watch shows it Processing until
  its last file is on disk), which the jitter does not touch (target: p50 under 100 ms on top of
  the generation). The stages of a call, as the gateway's watch sees them, are printed too.
* **Queue throughput**: 50 jobs queued at once through ``POST /api/queue/generate`` until all are
  Completed (jobs/s), against the same 50 jobs submitted straight to the executor.
* **One-shot Job path**, for comparison: the service stopped, a few txt2img calls each run by a
  fresh one-shot generator Job (pod start and model load included), against the warm baseline.

It exits 0 whatever the figures: it is a measurement. Rerun with::

    .venv/bin/python bench/sdcpp_bench.py [--rounds 20] [--queue 50] [--oneshot 2] [--steps 4] [--size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from kubernetes import config

from kubepilot_api.workers.config import GenerationRequest
from kubepilot_api.workers.executor import JOBS_PATH, ExecutorSubmit
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from kubepilot_gateway.settings import Kube, Settings, Volumes

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tests.operator.harness` importable
    sys.path.insert(0, str(ROOT))

from tests.operator.harness import TINY_MODEL, OperatorProcess, Storage, apply_crds  # noqa: E402

GJ = resource_for("GenerationJob")
SI = resource_for("ServiceInstance")
NAMESPACE = "bench"
SERVICE = "bench-generator"
MODEL_ID = "tiny-sd"
SAMPLER = "Euler a"
TARGET_OVERHEAD_P50_MS = 100.0
STAGES = ("created", "dispatched", "processing", "finished", "answered")
"""Where a gateway txt2img spends its time, as the gateway's cache sees the job: POST until the
job's first watch event, until it is dispatched (to the service, or a one-shot Job), until it is
Processing, until it is finished, until the answer (PNG read, base64) is back."""
JsonObject = dict[str, Any]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def spread(label: str, samples: list[float]) -> str:
    return f"  {label:<25} p50 {ms(statistics.median(samples))}  p99 {ms(percentile(samples, 0.99))}"


class LostJob(RuntimeError):
    """A gateway txt2img that did not answer 200 (e.g. its job never got its final report)."""


class Bench:
    """The stack under measurement: the gateway app, the cluster layer, the generator service."""

    def __init__(self, ctx: GatewayContext, storage: Storage, args: argparse.Namespace) -> None:
        self.ctx = ctx
        self.storage = storage
        self.args = args
        self.gateway = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://gateway", timeout=300
        )
        self.executor = httpx.AsyncClient(timeout=60)
        self.executor_url = ""
        self.stages: dict[str, list[float]] = {}
        self.report_back: list[float] = []
        self.lost: list[str] = []
        self.pipeline: list[float] = []
        """Gateway path: the call's time minus the generator's own (see ``through_gateway``)."""
        """Gateway path: from the generator's last file on disk until the watch showed the job done."""
        self.poll_back: list[float] = []
        """Baseline: from the generator's last file on disk until the poll saw the job Succeeded."""

    @staticmethod
    def written_at(image: Path) -> float:
        """When the generator finished an image: the newest mtime in its folder (PNG, metadata)."""
        return max(entry.stat().st_mtime for entry in image.parent.iterdir())

    async def wait_for(self, kind: str, name: str, done: Callable[[JsonObject], bool], within: float) -> None:
        """Until ``done`` holds for the object (waiting on the bus, subscribed before looking)."""
        resource = SI if kind == SI.kind else GJ
        async with self.ctx.bus.subscribe(kinds=[kind], namespace=NAMESPACE) as events:
            current = self.ctx.cache.get(resource, name, NAMESPACE)
            if current is not None and done(current):
                return
            async with asyncio.timeout(within):
                async for item in events:
                    if isinstance(item, ResourceEvent) and item.name != name:
                        continue
                    current = self.ctx.cache.get(resource, name, NAMESPACE)
                    if current is not None and done(current):
                        return

    async def start_service(self) -> float:
        body = {
            "apiVersion": "kubepilot.io/v1alpha1",
            "kind": "ServiceInstance",
            "metadata": {"name": SERVICE},
            "spec": {"serviceType": "kubepilot-generator", "models": [TINY_MODEL], "running": True},
        }
        started = time.perf_counter()
        await self.ctx.store.create(SI, body)

        def running(cr: JsonObject) -> bool:
            status = cr.get("status") or {}
            return (
                status.get("phase") == "Running"
                and bool(status.get("ready"))
                and bool(status.get("endpoint"))
            )

        await self.wait_for(SI.kind, SERVICE, running, 300)
        service = self.ctx.cache.get(SI, SERVICE, NAMESPACE)
        assert service is not None
        self.executor_url = str(service["status"]["endpoint"]).rstrip("/")
        return time.perf_counter() - started

    async def stop_service(self) -> None:
        await self.ctx.store.patch(SI, SERVICE, {"spec": {"running": False}})
        await self.wait_for(
            SI.kind, SERVICE, lambda cr: (cr.get("status") or {}).get("phase") == "Stopped", 120
        )

    def a1111_body(self, seed: int) -> JsonObject:
        size = self.args.size
        return {
            "prompt": "a lighthouse at dusk",
            "width": size,
            "height": size,
            "steps": self.args.steps,
            "sampler_name": SAMPLER,
            "cfg_scale": 7.0,
            "seed": seed,
        }

    async def through_gateway(self, seed: int) -> float:
        """One A1111 txt2img; also records when the gateway's cache saw the job reach each stage."""
        seen: dict[str, float] = {}

        async def watch() -> None:
            async with self.ctx.bus.subscribe(kinds=[GJ.kind], namespace=NAMESPACE) as events:
                subscribed.set()
                async for item in events:
                    if not isinstance(item, ResourceEvent) or item.object is None:
                        continue
                    status = item.object.get("status") or {}
                    stamp = time.perf_counter()
                    seen.setdefault("created", stamp)
                    if status.get("assignedService") or status.get("jobName"):
                        seen.setdefault("dispatched", stamp)
                    if status.get("phase") == "Processing":
                        seen.setdefault("processing", stamp)
                    if status.get("phase") in ("Completed", "Failed", "Cancelled"):
                        seen.setdefault("finished", stamp)
                        finished_wall.setdefault("at", time.time())
                        outputs.extend(status.get("outputs") or [])

        subscribed = asyncio.Event()
        finished_wall: dict[str, float] = {}
        outputs: list[JsonObject] = []
        watcher = asyncio.create_task(watch())
        await subscribed.wait()
        started = time.perf_counter()
        answer = await self.gateway.post("/sdapi/v1/txt2img", json=self.a1111_body(seed))
        elapsed = time.perf_counter() - started
        watcher.cancel()
        if answer.status_code != 200:
            raise LostJob(answer.text)
        assert len(answer.json()["images"]) == 1
        marks = [started]
        for stage in STAGES[:-1]:  # a stage the watch never showed (too short) takes no time
            marks.append(seen.get(stage, marks[-1]))
        marks.append(started + elapsed)
        if outputs and "at" in finished_wall:
            written = self.written_at(self.storage.outputs / str(outputs[0]["path"]))
            back = finished_wall["at"] - written
            self.report_back.append(back)
            # Everything but the generation: the whole call minus [Processing seen -> the
            # generator's last file] (a job too short to be seen Processing counts its dispatch
            # wait as generation, so this errs low by that wait).
            generating = (marks[4] - marks[3]) - back
            self.pipeline.append(elapsed - generating)
        for name, before, after in zip(STAGES, marks[:-1], marks[1:], strict=True):
            self.stages.setdefault(name, []).append(after - before)
        return elapsed

    def direct_request(self, seed: int) -> JsonObject:
        request = GenerationRequest(
            type="txt2img",
            modelPath=str(self.storage.models / TINY_MODEL),
            prompt="a lighthouse at dusk",
            width=self.args.size,
            height=self.args.size,
            steps=self.args.steps,
            seed=seed,
            cfgScale=7.0,
            sampler=SAMPLER,
        )
        job_id = uuid.uuid4().hex
        out = self.storage.outputs / "bench-direct" / job_id
        submit = ExecutorSubmit(jobId=job_id, request=request, outputDir=str(out))
        return submit.model_dump(mode="json", exclude_none=True)

    async def submit_direct(self, body: JsonObject) -> str:
        answer = await self.executor.post(f"{self.executor_url}{JOBS_PATH}", json=body)
        assert answer.status_code in (200, 202), answer.text
        return str(body["jobId"])

    async def finished_direct(self, job_id: str, out_dir: Path) -> JsonObject:
        """The job once Succeeded. Its folder is watched first (a stat every 2 ms, in this process)
        and the executor asked only once files appear: polling its API all along would take CPU
        and the GIL from the very generation being timed."""
        # A stat loop on purpose: nothing in this process can be awaited for another's file.
        while not (out_dir.is_dir() and any(out_dir.glob("*.png"))):  # noqa: ASYNC240, ASYNC110
            await asyncio.sleep(0.002)
        while True:
            job = (await self.executor.get(f"{self.executor_url}{JOBS_PATH}/{job_id}")).json()
            if job["state"] in ("Succeeded", "Failed", "Cancelled"):
                assert job["state"] == "Succeeded", job
                return dict(job)
            await asyncio.sleep(0.005)

    async def direct(self, seed: int) -> float:
        """The same generation posted to the generator itself; until its PNG is read back."""
        body = self.direct_request(seed)
        started = time.perf_counter()
        job = await self.finished_direct(await self.submit_direct(body), Path(body["outputDir"]))
        done_at = time.time()
        path = Path(job["outputs"][0]["path"])  # under the outputs volume (or absolute)
        candidates = (
            [path] if path.is_absolute() else [self.storage.outputs / path, Path(body["outputDir"]) / path]
        )
        found = next(c for c in candidates if c.is_file())
        data = found.read_bytes()
        self.poll_back.append(done_at - self.written_at(found))
        elapsed = time.perf_counter() - started
        assert data.startswith(b"\x89PNG")
        return elapsed

    async def rounds(self) -> tuple[list[float], list[float]]:
        gateway, direct = [], []
        sides: list[Callable[[int], Awaitable[float]]] = [self.through_gateway, self.direct]
        for index in range(self.args.rounds):
            order = sides if index % 2 == 0 else sides[::-1]
            try:
                timings = [await side(1000 + index) for side in order]
            except LostJob as error:
                self.lost.append(str(error))
                continue
            if index % 2:
                timings.reverse()
            gateway.append(timings[0])
            direct.append(timings[1])
        return gateway, direct

    async def queue_through_gateway(self, count: int) -> tuple[float, int, list[str]]:
        """(seconds until the last completion, jobs completed, jobs stuck): a job that shows no
        change for ``--stall`` seconds while others are done counts as stuck (a lost final report
        leaves a job Processing), so one bad job does not hang the run."""
        names: list[str] = []
        body = {
            "prompt": "a lighthouse at dusk",
            "model": MODEL_ID,
            "size": f"{self.args.size}x{self.args.size}",
            "sample_steps": self.args.steps,
            "sampling_method": SAMPLER,
        }

        def completed() -> list[str]:
            phases = {
                n: ((self.ctx.cache.get(GJ, n, NAMESPACE) or {}).get("status") or {}).get("phase")
                for n in names
            }
            failed = [p for p in phases.values() if p in ("Failed", "Cancelled")]
            assert not failed, phases
            return [n for n, p in phases.items() if p == "Completed"]

        async with self.ctx.bus.subscribe(kinds=[GJ.kind], namespace=NAMESPACE) as events:
            started = time.perf_counter()
            for index in range(count):
                answer = await self.gateway.post("/api/queue/generate", json={**body, "seed": index})
                assert answer.status_code == 200, answer.text
                names.append(answer.json()["job_id"])
            done, last = 0, time.perf_counter()
            while True:
                now_done = len(completed())
                if now_done > done:
                    done, last = now_done, time.perf_counter()
                if done == count or time.perf_counter() - last > self.args.stall:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await anext(aiter(events))
            stuck = sorted(set(names) - set(completed()))
            return last - started, done, stuck

    async def queue_direct(self, count: int) -> float:
        bodies = [self.direct_request(index) for index in range(count)]
        started = time.perf_counter()
        ids = [await self.submit_direct(body) for body in bodies]
        for job_id, body in zip(ids, bodies, strict=True):
            await self.finished_direct(job_id, Path(body["outputDir"]))
        return time.perf_counter() - started


async def run(args: argparse.Namespace, cluster: DevCluster, storage: Storage) -> None:
    settings = Settings(
        namespace=NAMESPACE,
        kube=Kube(mode="kubeconfig", kubeconfig=str(cluster.kubeconfig)),
        volumes=Volumes(
            models=str(storage.models), datasets=str(storage.datasets), outputs=str(storage.outputs)
        ),
        profileSettings={
            "sdcpp-studio": {
                "models": [{"id": MODEL_ID, "path": TINY_MODEL}],
                "inputsDir": "sdcpp-studio/inputs",
                "syncTimeoutSeconds": 120,
            }
        },
    )
    async with KubeClient.from_settings(settings.kube) as client:
        await client.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
        ctx = GatewayContext.build(settings, client)
        async with ctx.cache:
            await ctx.cache.wait_synced()
            bench = Bench(ctx, storage, args)
            print(f"generator service Running and ready in {await bench.start_service():.1f} s")
            for seed in range(2):  # warm-up: model load, pipeline caches, both paths
                await bench.through_gateway(seed)
                await bench.direct(seed)
            bench.stages.clear()
            bench.report_back.clear()
            bench.poll_back.clear()
            bench.pipeline.clear()

            gateway, direct = await bench.rounds()
            overhead = [g - d for g, d in zip(gateway, direct, strict=True)]
            p50, p99 = statistics.median(overhead), percentile(overhead, 0.99)
            print(
                f"\ntxt2img {args.size}x{args.size}, {args.steps} steps, {args.rounds} rounds, warm service:"
            )
            print(spread("direct to the generator", direct))
            print(spread("through the gateway", gateway))
            print(f"  overhead, paired rounds   p50 {ms(p50)}  p99 {ms(p99)}  (gateway minus direct)")
            for text in bench.lost:
                print(f"  LOST round (not counted): {text[:200]}")
            ratio = statistics.median(gateway) / statistics.median(direct)
            print(f"  ratio gateway/direct      p50 {ratio:.2f}")
            print("  where the gateway's time goes (p50 per stage, seen from the gateway's watch):")
            for name in STAGES:
                print(f"    until {name:<12} {ms(statistics.median(bench.stages[name]))}")
            pipeline_p50 = statistics.median(bench.pipeline)
            verdict = "met" if pipeline_p50 * 1000 < TARGET_OVERHEAD_P50_MS else "NOT met"
            print(
                f"  overhead, generation taken out of each call: p50 {ms(pipeline_p50)}  "
                f"p99 {ms(percentile(bench.pipeline, 0.99))}  "
                f"(target p50 < {TARGET_OVERHEAD_P50_MS:.0f} ms: {verdict})"
            )
            print(
                "  generator's last file -> job seen done: "
                f"gateway p50 {ms(percentile(bench.report_back, 0.5))}, "
                f"direct poll p50 {ms(percentile(bench.poll_back, 0.5))}"
            )

            if args.queue:
                through, done, stuck = await bench.queue_through_gateway(args.queue)
                own = await bench.queue_direct(args.queue)
                print(f"\nqueue of {args.queue} jobs:")
                print(f"  direct to the generator   {args.queue / own:6.2f} jobs/s ({own:.1f} s)")
                print(f"  through the gateway       {done / through:6.2f} jobs/s ({done} in {through:.1f} s)")
                print(f"  ratio gateway/direct      {(done / through) / (args.queue / own):.2f}")
                for name in stuck:
                    status = (bench.ctx.cache.get(GJ, name, NAMESPACE) or {}).get("status") or {}
                    print(
                        f"  STUCK {name}: {status.get('phase')} for over {args.stall:.0f} s "
                        "(final report lost?)"
                    )

            if args.oneshot:
                await bench.stop_service()
                bench.stages.clear()
                oneshot = [await bench.through_gateway(100 + i) for i in range(args.oneshot)]
                base = statistics.median(direct)
                print(f"\none-shot Job path (service stopped), {args.oneshot} images:")
                print(
                    f"  through the gateway       p50 {ms(statistics.median(oneshot))}  "
                    f"max {ms(max(oneshot))}"
                )
                print(
                    f"  overhead vs warm direct   p50 {ms(statistics.median(oneshot) - base)} "
                    "(pod start and model load included)"
                )
                for name in STAGES:
                    print(f"    until {name:<12} {ms(statistics.median(bench.stages[name]))}")
            await bench.gateway.aclose()
            await bench.executor.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20, help="paired images (gateway, direct)")
    parser.add_argument("--queue", type=int, default=50, help="queued jobs; 0 skips the phase")
    parser.add_argument("--oneshot", type=int, default=2, help="one-shot Job images; 0 skips the phase")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--stall", type=float, default=60, help="seconds without a completion: stop waiting")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "volumes")
        model = storage.models / TINY_MODEL
        command = [sys.executable, "-m", "kubepilot_workers.tinymodels", "sd", str(model)]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
        cluster = DevCluster(Path(tmp) / "cluster", controllers=True).start()
        operator = None
        try:
            api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            apply_crds(api)
            operator = OperatorProcess(cluster, storage, Path(tmp) / "operator").start()
            asyncio.run(run(args, cluster, storage))
        finally:
            if operator is not None:
                operator.stop()
            cluster.stop()
    print("\nrerun: .venv/bin/python bench/sdcpp_bench.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
