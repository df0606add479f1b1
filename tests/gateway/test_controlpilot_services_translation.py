"""ControlPilot services ↔ ServiceInstances: the pure translation, without a server or a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubepilot_api.constants import API_VERSION, LABEL_PROFILE
from kubepilot_api.serviceinstance import ServiceInstance
from kubepilot_gateway.profiles.controlpilot import services as svc

JsonObject = dict[str, Any]

CP01_KEYS = ["name", "display", "state", "state_raw", "running", "autostart"]
CP02_KEYS = [
    "name",
    "display",
    "source",
    "update_supported",
    "installed",
    "latest",
    "update_available",
    "detail",
]


@pytest.fixture(autouse=True)
def no_leftover_faults() -> Iterator[None]:
    """These tests need no devcluster: override the conftest's fixture that would start one."""
    yield


def si(
    *,
    running: bool | None = None,
    phase: str | None = None,
    degraded: str = "",
    autostart: bool | None = None,
    version: JsonObject | None = None,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
    conditions: list[JsonObject] | None = None,
    pod: str = "",
) -> JsonObject:
    spec: JsonObject = {"serviceType": "comfyui"}
    if running is not None:
        spec["running"] = running
    if autostart is not None:
        spec["autostart"] = autostart
    meta: JsonObject = {"name": "comfy", "namespace": "ns", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj: JsonObject = {"apiVersion": API_VERSION, "kind": "ServiceInstance", "metadata": meta, "spec": spec}
    status: JsonObject = {}
    if phase is not None:
        status["phase"] = phase
    if degraded:
        status["conditions"] = [
            {"type": "Degraded", "status": "True", "reason": degraded, "message": f"{degraded} happened"}
        ]
    if conditions is not None:
        status["conditions"] = conditions
    if version is not None:
        status["version"] = version
    if pod:
        status["podName"] = pod
    if status:
        obj["status"] = status
    return obj


def test_the_nine_known_services_in_controlpilots_order_with_display_names_and_types() -> None:
    assert svc.SERVICE_NAMES == (
        "jupyter",
        "code-server",
        "comfy",
        "kohya",
        "diffpipe",
        "invoke",
        "ai-toolkit",
        "controlpilot",
        "copilot",
    )
    table = {
        s.name: (s.display, s.service_type.value if s.service_type else None) for s in svc.KNOWN_SERVICES
    }
    assert table == {
        "jupyter": ("Jupyter Lab", "jupyter"),
        "code-server": ("VS Code Server", "code-server"),
        "comfy": ("Comfy UI", "comfyui"),
        "kohya": ("Kohya", "kohya-ui"),
        "diffpipe": ("TensorBoard", "tensorboard"),
        "invoke": ("Invoke AI", "invoke"),
        "ai-toolkit": ("AI Toolkit", "ai-toolkit"),
        "controlpilot": ("ControlPilot", None),
        "copilot": ("Copilot Sidecar", "copilot"),
    }
    assert {s.name for s in svc.KNOWN_SERVICES if s.update_supported} == {
        "invoke",
        "comfy",
        "kohya",
        "diffpipe",
        "ai-toolkit",
    }
    assert svc.known_service("comfy") is not None
    assert svc.known_service("comfyui") is None


@pytest.mark.parametrize(
    ("obj", "state"),
    [
        (None, "STOPPED"),
        (si(), "STARTING"),  # created, no status yet: the start is under way
        (si(running=True, phase="Starting"), "STARTING"),
        (si(running=True, phase="Running"), "RUNNING"),
        (si(running=True, phase="Stopped"), "STARTING"),  # started again, the operator not there yet
        (si(running=True, phase="Stopping"), "STARTING"),
        (si(running=False, phase="Running"), "STOPPING"),  # stopped, the operator not there yet
        (si(running=False, phase="Stopping"), "STOPPING"),
        (si(running=False, phase="Stopped"), "STOPPED"),
        (si(running=False), "STOPPED"),
        (si(running=True, phase="Error", degraded="CrashLoopBackOff"), "BACKOFF"),
        (si(running=True, phase="Error", degraded="OOMKilled"), "BACKOFF"),
        (si(running=True, phase="Error", degraded="ImagePullBackOff"), "FATAL"),
        (si(running=True, phase="Error", degraded="InvalidSpec"), "FATAL"),
        (si(running=True, phase="Error", degraded="Unschedulable"), "FATAL"),
        (si(running=True, phase="Error"), "FATAL"),
        (si(running=True, phase="Running", deleting=True), "STOPPING"),
        (si(running=True, phase="Exploded"), "UNKNOWN"),
    ],
)
def test_supervisor_state_from_phase_and_desired_state(obj: JsonObject | None, state: str) -> None:
    assert svc.supervisor_state(obj) == state


def test_a_degraded_condition_that_is_over_does_not_decide_backoff() -> None:
    obj = si(
        running=True,
        phase="Error",
        conditions=[
            {"type": "Degraded", "status": "False", "reason": "CrashLoopBackOff"},
            {"type": "Available", "status": "False", "reason": "ImagePullBackOff"},
        ],
    )
    assert svc.supervisor_state(obj) == "FATAL"


def test_cp01_items_have_controlpilots_shape() -> None:
    comfy = svc.known_service("comfy")
    assert comfy is not None
    running = svc.service_item(comfy, si(running=True, phase="Running", autostart=False))
    assert list(running) == CP01_KEYS
    assert running == {
        "name": "comfy",
        "display": "Comfy UI",
        "state": "RUNNING",
        "state_raw": "RUNNING",
        "running": True,
        "autostart": False,
    }
    # The CRD's default autostart is true.
    assert svc.service_item(comfy, si(running=True, phase="Starting"))["autostart"] is True
    absent = svc.service_item(comfy, None)
    assert absent == {
        "name": "comfy",
        "display": "Comfy UI",
        "state": "STOPPED",
        "state_raw": "STOPPED",
        "running": False,
        "autostart": False,
    }


def test_controlpilot_is_the_gateway_and_always_running() -> None:
    gateway = svc.known_service("controlpilot")
    assert gateway is not None and gateway.synthetic
    assert svc.service_item(gateway, None) == {
        "name": "controlpilot",
        "display": "ControlPilot",
        "state": "RUNNING",
        "state_raw": "RUNNING",
        "running": True,
        "autostart": True,
    }
    with pytest.raises(ValueError, match="gateway itself"):
        svc.new_service_instance(gateway)


def test_cp02_items_render_status_version() -> None:
    comfy, jupyter, gateway = (svc.known_service(n) for n in ("comfy", "jupyter", "controlpilot"))
    assert comfy is not None and jupyter is not None and gateway is not None
    version = {"installed": "v0.3.9", "latest": "v0.3.10", "updateAvailable": True}
    item = svc.version_item(comfy, si(running=True, phase="Running", version=version))
    assert list(item) == CP02_KEYS
    assert item == {
        "name": "comfy",
        "display": "Comfy UI",
        "source": "git",
        "update_supported": True,
        "installed": "v0.3.9",
        "latest": "v0.3.10",
        "update_available": True,
        "detail": None,
    }
    assert svc.version_item(comfy, None)["detail"] == "Not installed"
    assert svc.version_item(comfy, si(running=True))["detail"] == "Version not reported yet"
    assert svc.version_item(comfy, si(version={"installed": "v1"}))["detail"] == "Latest version unknown"
    invoke = svc.known_service("invoke")
    assert invoke is not None and svc.version_item(invoke, None)["source"] == "pip"

    image = svc.version_item(jupyter, si(version={"installed": "1.0", "latest": "1.0"}))
    assert image["source"] == "image" and image["update_supported"] is False
    assert image["installed"] == "1.0" and image["detail"] == "Managed by image build"
    own = svc.version_item(gateway, None, gateway_version="0.1.0")
    assert own == {
        "name": "controlpilot",
        "display": "ControlPilot",
        "source": "image",
        "update_supported": False,
        "installed": "0.1.0",
        "latest": None,
        "update_available": False,
        "detail": "Managed by image build",
    }


def test_a_new_service_instance_is_valid_labelled_and_running() -> None:
    kohya = svc.known_service("kohya")
    assert kohya is not None
    body = svc.new_service_instance(kohya)
    assert body["metadata"] == {"name": "kohya", "labels": {LABEL_PROFILE: "controlpilot"}}
    assert body["spec"] == {"serviceType": "kohya-ui", "displayName": "Kohya", "running": True}
    parsed = ServiceInstance.model_validate(body)  # the API types accept it
    assert parsed.spec.running and parsed.spec.autostart

    stopped = svc.new_service_instance(
        kohya, running=False, autostart=False, version="main", annotations={"a": "b"}
    )
    assert stopped["spec"]["running"] is False and stopped["spec"]["autostart"] is False
    assert stopped["spec"]["version"] == "main" and stopped["metadata"]["annotations"] == {"a": "b"}
    ServiceInstance.model_validate(stopped)


def test_patches_for_start_stop_restart_and_autostart() -> None:
    assert svc.running_patch(True) == {"spec": {"running": True}}
    assert svc.running_patch(False) == {"spec": {"running": False}}
    assert svc.restart_patch("n1") == {
        "metadata": {"annotations": {"kubepilot.io/action-restart": "n1"}},
        "spec": {"running": True},
    }
    assert svc.autostart_patch(False) == {"spec": {"autostart": False}}


def test_update_target_is_the_request_else_the_latest_version() -> None:
    obj = si(version={"installed": "1", "latest": "2"})
    assert svc.update_target(" 3 ", obj) == "3"
    assert svc.update_target(None, obj) == "2"
    assert svc.update_target("  ", obj) == "2"
    assert svc.update_target(None, si()) is None
    assert svc.update_target(None, None) is None


def updating(version: JsonObject, phase: str, started: float = 1000.0, **extra: Any) -> JsonObject:
    request = svc.UpdateRequest("v2", "v1", started)
    patch = svc.update_patch(request)
    assert patch["spec"] == {"version": "v2"}
    return si(
        running=True,
        phase=phase,
        version=version,
        annotations=patch["metadata"]["annotations"],
        **extra,
    )


def test_update_job_states() -> None:
    assert svc.update_job("comfy", None, now=0) == {"name": "comfy", "state": "idle"}
    assert svc.update_job("comfy", si(), now=0) == {"name": "comfy", "state": "idle"}

    running = svc.update_job("comfy", updating({"installed": "v1"}, "Starting"), now=1010)
    assert running["state"] == "running"
    assert list(running) == [
        "name",
        "state",
        "target_version",
        "pid",
        "last_line",
        "error",
        "installed_before",
        "installed_after",
        "rollback_before",
        "rollback_after",
        "started_at",
        "updated_at",
        "output_tail",
    ]
    assert running["target_version"] == "v2" and running["installed_before"] == "v1"
    assert running["installed_after"] is None and running["pid"] is None
    assert running["started_at"] == running["updated_at"] == 1000.0
    assert "v2" in running["last_line"] and running["output_tail"] == [running["last_line"]]

    done = svc.update_job("comfy", updating({"installed": "v2"}, "Running"), now=1010)
    assert done["state"] == "done" and done["installed_after"] == "v2" and done["error"] is None
    assert done["rollback_before"] == "v1" and done["rollback_after"] == "v2"

    failed = svc.update_job(
        "comfy", updating({"installed": "v1"}, "Error", degraded="ImagePullBackOff"), now=1010
    )
    assert failed["state"] == "error"
    assert failed["error"] == "ImagePullBackOff: ImagePullBackOff happened"


def test_a_finished_update_job_expires_after_30_minutes_a_running_one_never() -> None:
    finished = updating(
        {"installed": "v2"},
        "Running",
        started=0.0,
        conditions=[{"type": "Available", "status": "True", "lastTransitionTime": "1970-01-01T00:10:00Z"}],
    )
    assert svc.update_job("comfy", finished, now=600 + 1799)["updated_at"] == 600.0
    assert svc.update_job("comfy", finished, now=600 + 1801) == {"name": "comfy", "state": "idle"}
    waiting = updating({"installed": "v1"}, "Starting", started=0.0)
    assert svc.update_job("comfy", waiting, now=10**6)["state"] == "running"


def test_an_unreadable_update_annotation_is_no_update() -> None:
    obj = si(annotations={svc.UPDATE_ANNOTATION: "{not json"})
    assert svc.UpdateRequest.from_object(obj) is None
    assert svc.update_job("comfy", obj, now=0) == {"name": "comfy", "state": "idle"}
    request = svc.UpdateRequest("main", None, 12.5)
    obj = si(annotations={svc.UPDATE_ANNOTATION: request.to_annotation()})
    assert svc.UpdateRequest.from_object(obj) == request


def test_log_helpers() -> None:
    assert svc.pod_name(None) == "" and svc.pod_name(si()) == ""
    assert svc.pod_name(si(pod="comfy-abc")) == "comfy-abc"
    pod = {"spec": {"containers": [{"name": "main"}, {"name": "adapter"}]}}
    assert svc.main_container(pod) == "main" and svc.main_container(None) == ""
    assert svc.log_path("ns", "p", "main") == "k8s://ns/p/main"
    assert svc.log_path("ns", "p") == "k8s://ns/p"
    assert svc.tail_lines(100) == 100 and svc.tail_lines(-5) == 5 and svc.tail_lines(0) == 0
