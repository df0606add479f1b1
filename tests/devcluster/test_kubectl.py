"""The real kubectl (v1.37) against the devcluster: the verbs and output formats people use."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

from kubepilot_devcluster.testing import DevCluster
from tests.devcluster.conftest import KUBECTL, WIDGET_CRD, Kubectl

WIDGET = """
apiVersion: example.kubepilot.io/v1
kind: Widget
metadata:
  name: {name}
spec:
  size: {size}
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {nowhere: "true"}
      containers:
        - name: main
          image: nginx:1.27
          env: [{name: MODE, value: "%s"}]
"""


def test_kubectl_create_subcommands_work_despite_protobuf_bodies(kubectl: Kubectl, namespace: str) -> None:
    kubectl("-n", namespace, "create", "configmap", "c1", "--from-literal=a=b")
    kubectl("-n", namespace, "create", "secret", "generic", "s1", "--from-literal=token=abc")
    kubectl("-n", namespace, "create", "serviceaccount", "robot")
    kubectl("-n", namespace, "create", "job", "j1", "--image=busybox", "--", "echo", "hi")
    kubectl("-n", namespace, "create", "deployment", "d1", "--image=nginx", "--replicas=0")
    kubectl("-n", namespace, "create", "service", "clusterip", "svc", "--tcp=80:8080")
    secret = json.loads(kubectl("-n", namespace, "get", "secret", "s1", "-o", "json").stdout)
    assert secret["data"] == {"token": "YWJj"}
    job = json.loads(kubectl("-n", namespace, "get", "job", "j1", "-o", "json").stdout)
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    deployment = json.loads(kubectl("-n", namespace, "get", "deploy", "d1", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 0
    service = json.loads(kubectl("-n", namespace, "get", "svc", "svc", "-o", "json").stdout)
    assert service["spec"]["ports"] == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]
    assert service["spec"]["clusterIP"]
    names = kubectl("-n", namespace, "get", "cm,sa", "-o", "name").stdout.split()
    assert {"configmap/c1", "serviceaccount/robot", "serviceaccount/default"} <= set(names)


def test_kubectl_apply_twice_updates_a_deployment(kubectl: Kubectl, namespace: str) -> None:
    assert "created" in kubectl("-n", namespace, "apply", "-f", "-", stdin=DEPLOYMENT % "a").stdout
    assert "unchanged" in kubectl("-n", namespace, "apply", "-f", "-", stdin=DEPLOYMENT % "a").stdout
    assert "configured" in kubectl("-n", namespace, "apply", "-f", "-", stdin=DEPLOYMENT % "b").stdout
    env = kubectl(
        "-n",
        namespace,
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[0].value} {.metadata.generation}",
    ).stdout
    assert env == "b 2"


def test_kubectl_apply_crd_then_custom_resources(kubectl: Kubectl, namespace: str, widget_crd: str) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD))
    assert "unchanged" in kubectl("apply", "-f", "-", stdin=yaml.safe_dump(WIDGET_CRD)).stdout
    kubectl("wait", "--for=condition=Established", "crd/widgets.example.kubepilot.io", "--timeout=10s")
    assert (
        "created"
        in kubectl("-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w1", size="small")).stdout
    )
    assert (
        "configured"
        in kubectl("-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w1", size="large")).stdout
    )
    bad = kubectl(
        "-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w2", size="huge"), check=False
    )
    assert bad.returncode != 0
    assert 'Unsupported value: "huge"' in bad.stderr
    unknown = kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        check=False,
        stdin=WIDGET.format(name="w3", size="small") + "  bogus: 1\n",
    )
    assert unknown.returncode != 0
    assert 'unknown field "spec.bogus"' in unknown.stderr


def test_kubectl_get_formats_columns_categories_and_short_names(
    kubectl: Kubectl, namespace: str, widget_crd: str
) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w1", size="medium"))
    table = kubectl("-n", namespace, "get", "widgets").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "AGE"]
    assert table[1].split()[:2] == ["w1", "medium"]
    assert "w1" in kubectl("-n", namespace, "get", "wd").stdout
    assert (
        "widget.example.kubepilot.io/w1" in kubectl("-n", namespace, "get", "kubepilot", "-o", "name").stdout
    )
    as_yaml = yaml.safe_load(kubectl("-n", namespace, "get", "widget", "w1", "-o", "yaml").stdout)
    assert as_yaml["spec"] == {"size": "medium", "replicas": 1}


def test_kubectl_get_pods_wide_labels_and_field_selectors(kubectl: Kubectl, namespace: str) -> None:
    for name, tier in (("p1", "web"), ("p2", "db")):
        kubectl(
            "-n",
            namespace,
            "run",
            name,
            "--image=busybox",
            f"--labels=tier={tier}",
            "--overrides",
            '{"spec": {"nodeSelector": {"nowhere": "true"}}}',
        )
    wide = kubectl("-n", namespace, "get", "pods", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert kubectl("-n", namespace, "get", "pods", "-l", "tier=web", "-o", "name").stdout.split() == [
        "pod/p1"
    ]
    selected = kubectl("-n", namespace, "get", "pods", "--field-selector", "metadata.name=p2", "-o", "name")
    assert selected.stdout.split() == ["pod/p2"]


def test_kubectl_patch_all_three_types(kubectl: Kubectl, namespace: str) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=DEPLOYMENT % "a")
    kubectl("-n", namespace, "patch", "deploy", "web", "--type=merge", "-p", '{"spec":{"replicas":0}}')
    kubectl(
        "-n",
        namespace,
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/extra","value":"yes"}]',
    )
    kubectl(
        "-n",
        namespace,
        "patch",
        "deploy",
        "web",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}',
    )
    result = json.loads(kubectl("-n", namespace, "get", "deploy", "web", "-o", "json").stdout)
    assert result["spec"]["replicas"] == 0
    assert result["metadata"]["labels"]["extra"] == "yes"
    assert [c["name"] for c in result["spec"]["template"]["spec"]["containers"]] == ["main", "side"]


def test_kubectl_get_watch_prints_changes_as_they_happen(
    devcluster: DevCluster, kubectl: Kubectl, namespace: str
) -> None:
    command = [
        str(KUBECTL),
        "--kubeconfig",
        str(devcluster.kubeconfig),
        "-n",
        namespace,
        "get",
        "cm",
        "-w",
        "--output-watch-events",
    ]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        kubectl("-n", namespace, "create", "configmap", "watched", "--from-literal=a=b")
        kubectl("-n", namespace, "label", "configmap", "watched", "x=y")
        kubectl("-n", namespace, "delete", "configmap", "watched")
        time.sleep(0.5)
    finally:
        watcher.terminate()
        output, _ = watcher.communicate(timeout=10)
    events = [line.split()[0] for line in output.splitlines() if "watched" in line]
    assert events == ["ADDED", "MODIFIED", "DELETED"]


def test_kubectl_describe_and_explain(kubectl: Kubectl, namespace: str, widget_crd: str) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w1", size="small"))
    described = kubectl("-n", namespace, "describe", "widget", "w1").stdout
    assert "Name:         w1" in described
    assert "Size:      small" in described
    explained = kubectl("explain", "widget.spec").stdout
    assert "What the widget should be." in explained
    assert "How big the widget is." in explained
    assert "Container image name." in kubectl("explain", "pod.spec.containers.image").stdout


def test_kubectl_wait_for_jsonpath_and_conditions(kubectl: Kubectl, namespace: str, widget_crd: str) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w1", size="small"))
    kubectl(
        "-n",
        namespace,
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready"}}',
    )
    kubectl("-n", namespace, "wait", "--for=jsonpath={.status.phase}=Ready", "widget/w1", "--timeout=10s")
    kubectl("wait", "--for=jsonpath={.status.phase}=Active", f"namespace/{namespace}", "--timeout=10s")


def test_kubectl_scale_and_delete(kubectl: Kubectl, namespace: str, widget_crd: str) -> None:
    kubectl("-n", namespace, "apply", "-f", "-", stdin=WIDGET.format(name="w1", size="small"))
    kubectl("-n", namespace, "scale", "widget", "w1", "--replicas=3")
    assert kubectl("-n", namespace, "get", "widget", "w1", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    assert "deleted" in kubectl("-n", namespace, "delete", "widget", "w1").stdout
    missing = kubectl("-n", namespace, "get", "widget", "w1", check=False)
    assert missing.returncode != 0
    assert 'widgets.example.kubepilot.io "w1" not found' in missing.stderr


def test_kubectl_api_resources_lists_built_ins_and_crds(kubectl: Kubectl, widget_crd: str) -> None:
    listing = kubectl("api-resources", "--no-headers").stdout
    for expected in ("pods", "deployments", "jobs", "leases", "customresourcedefinitions", "widgets"):
        assert expected in listing


def test_kubeconfig_has_a_devcluster_context(devcluster: DevCluster) -> None:
    config = yaml.safe_load(Path(devcluster.kubeconfig).read_text())
    assert config["current-context"] == "devcluster"
    assert config["clusters"][0]["cluster"]["server"] == devcluster.url


def test_kubectl_auth_reviews_allow_everything(kubectl: Kubectl) -> None:
    assert kubectl("auth", "can-i", "delete", "pods", "-A").stdout.strip() == "yes"
    assert "devcluster-admin" in kubectl("auth", "whoami").stdout


RBAC_AND_STORAGE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kubepilot-test-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kubepilot-test-reader}
subjects: [{kind: ServiceAccount, name: default}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"""


def test_kubectl_applies_rbac_and_volume_claims(kubectl: Kubectl, namespace: str) -> None:
    applied = kubectl("-n", namespace, "apply", "-f", "-", stdin=RBAC_AND_STORAGE).stdout
    assert "clusterrole.rbac.authorization.k8s.io/kubepilot-test-reader created" in applied
    assert "rolebinding.rbac.authorization.k8s.io/read-pods created" in applied
    claim = json.loads(kubectl("-n", namespace, "get", "pvc", "models", "-o", "json").stdout)
    assert claim["status"] == {"phase": "Pending"}
    assert claim["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    kubectl("delete", "clusterrole", "kubepilot-test-reader")
