"""ServiceInstances end to end: start, restart, stop, idle culling, the shutdown schedule, and the
pod failures a person must see; GenerationJobs dispatched to a running generator service."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client
from PIL import Image

from kubepilot_devcluster.testing import DevCluster
from kubepilot_operator.settings import default_catalog
from kubepilot_workers.tinymodels import save_tiny_upscaler
from tests.operator.harness import (
    GROUP,
    VERSION,
    Objects,
    OperatorProcess,
    Storage,
    condition,
    tiny_generator,
    tiny_txt2img,
)

pytestmark = pytest.mark.slow

# A light stand-in for a web service (the Python standard library's HTTP server), declared the
# way a cluster admin declares any service: in the operator's service catalog.
WEB = {
    "image": "kubepilot/web:0.1.0",
    "command": ["python", "-m", "http.server", "--bind", "$(POD_IP)", "8888"],
    "ports": [{"name": "http", "port": 8888}],
    "readinessPath": "/",
}
CRASHING = {
    "image": "kubepilot/crash:0.1.0",
    "command": ["python", "-c", "import sys; sys.exit(3)"],
    "ports": [{"name": "http", "port": 9999}],
}


@pytest.fixture(scope="module")
def operator(
    devcluster: DevCluster, crds: None, storage: Storage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    catalog = {name: entry.model_dump() for name, entry in default_catalog().items()}
    catalog["jupyter"] = WEB
    catalog["code-server"] = CRASHING
    extra = {"services": catalog, "upscalers": {"Tiny 2x": "upscale_models/tiny-x2.safetensors"}}
    process = OperatorProcess(devcluster, storage, tmp_path_factory.mktemp("operator"), extra=extra).start()
    try:
        yield process
    finally:
        process.stop()


def web_service(objects: Objects, name: str, **spec: object) -> None:
    objects.create("serviceinstances", "ServiceInstance", name, {"serviceType": "jupyter", **spec})


def test_a_service_starts_restarts_and_stops(operator: OperatorProcess, objects: Objects) -> None:
    web_service(objects, "web")
    running = objects.wait_phase("serviceinstances", "web", "Running", timeout=40)
    assert running["ready"] is True
    assert running["endpoint"].startswith("http://127.2.") and running["endpoint"].endswith(":8888")
    assert condition(running, "Available")["status"] == "True"
    first_pod = running["podName"]
    objects.patch(
        "serviceinstances", "web", {"metadata": {"annotations": {"kubepilot.io/action-restart": "r1"}}}
    )
    restarted = objects.wait(
        "serviceinstances",
        "web",
        lambda s: (
            (s.get("actions") or {}).get("restart", {}).get("state") == "Done"
            and s.get("podName") != first_pod
        ),
        60,
        "restart acknowledged on a new pod",
    )
    assert restarted["phase"] == "Running"
    deployment = objects.apps.read_namespaced_deployment("web-svc", objects.namespace)
    assert deployment.spec.template.metadata.annotations["kubepilot.io/restartedAt"] == "r1"
    objects.patch("serviceinstances", "web", {"spec": {"running": False}})
    stopped = objects.wait_phase("serviceinstances", "web", "Stopped", timeout=40)
    assert condition(stopped, "Available")["reason"] == "StoppedByUser"
    assert objects.pods("kubepilot.io/name=web") == []
    assert any(line.startswith("Stopped") for line in objects.events("web"))


def test_an_idle_service_is_culled(operator: OperatorProcess, objects: Objects) -> None:
    web_service(objects, "idle", idleTimeoutSeconds=3)
    objects.wait_phase("serviceinstances", "idle", "Running", timeout=40)
    stopped = objects.wait_phase("serviceinstances", "idle", "Stopped", timeout=30)
    assert condition(stopped, "Available")["reason"] == "IdleTimeout"
    assert objects.get("serviceinstances", "idle")["spec"]["running"] is False


def test_pod_failures_surface_with_their_reasons(operator: OperatorProcess, objects: Objects) -> None:
    web_service(objects, "unmapped", image="registry.example.com/not-here:1")
    web_service(objects, "greedy", resources={"gpu": {"profile": "default", "count": 4}})
    objects.create("serviceinstances", "ServiceInstance", "crashing", {"serviceType": "code-server"})
    web_service(objects, "no-profile", resources={"gpu": {"profile": "h100", "count": 1}})
    for name, reason in (
        ("unmapped", "ImagePullBackOff"),
        ("greedy", "Unschedulable"),
        ("crashing", "CrashLoopBackOff"),
        ("no-profile", "InvalidSpec"),
    ):
        status = objects.wait(
            "serviceinstances",
            name,
            lambda s, r=reason: condition(s, "Degraded").get("reason") == r,
            60,
            reason,
        )
        assert status["phase"] == "Error", (name, status)
        assert condition(status, "Degraded")["message"], name


def test_the_shutdown_schedule_stops_every_running_service(
    operator: OperatorProcess, objects: Objects
) -> None:
    web_service(objects, "nightly")
    objects.wait_phase("serviceinstances", "nightly", "Running", timeout=40)
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="kubepilot-schedule"), data={"shutdownAt": when}
    )
    try:
        objects.core.create_namespaced_config_map("default", body)
    except client.ApiException as error:
        assert error.status == 409
        objects.core.patch_namespaced_config_map(
            "kubepilot-schedule", "default", {"data": {"shutdownAt": when}}
        )
    stopped = objects.wait_phase("serviceinstances", "nightly", "Stopped", timeout=30)
    assert condition(stopped, "Available")["reason"] == "ScheduledShutdown"
    schedule = objects.core.read_namespaced_config_map("kubepilot-schedule", "default")
    assert schedule.data["executedAt"] == when


def test_generation_jobs_run_on_a_generator_service_queue_and_cancel(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    tiny_generator(objects, "gen")
    objects.wait_phase("serviceinstances", "gen", "Running", timeout=90)
    base = tiny_txt2img()
    objects.create("generationjobs", "GenerationJob", "long", {**base, "steps": 400})
    objects.wait_phase("generationjobs", "long", "Processing", timeout=60)
    objects.create("generationjobs", "GenerationJob", "queued", {**base, "steps": 2})
    objects.create("generationjobs", "GenerationJob", "drop", {**base, "steps": 2})
    objects.create("generationjobs", "GenerationJob", "quick", {**base, "steps": 2, "seed": 5})
    dropped = objects.wait(
        "generationjobs", "drop", lambda s: s.get("assignedService") == "gen", 30, "dispatch"
    )
    assert dropped["queuePosition"] >= 1
    objects.patch("generationjobs", "drop", {"spec": {"cancel": True}})
    objects.patch("generationjobs", "long", {"spec": {"cancel": True, "cancelReason": "Interrupted"}})
    assert (
        condition(objects.wait_phase("generationjobs", "drop", "Cancelled"), "Cancelled")["reason"]
        == "UserCancelled"
    )
    long = objects.wait_phase("generationjobs", "long", "Cancelled", "Completed", timeout=60)
    assert long["phase"] == "Cancelled" and condition(long, "Cancelled")["reason"] == "Interrupted"
    for name in ("queued", "quick"):
        done = objects.wait_phase("generationjobs", name, "Completed", "Failed", timeout=90)
        assert done["phase"] == "Completed", done
        assert done["assignedService"] == "gen" and condition(done, "Scheduled")["reason"] == "Dispatched"
        assert (storage.outputs / done["outputs"][0]["path"]).read_bytes().startswith(b"\x89PNG")
        assert done["progress"]["percent"] == 100
    assert [j.metadata.name for j in objects.jobs()] == []  # nothing ran as a one-shot Job
    service = objects.status("serviceinstances", "gen")
    assert service["queue"] == {"pending": 0, "running": 0}
    assert service["lastActivityTime"]
    time.sleep(0)  # the service keeps running: no idle timeout was set
    assert service["phase"] == "Running"


def test_a_job_whose_reports_are_refused_still_finishes_from_the_executors_own_state(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    """The intake refuses every report once the job's token changed (here: its attempt, set by hand):
    the operator's poll of the executor still sees the job finish and ends it with its images."""
    tiny_generator(objects, "deaf")
    objects.wait_phase("serviceinstances", "deaf", "Running", timeout=90)
    objects.create("generationjobs", "GenerationJob", "unheard", {**tiny_txt2img(), "steps": 60})
    objects.wait("generationjobs", "unheard", lambda s: s.get("assignedService") == "deaf", 60, "dispatch")
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, objects.namespace, "generationjobs", "unheard", {"status": {"attempt": 7}}
    )
    done = objects.wait_phase("generationjobs", "unheard", "Completed", "Failed", timeout=120)
    assert done["phase"] == "Completed", done
    assert condition(done, "Progressing")["message"] == "the executor reports the job succeeded"
    assert (storage.outputs / done["outputs"][0]["path"]).read_bytes().startswith(b"\x89PNG")


def test_a_job_whose_service_pod_dies_is_scheduled_again_and_completes(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    tiny_generator(objects, "fragile")
    objects.wait_phase("serviceinstances", "fragile", "Running", timeout=90)
    spec = tiny_txt2img()
    objects.create("generationjobs", "GenerationJob", "orphan", {**spec, "steps": 300})
    objects.wait_phase("generationjobs", "orphan", "Processing", timeout=60)
    for pod in objects.pods("kubepilot.io/name=fragile"):
        objects.core.delete_namespaced_pod(pod.metadata.name, objects.namespace, grace_period_seconds=0)
    done = objects.wait_phase("generationjobs", "orphan", "Completed", "Failed", "Cancelled", timeout=120)
    assert done["phase"] == "Completed", done
    assert any(line.startswith("Rescheduled") for line in objects.events("orphan"))


def test_a_service_past_its_maximum_duration_is_stopped(operator: OperatorProcess, objects: Objects) -> None:
    web_service(objects, "bounded", maxDurationSeconds=3)
    objects.wait_phase("serviceinstances", "bounded", "Running", timeout=40)
    stopped = objects.wait_phase("serviceinstances", "bounded", "Stopped", timeout=30)
    assert condition(stopped, "Available")["reason"] == "MaxDurationReached"


def test_a_job_naming_a_stopped_service_starts_it_when_asked(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    tiny_generator(objects, "sleepy", running=False)
    objects.wait_phase("serviceinstances", "sleepy", "Stopped", timeout=30)
    spec = tiny_txt2img(steps=2)
    objects.create(
        "generationjobs",
        "GenerationJob",
        "wake",
        {**spec, "serviceRef": {"name": "sleepy"}, "autoStartService": True},
    )
    waiting = objects.wait("generationjobs", "wake", lambda s: bool(condition(s, "Scheduled")), 30)
    assert condition(waiting, "Scheduled")["reason"] == "WaitingForService"
    done = objects.wait_phase("generationjobs", "wake", "Completed", "Failed", timeout=120)
    assert done["phase"] == "Completed" and done["assignedService"] == "sleepy", done
    assert objects.get("serviceinstances", "sleepy")["spec"]["running"] is True


def test_upscale_jobs_find_their_model_by_configured_name_or_by_file(
    operator: OperatorProcess, objects: Objects, storage: Storage
) -> None:
    """One-shot upscale Jobs: ``Tiny 2x`` comes from the operator's ``upscalers`` setting, the 4x model
    by its bare file name in ``upscale_models/``; a name nobody configured fails with MODEL_NOT_FOUND."""
    save_tiny_upscaler(storage.models / "upscale_models" / "tiny-x2.safetensors", scale=2)
    save_tiny_upscaler(storage.models / "upscale_models" / "tiny-x4.safetensors", scale=4)
    source = storage.outputs / "inputs" / f"{objects.namespace}.png"
    source.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 24), (200, 30, 90)).save(source)
    inputs = {"image": f"inputs/{source.name}"}
    jobs = {
        "by-name": {"upscaler": "Tiny 2x", "factor": 2},
        "by-file": {"upscaler": "tiny-x4.safetensors", "factor": 4},
        "unknown": {"upscaler": "Nobody's 8x", "factor": 2},
    }
    for name, upscale in jobs.items():
        objects.create(
            "generationjobs", "GenerationJob", name, {"type": "upscale", "inputs": inputs, "upscale": upscale}
        )
    for name, size in (("by-name", (80, 48)), ("by-file", (160, 96))):
        done = objects.wait_phase("generationjobs", name, "Completed", "Failed", timeout=120)
        assert done["phase"] == "Completed", done
        with Image.open(storage.outputs / done["outputs"][0]["path"]) as image:
            assert image.size == size
    failed = objects.wait_phase("generationjobs", "unknown", "Completed", "Failed", timeout=120)
    assert failed["phase"] == "Failed" and failed["error"]["code"] == "MODEL_NOT_FOUND", failed
    assert "Tiny 2x" in failed["error"]["message"]
