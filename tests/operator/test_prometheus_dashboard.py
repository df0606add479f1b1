"""The chart's Grafana dashboard against a real Prometheus scraping a real operator.

A Prometheus server (Debian's ``prometheus`` package, installed by ``scripts/test.sh``) scrapes the
operator's ``/metrics`` every second while a small end-to-end workload runs: a ModelPull that
completes, a TrainingRun that succeeds, a one-shot GenerationJob that completes and a
ServiceInstance whose pod cannot start. Then every panel query of
``charts/kubepilot/files/grafana-dashboard.json`` is evaluated through Prometheus' HTTP API.

This proves that each query parses, that every metric it names is one the operator really
exports (a renamed metric, a missing ``_total`` or ``_bucket`` suffix, a metric never set shows
up here, not as an empty panel in production), and that the panels this workload must feed
return series carrying the labels the panel groups by.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubepilot_devcluster.testing import free_port
from tests.operator.harness import ROOT, Objects, OperatorProcess, Storage, condition
from tests.workers._trainer_tiny import make_dataset
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow

DASHBOARD = ROOT / "charts" / "kubepilot" / "files" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bkubepilot_[A-Za-z0-9_:]*")
GROUP_BY = re.compile(r"\bby\s*\(([^)]*)\)")
# Panels whose every metric is listed here may legitimately return nothing after this workload:
# the queue depth is per generator ServiceInstance, and the workload's GenerationJob runs as a
# one-shot Job, so no service queue exists. Their queries must still parse and name real metrics.
MAY_BE_EMPTY = {"kubepilot_generation_queue_depth"}


class Prometheus:
    """A ``prometheus`` process on a free loopback port with its own storage folder."""

    def __init__(self, workdir: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(
                "prometheus is not installed: scripts/test.sh installs it (apt-get install prometheus)"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "kubepilot-operator",
                            "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}],
                        }
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready within {timeout}s: {self.log_tail()}")

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; Prometheus answers errors (400, 422) with a JSON body too."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
        result: dict[str, Any] = json.loads(body)
        return result

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query at the server's current time."""
        return self.api("query", query=expr)

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values")["data"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def prometheus(operator: OperatorProcess, tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, urllib.parse.urlsplit(operator.url).netloc)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def panel_queries() -> list[tuple[str, str]]:
    """(panel title and refId, expr) of every target of every panel, rows' nested panels included."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel.get('title')!r} ({target.get('refId', '?')})", str(target["expr"]))
        for panel in walk(dashboard["panels"])
        for target in panel.get("targets") or []
        if target.get("expr")
    ]


def grouping_labels(expr: str) -> set[str]:
    """Labels the result series must carry: every ``by (...)`` label but ``le`` (histogram_quantile
    consumes it)."""
    labels = {label.strip() for match in GROUP_BY.finditer(expr) for label in match.group(1).split(",")}
    return labels - {"le", ""}


def start_workload(objects: Objects, hub: HubFake, storage: Storage) -> None:
    """One object of each kind, all at once: the cluster works on them in parallel."""
    name = f"dash-{objects.namespace}"
    data = bytes_of(name, 300_000)
    url = hub.add_plain(name, FakeFile(data=data))
    objects.create(
        "modelpulls",
        "ModelPull",
        "weights",
        {
            "source": {
                "type": "URL",
                "urls": [{"url": url, "path": f"{name}.safetensors", "sha256": FakeFile(data=data).sha256}],
            },
            "destination": {"modelType": "checkpoints", "subdir": name},
        },
    )
    make_dataset(storage.datasets / name, {"1_cat": [(64, 64), (64, 64)]})
    objects.create(
        "trainingruns",
        "TrainingRun",
        "lora",
        {
            "trainer": "kubepilot-lora",
            "baseModel": {"path": "diffusers/tiny-sd"},
            "dataset": {"path": name},
            "output": {"name": name},
            "hyperparameters": {"resolution": 64, "maxSteps": 8, "rank": 4, "alpha": 4},
        },
    )
    objects.create(
        "generationjobs",
        "GenerationJob",
        "picture",
        {
            "type": "txt2img",
            "model": "diffusers/tiny-sd",
            "prompt": "a cat",
            "width": 64,
            "height": 64,
            "steps": 2,
            "seed": 3,
        },
    )
    objects.create(
        "serviceinstances",
        "ServiceInstance",
        "broken",
        {"serviceType": "jupyter", "image": "registry.example.com/none:1"},
    )


def wait_workload(objects: Objects) -> None:
    """Every object in its final (or, for the broken service, its expected) state."""
    objects.wait_phase("modelpulls", "weights", "Completed", timeout=60)
    broken = objects.wait(
        "serviceinstances",
        "broken",
        lambda s: condition(s, "Degraded").get("reason") == "ImagePullBackOff",
        60,
        "ImagePullBackOff",
    )
    assert broken["phase"] == "Error", broken
    picture = objects.wait_phase("generationjobs", "picture", "Completed", "Failed", timeout=90)
    assert picture["phase"] == "Completed", picture
    assert condition(picture, "Scheduled")["reason"] == "OneShotJob", picture
    run = objects.wait_phase("trainingruns", "lora", "Succeeded", "Failed", timeout=90)
    assert run["phase"] == "Succeeded", run


def must_have_data(expr: str) -> bool:
    return not set(METRIC_NAME.findall(expr)) <= MAY_BE_EMPTY


def workload_problems(prometheus: Prometheus, namespace: str) -> list[str]:
    """What the workload made, as Prometheus has it: what is not there yet (or at all)."""
    problems = []
    by_phase = {
        (s["metric"]["kind"], s["metric"]["phase"]): float(s["value"][1])
        for s in prometheus.query("sum by (kind, phase) (kubepilot_objects)")["data"]["result"]
    }
    for kind, phase in (
        ("ModelPull", "Completed"),
        ("TrainingRun", "Succeeded"),
        ("GenerationJob", "Completed"),
        ("ServiceInstance", "Error"),
    ):
        if by_phase.get((kind, phase), 0) < 1:
            problems.append(f"kubepilot_objects shows no {kind} {phase}: {by_phase}")
    failures = prometheus.query("sum by (kind, reason) (kubepilot_child_failures_total)")["data"]["result"]
    if {"kind": "ServiceInstance", "reason": "ImagePullBackOff"} not in [s["metric"] for s in failures]:
        problems.append(f"kubepilot_child_failures_total has no ServiceInstance ImagePullBackOff: {failures}")
    step = prometheus.query(f'kubepilot_training_step{{namespace="{namespace}",name="lora"}}')
    if [float(s["value"][1]) for s in step["data"]["result"]] != [8.0]:
        problems.append(f"kubepilot_training_step of the run is not 8: {step}")
    downloaded = prometheus.query(f'kubepilot_download_bytes_total{{namespace="{namespace}"}}')
    if [float(s["value"][1]) for s in downloaded["data"]["result"]] != [300_000.0]:
        problems.append(f"kubepilot_download_bytes_total of the namespace is not 300000: {downloaded}")
    generated = prometheus.query('sum(kubepilot_generation_duration_seconds_count{type="txt2img"})')
    if not [s for s in generated["data"]["result"] if float(s["value"][1]) >= 1]:
        problems.append(f"kubepilot_generation_duration_seconds has no txt2img observation: {generated}")
    return problems


def test_every_dashboard_panel_query_runs_on_real_metrics(
    operator: OperatorProcess,
    objects: Objects,
    hub: HubFake,
    storage: Storage,
    tiny_sd: Path,
    prometheus: Prometheus,
) -> None:
    queries = panel_queries()
    assert queries, f"no panel queries in {DASHBOARD}"
    start_workload(objects, hub, storage)
    wait_workload(objects)

    # Scrapes are every second, rate() and increase() need two samples of a series in their window,
    # and the operator refreshes its phase gauges every few seconds: poll until every panel that
    # must have data has it and the workload shows as it ended (or the deadline), then judge once.
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        fed = all(
            (prometheus.query(expr).get("data") or {}).get("result")
            for _, expr in queries
            if must_have_data(expr)
        )
        if fed and not workload_problems(prometheus, objects.namespace):
            break
        time.sleep(1)

    targets = prometheus.api("targets")["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    names = prometheus.metric_names()
    problems: list[str] = []
    for title, expr in queries:
        answer = prometheus.query(expr)
        if answer.get("status") != "success":
            problems.append(
                f"{title}: invalid query {expr!r}: {answer.get('errorType')}: {answer.get('error')}"
            )
            continue
        referenced = set(METRIC_NAME.findall(expr))
        if not referenced:
            problems.append(f"{title}: names no kubepilot_ metric: {expr!r}")
        for missing in sorted(referenced - names):
            problems.append(f"{title}: metric {missing} does not exist in Prometheus ({expr!r})")
        series = answer["data"]["result"]
        if must_have_data(expr) and not series:
            problems.append(f"{title}: no series after the workload: {expr!r}")
        for item in series:
            absent = grouping_labels(expr) - set(item["metric"])
            if absent:
                problems.append(f"{title}: series {item['metric']} lacks grouped-by labels {sorted(absent)}")
    problems += workload_problems(prometheus, objects.namespace)
    exported = sorted(n for n in names if n.startswith("kubepilot_"))
    assert not problems, "\n".join([*problems, f"kubepilot metrics in Prometheus: {exported}"])
