"""Odd but schema-valid custom resources, applied as a user would, against the real operator.

Each CR passes the CRD schema yet names something that is not there (a model, a LoRA, a repository,
a Secret, a dataset, a ModelPull, a catalog entry) or sits at an edge of the schema (``count`` at
its maximum, an idle timeout of one second, names of 63 characters). All are applied at once to one
operator; each must end in a clear state within bounded time: a final phase that stays put, or a
waiting phase whose condition's reason and message say what to fix. The operator must not crash,
log a traceback or spin while idle.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.operator.harness import (
    TINY_MODEL,
    JsonObject,
    Objects,
    OperatorProcess,
    Storage,
    condition,
    tiny_lora_run,
    tiny_txt2img,
)
from tests.workers._trainer_tiny import make_dataset
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
FINAL = {"Completed", "Failed", "Cancelled", "Stopped", "Error"}
EXPECTED_ERROR_LINES: list[re.Pattern[str]] = []
"""Operator log lines at ERROR that these CRs may cause, each with its reason (none so far)."""


def long_name(prefix: str) -> str:
    """A CR name of exactly 63 characters (the longest a child's name could be built from)."""
    return (prefix + "-" + "x" * 63)[:62] + "z"


@dataclass
class Case:
    """One CR and what a user should see in its status."""

    plural: str
    kind: str
    name: str
    spec: JsonObject
    phase: str
    condition: str
    reason: str
    names: tuple[str, ...] = ()
    """Strings the condition's message must contain (the missing thing)."""
    extra: Callable[[JsonObject], bool] | None = None
    phases: list[str] = field(default_factory=list)

    def reached(self, status: JsonObject) -> bool:
        cond = condition(status, self.condition)
        return (
            status.get("phase") == self.phase
            and cond.get("reason") == self.reason
            and all(n in str(cond.get("message", "")) for n in self.names)
            and (self.extra is None or self.extra(status))
        )


def url_pull(hub: HubFake, name: str, **extra: object) -> JsonObject:
    data = bytes_of(name, 2000)
    url = hub.add_plain(name, FakeFile(data=data))
    return {
        "source": {
            "type": "URL",
            "urls": [{"url": url, "path": "w.safetensors", "sha256": FakeFile(data=data).sha256}],
        },
        "destination": {"modelType": "checkpoints", "subdir": name},
        **extra,
    }


def hf_pull(repo: str, **source: object) -> JsonObject:
    return {
        "source": {"type": "HuggingFace", "huggingFace": {"repo": repo, **source}},
        "destination": {"modelType": "diffusers", "subdir": repo.replace("/", "-")},
    }


def cases(objects: Objects, storage: Storage, hub: HubFake) -> list[Case]:
    ns = objects.namespace
    hub.add_repo(f"odd/{ns}", {"model.safetensors": FakeFile(data=bytes_of(ns, 1000))})
    empty = storage.datasets / f"empty-{ns}"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    make_dataset(storage.datasets / f"ok-{ns}", {"1_x": [(64, 64)]})
    quick = {"steps": 1}
    return [
        # GenerationJobs
        Case(
            "generationjobs",
            "GenerationJob",
            "gj-no-model",
            tiny_txt2img(model="diffusers/not-on-the-volume", **quick),
            "Failed",
            "Failed",
            "NotFound",
            ("diffusers/not-on-the-volume",),
        ),
        Case(
            "generationjobs",
            "GenerationJob",
            "gj-no-lora",
            tiny_txt2img(loras=[{"path": "loras/not-there.safetensors"}], **quick),
            "Failed",
            "Failed",
            "NotFound",
            ("loras/not-there.safetensors",),
        ),
        Case(
            "generationjobs",
            "GenerationJob",
            "gj-count-max",
            tiny_txt2img(count=10, **quick),
            "Completed",
            "Succeeded",
            "Completed",
            extra=lambda s: len(s.get("outputs") or []) == 10 and s["progress"]["percent"] == 100,
        ),
        Case(
            "generationjobs",
            "GenerationJob",
            long_name("gj"),
            tiny_txt2img(**quick),
            "Completed",
            "Succeeded",
            "Completed",
        ),
        # ModelPulls
        Case(
            "modelpulls",
            "ModelPull",
            "mp-no-repo",
            hf_pull("nobody/not-on-the-hub"),
            "Failed",
            "Failed",
            "NotFound",
            ("nobody/not-on-the-hub",),
        ),
        Case(
            "modelpulls",
            "ModelPull",
            "mp-no-secret",
            url_pull(hub, f"s-{ns}", credentialsSecretRef={"name": "no-such-token"}),
            "Pending",
            "Ready",
            "SecretNotFound",
            ("no-such-token",),
        ),
        Case(
            "modelpulls",
            "ModelPull",
            "mp-no-match",
            hf_pull(f"odd/{ns}", allowPatterns=["*.gguf"]),
            "Failed",
            "Failed",
            "NotFound",
            ("*.gguf",),
        ),
        Case(
            "modelpulls",
            "ModelPull",
            long_name("mp"),
            url_pull(hub, f"l-{ns}"),
            "Completed",
            "Ready",
            "Completed",
            extra=lambda s: s["progress"]["percent"] == 100 and s["progress"]["filesDone"] == 1,
        ),
        # TrainingRuns
        Case(
            "trainingruns",
            "TrainingRun",
            "tr-empty-dataset",
            tiny_lora_run(f"empty-{ns}", f"e-{ns}", 1),
            "Pending",
            "DependenciesReady",
            "WaitingForDataset",
            (f"empty-{ns}",),
        ),
        Case(
            "trainingruns",
            "TrainingRun",
            "tr-no-dataset",
            tiny_lora_run(f"missing-{ns}", f"m-{ns}", 1),
            "Pending",
            "DependenciesReady",
            "WaitingForDataset",
            (f"missing-{ns}",),
        ),
        Case(
            "trainingruns",
            "TrainingRun",
            "tr-no-base",
            {**tiny_lora_run(f"ok-{ns}", f"b-{ns}", 1), "baseModel": {"path": "diffusers/not-there"}},
            "Pending",
            "DependenciesReady",
            "WaitingForModel",
            ("diffusers/not-there",),
        ),
        Case(
            "trainingruns",
            "TrainingRun",
            "tr-no-pull",
            {
                **tiny_lora_run(f"ok-{ns}", f"p-{ns}", 1),
                "baseModel": {"modelPullRef": {"name": "no-such-pull"}},
            },
            "Pending",
            "DependenciesReady",
            "WaitingForModel",
            ("no-such-pull",),
        ),
        Case(
            "trainingruns",
            "TrainingRun",
            long_name("tr"),
            tiny_lora_run(f"ok-{ns}", f"l-{ns}", 1, suspend=True),
            "Suspended",
            "Suspended",
            "Suspended",
        ),
        Case(
            "generationjobs",
            "GenerationJob",
            "gj-no-service",
            tiny_txt2img(serviceRef={"name": "no-such-service"}, **quick),
            "Pending",
            "Scheduled",
            "WaitingForService",
            ("no-such-service",),
        ),
        # ServiceInstances
        Case(
            "serviceinstances",
            "ServiceInstance",
            "si-not-in-catalog",
            {"serviceType": "invoke"},
            "Error",
            "Degraded",
            "InvalidSpec",
            ("invoke",),
        ),
        Case(
            "serviceinstances",
            "ServiceInstance",
            "si-idle",
            {"serviceType": "kubepilot-generator", "models": [TINY_MODEL], "idleTimeoutSeconds": 1},
            "Stopped",
            "Available",
            "IdleTimeout",
        ),
        Case(
            "serviceinstances",
            "ServiceInstance",
            long_name("si"),
            {"serviceType": "kubepilot-generator", "models": [TINY_MODEL], "running": False},
            "Stopped",
            "Available",
            "StoppedByUser",
        ),
    ]


def child_names(objects: Objects) -> list[str]:
    ns = objects.namespace
    items: list[Any] = list(objects.jobs())
    items += objects.apps.list_namespaced_deployment(ns).items
    items += objects.core.list_namespaced_service(ns).items
    items += objects.core.list_namespaced_secret(ns).items
    items += objects.core.list_namespaced_config_map(ns).items
    # Pods are left out: the Job and Deployment controllers name them, not the operator.
    return [str(item.metadata.name) for item in items]


def test_odd_resources_each_end_in_a_clear_state(
    operator: OperatorProcess, objects: Objects, storage: Storage, hub: HubFake, tiny_sd: Path
) -> None:
    todo = cases(objects, storage, hub)
    for case in todo:
        assert len(case.name) <= 63
        objects.create(case.plural, case.kind, case.name, case.spec)

    deadline = time.monotonic() + 90
    reached: dict[str, JsonObject] = {}
    last: dict[str, JsonObject] = {}
    while time.monotonic() < deadline and len(reached) < len(todo):
        for case in todo:
            status = objects.status(case.plural, case.name)
            last[case.name] = status
            phase = str(status.get("phase", ""))
            if not case.phases or case.phases[-1] != phase:
                case.phases.append(phase)
            if case.name not in reached and case.reached(status):
                reached[case.name] = status
        time.sleep(0.5)
    missing = {
        c.name: {"phases": c.phases, "status": last.get(c.name)} for c in todo if c.name not in reached
    }
    assert not missing, f"not in their expected state within 90s: {missing}"

    # A final phase stays put (no flapping), and every CR has a condition saying why it is where it is.
    time.sleep(3)
    for case in todo:
        status = objects.status(case.plural, case.name)
        assert status.get("phase") == case.phase, (case.name, case.phases, status)
        if case.phase in FINAL:
            after = case.phases[case.phases.index(case.phase) :]
            assert set(after) == {case.phase}, (case.name, case.phases)
        assert condition(status, case.condition).get("message"), (case.name, status)

    # Missing files are found by the operator, before any pod; and an empty dataset starts no trainer.
    jobs = [job.metadata.name for job in objects.jobs()]
    for name in (
        "gj-no-model",
        "gj-no-lora",
        "gj-no-service",
        "tr-empty-dataset",
        "tr-no-dataset",
        "tr-no-base",
        "tr-no-pull",
    ):
        assert not [j for j in jobs if j.startswith(name)], (name, jobs)
    assert reached["gj-no-model"]["error"]["code"] == "MODEL_NOT_FOUND"
    assert reached["mp-no-repo"]["error"]["code"] == "MODEL_NOT_FOUND"

    # Children of 63-character owners are valid names (cut, with a hashed suffix).
    names = child_names(objects)
    assert names, "the long-named CRs made children"
    for name in names:
        assert len(name) <= 63 and DNS_LABEL.match(name), name
    long_children = [n for n in names if n.startswith(("gj-x", "mp-x", "tr-x", "si-x"))]
    assert {n[:2] for n in long_children} >= {"gj", "mp", "tr", "si"}, names


def test_the_operator_logged_no_traceback_and_is_idle(operator: OperatorProcess) -> None:
    assert operator.process is not None and operator.process.poll() is None, operator.log_tail()
    text = operator.log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-6000:]
    errors = [
        line
        for line in text.splitlines()
        if " ERROR " in line or line.startswith("ERROR") or '"level": "ERROR"' in line
    ]
    unexplained = [line for line in errors if not any(p.search(line) for p in EXPECTED_ERROR_LINES)]
    assert not unexplained, unexplained
    process = psutil.Process(operator.process.pid)
    process.cpu_percent(None)
    time.sleep(3)
    assert process.cpu_percent(None) < 30, "the operator spins while idle"
