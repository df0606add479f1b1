"""The process kubelet against the devcluster API server: running, configuring, restarting, stopping pods."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from _dc2_helpers import (
    Clients,
    DevCluster,
    condition,
    container_status,
    phase,
    pod_body,
    python_container,
    wait_for_pod,
    wait_until,
)


@pytest.fixture
def kube(devcluster: DevCluster) -> Clients:
    return Clients(devcluster)


ENV_REPORT = """
import json, os, pathlib
files = {}
for root in ('/etc/creds', '/etc/settings', '/etc/podinfo'):
    for path in sorted(pathlib.Path(root).rglob('*')):
        if path.is_file():
            files[str(path)] = [path.read_text(), oct(path.stat().st_mode & 0o777)]
report = {'env': {k: v for k, v in os.environ.items() if k.startswith(('T_', 'CFG_', 'KUBEPILOT_VOLUME_'))},
          'files': files, 'cwd': os.getcwd(), 'argv': __import__('sys').argv[1:]}
open('/dev/termination-log', 'w').write(json.dumps(report))
"""


def test_pod_gets_env_env_from_value_from_and_volumes(kube: Clients, namespace: str, tmp_path: Path) -> None:
    kube.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}
    )
    kube.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"MODE": "fast", "app.yaml": "x: 1\n"}}
    )
    container = python_container(
        "main",
        ENV_REPORT,
        args=["$(T_POD_NAME)", "/etc/settings/app.yaml"],
        workingDir=str(tmp_path),
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        env=[
            {"name": "T_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "T_MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {"name": "T_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "T_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "T_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "T_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "T_APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "T_CONFIG", "value": "/etc/settings/app.yaml"},
            {"name": "T_COMPOSED", "value": "$(T_MODE)-$(T_NS)"},
        ],
        volumeMounts=[
            {"name": "creds", "mountPath": "/etc/creds"},
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
        ],
    )
    body = pod_body(
        "env-pod",
        [container],
        restartPolicy="Never",
        volumes=[
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {
                "name": "settings",
                "configMap": {"name": "settings", "items": [{"key": "app.yaml", "path": "app.yaml"}]},
            },
            {
                "name": "podinfo",
                "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
            },
        ],
    )
    body["metadata"]["labels"] = {"app": "reporter"}
    kube.core.create_namespaced_pod(namespace, body)
    pod = wait_for_pod(kube, namespace, "env-pod", lambda p: phase(p) == "Succeeded")
    report = json.loads(container_status(pod)["state"]["terminated"]["message"])
    env: dict[str, Any] = report["env"]
    pod_ip = pod["status"]["podIP"]
    assert pod_ip.startswith("127.1.")
    assert env["T_TOKEN"] == "s3cret" and env["T_MODE"] == "fast" and env["CFG_MODE"] == "fast"
    assert (env["T_POD_NAME"], env["T_NS"], env["T_IP"]) == ("env-pod", namespace, pod_ip)
    assert env["T_NODE"] == "devcluster-node" and env["T_APP"] == "reporter"
    assert env["T_COMPOSED"] == f"fast-{namespace}"
    settings_dir = env["KUBEPILOT_VOLUME_SETTINGS"]
    assert env["T_CONFIG"] == f"{settings_dir}/app.yaml"
    assert report["argv"] == ["env-pod", f"{settings_dir}/app.yaml"]
    assert report["cwd"] == str(tmp_path)
    files = report["files"]
    assert files[f"{env['KUBEPILOT_VOLUME_CREDS']}/token"] == ["s3cret", "0o400"]
    assert files[f"{settings_dir}/app.yaml"][0] == "x: 1\n"
    assert files[f"{env['KUBEPILOT_VOLUME_PODINFO']}/labels"][0] == 'app="reporter"'


def test_unrunnable_image_waits_with_a_clear_reason(kube: Clients, namespace: str) -> None:
    container = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "1"]}
    kube.core.create_namespaced_pod(namespace, pod_body("busy", [container]))
    pod = wait_for_pod(
        kube,
        namespace,
        "busy",
        lambda p: "message" in container_status(p).get("state", {}).get("waiting", {}),
    )
    state = container_status(pod)["state"]["waiting"]
    assert state["reason"] == "ErrImageNeverPull"
    assert "Failed" in wait_until(lambda: kube.event_reasons(namespace, "busy"))
    assert (
        "image busybox:1.36 is not runnable by the devcluster kubelet; map it in node.yaml"
        in state["message"]
    )
    assert phase(kube.pod(namespace, "busy")) == "Pending"


def test_gpu_pod_beyond_capacity_stays_pending_unschedulable(kube: Clients, namespace: str) -> None:
    container = python_container("main", "pass", resources={"limits": {"nvidia.com/gpu": "1"}})
    kube.core.create_namespaced_pod(namespace, pod_body("gpu", [container]))
    pod = wait_for_pod(
        kube, namespace, "gpu", lambda p: condition(p, "PodScheduled").get("reason") == "Unschedulable"
    )
    scheduled = condition(pod, "PodScheduled")
    assert scheduled["status"] == "False"
    assert scheduled["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    assert phase(pod) == "Pending" and not pod["spec"].get("nodeName")
    assert "FailedScheduling" in wait_until(lambda: kube.event_reasons(namespace, "gpu"))


def test_on_failure_restarts_until_success_and_counts_restarts(kube: Clients, namespace: str) -> None:
    script = (
        "import os, sys, pathlib\n"
        "marker = pathlib.Path(os.environ['KUBEPILOT_VOLUME_WORK']) / 'runs'\n"
        "runs = int(marker.read_text()) if marker.exists() else 0\n"
        "marker.write_text(str(runs + 1))\n"
        "print('run', runs)\n"
        "sys.exit(0 if runs >= 2 else 7)\n"
    )
    container = python_container("main", script, volumeMounts=[{"name": "work", "mountPath": "/work"}])
    body = pod_body(
        "flaky", [container], restartPolicy="OnFailure", volumes=[{"name": "work", "emptyDir": {}}]
    )
    kube.core.create_namespaced_pod(namespace, body)
    pod = wait_for_pod(kube, namespace, "flaky", lambda p: phase(p) == "Succeeded", timeout=30)
    status = container_status(pod)
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert status["state"]["terminated"]["reason"] == "Completed"


def test_never_policy_fails_the_pod_with_exit_code_and_log_fallback_message(
    kube: Clients, namespace: str
) -> None:
    container = python_container(
        "main",
        "import sys; print('fatal: no model'); sys.exit(3)",
        terminationMessagePolicy="FallbackToLogsOnError",
    )
    kube.core.create_namespaced_pod(namespace, pod_body("dies", [container], restartPolicy="Never"))
    pod = wait_for_pod(kube, namespace, "dies", lambda p: phase(p) == "Failed")
    terminated = container_status(pod)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert terminated["message"] == "fatal: no model"
    assert container_status(pod)["restartCount"] == 0


def test_always_policy_crash_loops_with_backoff(kube: Clients, namespace: str) -> None:
    kube.core.create_namespaced_pod(
        namespace, pod_body("loop", [python_container("main", "raise SystemExit(1)")])
    )

    def crash_looping(pod: dict[str, Any]) -> bool:
        status = container_status(pod)
        waiting = status.get("state", {}).get("waiting", {})
        return bool(status.get("restartCount", 0) >= 2 and waiting.get("reason") == "CrashLoopBackOff")

    status = container_status(wait_for_pod(kube, namespace, "loop", crash_looping, timeout=30))
    assert "back-off" in status["state"]["waiting"]["message"]
    reasons = wait_until(lambda: (r := kube.event_reasons(namespace, "loop")) and "BackOff" in r and r)
    assert {"Scheduled", "Started", "BackOff"} <= set(reasons)
    assert phase(kube.pod(namespace, "loop")) == "Running"


def test_init_container_runs_first_and_shares_empty_dir(kube: Clients, namespace: str) -> None:
    init = python_container(
        "init",
        "open('/shared/seed', 'w').write('seeded')",
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    main = python_container(
        "main",
        "open('/dev/termination-log', 'w').write(open('/shared/seed').read())",
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    body = pod_body(
        "inits",
        [main],
        initContainers=[init],
        restartPolicy="Never",
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    kube.core.create_namespaced_pod(namespace, body)
    pod = wait_for_pod(kube, namespace, "inits", lambda p: phase(p) == "Succeeded")
    assert container_status(pod)["state"]["terminated"]["message"] == "seeded"
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_deleting_a_pod_sends_sigterm_then_sigkill_after_the_grace_period(
    kube: Clients, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "signals"
    script = (
        "import signal, time, sys\n"
        f"def on_term(*_):\n    open({str(marker)!r}, 'a').write('TERM\\n')\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "while True:\n    time.sleep(0.1)\n"
    )
    body = pod_body("stubborn", [python_container("main", script)], terminationGracePeriodSeconds=1)
    kube.core.create_namespaced_pod(namespace, body)
    pod = wait_for_pod(
        kube, namespace, "stubborn", lambda p: "running" in container_status(p).get("state", {})
    )
    pid = int(container_status(pod)["containerID"].removeprefix("process://"))
    assert Path(f"/proc/{pid}").exists()
    time.sleep(0.3)  # let the interpreter install its SIGTERM handler
    began = time.monotonic()
    kube.core.delete_namespaced_pod("stubborn", namespace)
    wait_until(lambda: kube.pod(namespace, "stubborn") is None, what="the pod to disappear")
    wait_until(
        lambda: (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ),
        what="the process to die",
    )
    assert time.monotonic() - began >= 0.9
    assert marker.read_text() == "TERM\n"


def test_graceful_deletion_of_a_pod_with_a_finalizer_stops_it_and_reports_the_kill(
    kube: Clients, namespace: str
) -> None:
    script = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)\n"
    body = pod_body("held", [python_container("main", script)], terminationGracePeriodSeconds=1)
    body["metadata"]["finalizers"] = ["kubepilot.io/test-hold"]
    kube.core.create_namespaced_pod(namespace, body)
    pod = wait_for_pod(kube, namespace, "held", lambda p: "running" in container_status(p).get("state", {}))
    pid = int(container_status(pod)["containerID"].removeprefix("process://"))
    time.sleep(0.3)  # let the interpreter start ignoring SIGTERM
    kube.core.delete_namespaced_pod("held", namespace)
    pod = wait_for_pod(
        kube, namespace, "held", lambda p: "terminated" in container_status(p).get("state", {})
    )
    assert pod["metadata"]["deletionTimestamp"]
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 137
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    kube.core.patch_namespaced_pod("held", namespace, {"metadata": {"finalizers": None}})
    # Force-delete as `kubectl delete --force --grace-period=0` would, now that nothing holds the pod.
    kube.core.delete_namespaced_pod("held", namespace, grace_period_seconds=0)
    wait_until(lambda: kube.pod(namespace, "held") is None, what="the pod to go")


def test_missing_secret_leaves_the_container_waiting_until_it_appears(kube: Clients, namespace: str) -> None:
    container = python_container(
        "main", "pass", env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]
    )
    kube.core.create_namespaced_pod(namespace, pod_body("patient", [container], restartPolicy="Never"))
    pod = wait_for_pod(
        kube,
        namespace,
        "patient",
        lambda p: (
            container_status(p).get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        ),
    )
    assert container_status(pod)["state"]["waiting"]["message"] == 'secret "later" not found'
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "later"}, "stringData": {"k": "v"}})
    wait_for_pod(kube, namespace, "patient", lambda p: phase(p) == "Succeeded", timeout=20)
