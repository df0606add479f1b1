"""Deployments (through ReplicaSets) and DaemonSets with real pods and real kubectl rollout commands."""

from __future__ import annotations

from typing import Any

import pytest
from _dc2_helpers import Clients, DevCluster, kubectl, python_container, wait_until

SLEEPER = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(3600)"


@pytest.fixture
def kube(devcluster: DevCluster) -> Clients:
    return Clients(devcluster)


def _template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [python_container("main", SLEEPER)]},
    }


def _running_pods(kube: Clients, namespace: str, app: str) -> list[dict[str, Any]]:
    return [
        p
        for p in kube.pods(namespace, f"app={app}")
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def test_deployment_rolls_out_scales_to_zero_and_back_and_restarts(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": _template("api")},
    }
    kube.apps.create_namespaced_deployment(namespace, body)
    rollout = kubectl(devcluster, "-n", namespace, "rollout", "status", "deployment/api", "--timeout=40s")
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    assert "successfully rolled out" in rollout.stdout
    first = {p["metadata"]["name"] for p in _running_pods(kube, namespace, "api")}
    assert len(first) == 2
    replicasets = kube.read(kube.apps.list_namespaced_replica_set, namespace) or {}
    assert [rs["metadata"]["labels"].get("pod-template-hash") for rs in replicasets["items"]] != [None]

    kube.apps.patch_namespaced_deployment_scale("api", namespace, {"spec": {"replicas": 0}})
    wait_until(lambda: kube.pods(namespace, "app=api") == [], timeout=20, what="scale to zero")
    kube.apps.patch_namespaced_deployment("api", namespace, {"spec": {"replicas": 1}})
    wait_until(lambda: len(_running_pods(kube, namespace, "api")) == 1, timeout=20, what="scale back to one")

    restarted = kubectl(devcluster, "-n", namespace, "rollout", "restart", "deployment/api")
    assert restarted.returncode == 0, restarted.stderr
    rollout = kubectl(devcluster, "-n", namespace, "rollout", "status", "deployment/api", "--timeout=40s")
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    wait_until(lambda: len(kube.pods(namespace, "app=api")) == 1, timeout=20, what="the old pod to go")
    deployment = kube.read(kube.apps.read_namespaced_deployment, "api", namespace) or {}
    status = deployment["status"]
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (1, 1, 1)
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    replicasets = (kube.read(kube.apps.list_namespaced_replica_set, namespace) or {})["items"]
    assert sorted(rs["spec"]["replicas"] for rs in replicasets) == [0, 1]
    (pod,) = kube.pods(namespace, "app=api")
    assert pod["metadata"]["name"] not in first


def test_daemonset_runs_one_pod_and_replaces_it_on_template_change(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _template("agent")},
    }
    kube.apps.create_namespaced_daemon_set(namespace, body)
    rollout = kubectl(devcluster, "-n", namespace, "rollout", "status", "daemonset/agent", "--timeout=30s")
    assert rollout.returncode == 0, rollout.stdout + rollout.stderr
    (first,) = _running_pods(kube, namespace, "agent")
    assert first["spec"]["nodeName"] == "devcluster-node"
    status = (kube.read(kube.apps.read_namespaced_daemon_set, "agent", namespace) or {})["status"]
    assert (status["desiredNumberScheduled"], status["numberReady"], status["updatedNumberScheduled"]) == (
        1,
        1,
        1,
    )

    kube.apps.patch_namespaced_daemon_set(
        "agent", namespace, {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    )
    replaced = wait_until(
        lambda: [
            p
            for p in _running_pods(kube, namespace, "agent")
            if p["metadata"]["name"] != first["metadata"]["name"]
        ],
        timeout=20,
        what="a replacement pod",
    )
    assert replaced[0]["metadata"]["annotations"]["rev"] == "2"
    wait_until(lambda: len(kube.pods(namespace, "app=agent")) == 1, timeout=20, what="only the new pod left")


def test_rollout_of_an_unrunnable_image_fails_at_the_progress_deadline(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    template = {
        "metadata": {"labels": {"app": "bad"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    }
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {
            "replicas": 1,
            "progressDeadlineSeconds": 2,
            "selector": {"matchLabels": {"app": "bad"}},
            "template": template,
        },
    }
    kube.apps.create_namespaced_deployment(namespace, body)
    rollout = kubectl(devcluster, "-n", namespace, "rollout", "status", "deployment/bad", "--timeout=30s")
    assert rollout.returncode != 0
    assert 'deployment "bad" exceeded its progress deadline' in rollout.stderr
