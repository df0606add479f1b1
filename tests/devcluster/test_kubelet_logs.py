"""Container logs written by the kubelet and served through ``pods/log`` to kubectl (plain, tail, follow)."""

from __future__ import annotations

import subprocess
import time

import pytest
from _dc2_helpers import KUBECTL, Clients, DevCluster, kubectl, phase, pod_body, python_container, wait_until


@pytest.fixture
def kube(devcluster: DevCluster) -> Clients:
    return Clients(devcluster)


def test_kubectl_logs_shows_stdout_and_stderr_with_tail(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    script = "import sys\nfor i in range(5):\n    print('line', i)\nprint('oops', file=sys.stderr)\n"
    kube.core.create_namespaced_pod(
        namespace, pod_body("talker", [python_container("main", script)], restartPolicy="Never")
    )
    wait_until(lambda: phase(kube.pod(namespace, "talker")) == "Succeeded", what="the pod to finish")
    logs = kubectl(devcluster, "-n", namespace, "logs", "talker")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == ["line 0", "line 1", "line 2", "line 3", "line 4", "oops"]
    tail = kubectl(devcluster, "-n", namespace, "logs", "talker", "--tail=2")
    assert tail.stdout.splitlines() == ["line 4", "oops"]


def test_kubectl_logs_follow_streams_until_the_pod_ends(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    script = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n"
    kube.core.create_namespaced_pod(
        namespace, pod_body("ticker", [python_container("main", script)], restartPolicy="Never")
    )
    wait_until(
        lambda: phase(kube.pod(namespace, "ticker")) in ("Running", "Succeeded"), what="the pod to start"
    )
    began = time.monotonic()
    follow = subprocess.run(
        [KUBECTL, "--kubeconfig", str(devcluster.kubeconfig), "-n", namespace, "logs", "-f", "ticker"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == ["tick 0", "tick 1", "tick 2"]
    assert time.monotonic() - began < 20


def test_kubectl_logs_previous_shows_the_run_before_the_last_restart(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    script = (
        "import os, pathlib, sys\n"
        "marker = pathlib.Path(os.environ['KUBEPILOT_VOLUME_WORK']) / 'runs'\n"
        "runs = int(marker.read_text()) if marker.exists() else 0\n"
        "marker.write_text(str(runs + 1))\n"
        "print('run', runs, flush=True)\n"
        "sys.exit(1 if runs == 0 else 0)\n"
    )
    container = python_container("main", script, volumeMounts=[{"name": "work", "mountPath": "/work"}])
    body = pod_body(
        "twice", [container], restartPolicy="OnFailure", volumes=[{"name": "work", "emptyDir": {}}]
    )
    kube.core.create_namespaced_pod(namespace, body)
    wait_until(lambda: phase(kube.pod(namespace, "twice")) == "Succeeded", what="the second run to succeed")
    assert kubectl(devcluster, "-n", namespace, "logs", "twice").stdout == "run 1\n"
    previous = kubectl(devcluster, "-n", namespace, "logs", "twice", "--previous")
    assert previous.returncode == 0, previous.stderr
    assert previous.stdout == "run 0\n"
