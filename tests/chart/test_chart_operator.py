"""The operator's Deployment, Service and settings ConfigMap, as the chart renders them."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from kubepilot_operator.settings import Settings
from tests.chart.chart_tools import (
    NAMESPACE,
    RELEASE,
    of_kind,
    one,
    operator_container,
    render,
    settings_document,
)

VOLUMES = ("models", "datasets", "outputs")


def _pod(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = one(manifests, "Deployment", f"{RELEASE}-operator")["spec"]["template"]
    return template


def test_the_operator_runs_the_kubepilot_command_on_the_mounted_settings_file() -> None:
    manifests = render()
    container = operator_container(manifests)
    assert container["image"] == "kubepilot/operator:0.1.0"
    assert container["command"] == ["kubepilot"]
    assert container["args"] == ["operator", "--settings", "/etc/kubepilot/operator/settings.yaml"]
    settings_file = PurePosixPath(container["args"][2])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(settings_file.parent))
    volume = next(v for v in _pod(manifests)["spec"]["volumes"] if v["name"] == mount["name"])
    config_map = one(manifests, "ConfigMap", volume["configMap"]["name"])
    assert settings_file.name in config_map["data"]


def test_the_operator_pod_runs_non_root_with_a_liveness_probe_on_the_health_port() -> None:
    manifests = render()
    pod = _pod(manifests)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = operator_container(manifests)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"intake": 8081, "health": 8080}
    assert ports[probe["port"]] == 8080 == Settings(**settings_document(manifests)).healthPort


def test_the_settings_configmap_parses_into_the_operator_settings() -> None:
    settings = Settings(**settings_document(render()))
    for name in VOLUMES:
        volume = getattr(settings.storage, name)
        assert volume.claimName == f"{RELEASE}-{name}"
        assert volume.mountPath == volume.operatorPath == f"/{name}"
    assert settings.intake.host == "0.0.0.0"
    assert settings.intake.port == 8081
    assert settings.intake_url == f"http://{RELEASE}-operator.{NAMESPACE}.svc:8081"
    assert settings.operatorNamespace == NAMESPACE


def test_the_operator_mounts_each_claim_where_the_settings_say_it_sees_it() -> None:
    manifests = render()
    settings = Settings(**settings_document(manifests))
    volumes = {v["name"]: v for v in _pod(manifests)["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in operator_container(manifests)["volumeMounts"]}
    for name in VOLUMES:
        volume = getattr(settings.storage, name)
        assert volumes[name] == volume.pod_volume(name)
        assert mounts[name] == volume.operatorPath


def test_values_settings_are_kept_and_the_keys_the_chart_owns_win() -> None:
    values = {
        "operator": {
            "settings": {
                "namespaces": ["team-a", "team-b"],
                "reconcileWorkers": 4,
                "intake": {"port": 9999, "statusWriteIntervalSeconds": 2.5},
                "storage": {"models": {"claimName": "mine"}},
                "operatorNamespace": "elsewhere",
            }
        }
    }
    settings = Settings(**settings_document(render(values, name="ai", namespace="gpu")))
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.reconcileWorkers == 4
    assert settings.intake.statusWriteIntervalSeconds == 2.5
    assert settings.intake.port == 8081
    assert settings.intake_url == "http://ai-operator.gpu.svc:8081"
    assert settings.storage.models.claimName == "ai-models"
    assert settings.operatorNamespace == "gpu"


def test_ports_from_values_reach_the_container_the_service_and_the_settings() -> None:
    manifests = render({"operator": {"ports": {"intake": 9443, "health": 9090}}})
    settings = Settings(**settings_document(manifests))
    assert (settings.intake.port, settings.healthPort) == (9443, 9090)
    assert settings.intake_url.endswith(":9443")
    service = one(manifests, "Service", f"{RELEASE}-operator")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"intake": 9443, "health": 9090}
    container = operator_container(manifests)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"intake": 9443, "health": 9090}


def test_the_settings_hash_rolls_the_pod_only_when_the_settings_change() -> None:
    def settings_hash(values: dict[str, Any]) -> str:
        annotations = _pod(render(values))["metadata"]["annotations"]
        return str(annotations["kubepilot.io/settings-hash"])

    default = settings_hash({})
    assert len(default) == 64
    assert settings_hash({"operator": {"resources": {"limits": {"memory": "1Gi"}}}}) == default
    assert settings_hash({"operator": {"settings": {"reconcileWorkers": 2}}}) != default
    assert settings_hash({"storage": {"models": {"existingClaim": "weights"}}}) != default


def test_the_service_sends_intake_and_health_traffic_to_the_operator_pods() -> None:
    manifests = render()
    service = one(manifests, "Service", f"{RELEASE}-operator")
    pod_labels = _pod(manifests)["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {p["name"] for p in operator_container(manifests)["ports"]}
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"intake": (8081, "intake"), "health": (8080, "health")}
    assert {target for _, target in ports.values()} <= container_ports
    deployment = one(manifests, "Deployment", f"{RELEASE}-operator")
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_image_resources_and_scheduling_come_from_values() -> None:
    values = {
        "operator": {
            "image": {"repository": "registry.example/kp/operator", "tag": "1.2.3", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "regcred"}],
            "replicas": 2,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "podAnnotations": {"example.com/team": "ml"},
        }
    }
    manifests = render(values)
    deployment = one(manifests, "Deployment", f"{RELEASE}-operator")
    pod = deployment["spec"]["template"]
    container = operator_container(manifests)
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "registry.example/kp/operator:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == values["operator"]["resources"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == values["operator"]["tolerations"]
    assert pod["metadata"]["annotations"]["example.com/team"] == "ml"
    assert "kubepilot.io/settings-hash" in pod["metadata"]["annotations"]


def test_the_chart_runs_the_operator_and_no_worker_pod() -> None:
    manifests = render({"metrics": {"serviceMonitor": {"enabled": True}}, "operator": {"replicas": 3}})
    workloads = [
        doc
        for doc in manifests
        if doc["kind"] in {"Pod", "Job", "CronJob", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}
    ]
    # Besides the operator, only the gateway (a Deployment) and the node agent (a DaemonSet, off
    # by default) are the chart's own; workloads' pods come from the operator.
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in workloads}
    assert ("Deployment", f"{RELEASE}-operator") in kinds
    assert kinds <= {("Deployment", f"{RELEASE}-operator"), ("Deployment", f"{RELEASE}-gateway")}
    assert of_kind(manifests, "Job") == []
