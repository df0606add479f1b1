"""The node agent's DaemonSet, headless Service and config, and how the gateway finds the agents."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from helm_python import lint

from kubepilot_api.workers.config import NodeAgentConfig
from kubepilot_gateway.app.settings import load_gateway_settings
from tests.chart.chart_tools import CHART, NAMESPACE, RELEASE, Manifest, of_kind, one, render

AGENT = f"{RELEASE}-node-agent"


def _render(node_agent: dict[str, Any] | None = None, **values: Any) -> list[Manifest]:
    return render({"nodeAgent": {"enabled": True, **(node_agent or {})}, **values})


def _pod(manifests: list[Manifest]) -> dict[str, Any]:
    template: dict[str, Any] = one(manifests, "DaemonSet", AGENT)["spec"]["template"]
    return template


def _container(manifests: list[Manifest]) -> dict[str, Any]:
    [container] = _pod(manifests)["spec"]["containers"]
    return dict(container)


def _config(manifests: list[Manifest]) -> NodeAgentConfig:
    """The config as the agent reads it from its mounted file."""
    container = _container(manifests)
    assert container["command"] == ["kubepilot"]
    assert container["args"][:2] == ["node-agent", "--config"]
    config_file = PurePosixPath(container["args"][2])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_file.parent))
    volume = next(v for v in _pod(manifests)["spec"]["volumes"] if v["name"] == mount["name"])
    config_map = one(manifests, "ConfigMap", volume["configMap"]["name"])
    return NodeAgentConfig.model_validate_json(config_map["data"][config_file.name])


def test_no_node_agent_unless_enabled() -> None:
    manifests = render()
    assert of_kind(manifests, "DaemonSet") == []
    assert [doc for doc in manifests if doc["metadata"]["name"].startswith(AGENT)] == []


def test_the_daemonset_config_parses_as_the_node_agent_config() -> None:
    manifests = _render()
    config = _config(manifests)
    assert config.host == "0.0.0.0"
    assert config.port == 9400
    assert config.diskPaths == ["/"]
    assert _container(manifests)["image"] == "kubepilot/node-agent:0.1.0"


def test_the_port_reaches_the_config_the_container_the_probes_and_the_service() -> None:
    manifests = _render({"port": 9500})
    config = _config(manifests)
    container = _container(manifests)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": config.port} == {"metrics": 9500}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    service = one(manifests, "Service", AGENT)
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9500, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_the_headless_service_selects_the_agent_pods() -> None:
    manifests = _render()
    service = one(manifests, "Service", AGENT)
    assert service["spec"]["clusterIP"] == "None"
    labels = _pod(manifests)["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert (
        one(manifests, "DaemonSet", AGENT)["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    )
    # The gateway's pods must not be selected, nor the agents by the gateway's Services.
    assert labels["app.kubernetes.io/component"] == "node-agent"


def test_the_gateway_reads_the_agents_through_their_service(tmp_path: Path) -> None:
    from kubepilot_gateway.profiles.controlpilot.routes_system import SystemSettings

    manifests = _render({"port": 9500}, gateway={"enabled": True})
    [config_map] = [doc for doc in of_kind(manifests, "ConfigMap") if "gateway.yaml" in doc["data"]]
    path = tmp_path / "gateway.yaml"
    path.write_text(config_map["data"]["gateway.yaml"])
    settings, _ = load_gateway_settings(path)
    system = SystemSettings.model_validate(settings.profileSettings["controlpilot"]["system"])
    service = one(manifests, "Service", AGENT)
    assert system.nodeAgentUrls == [f"http://{service['metadata']['name']}.{NAMESPACE}.svc:9500"]


def test_node_agent_urls_given_in_the_gateway_settings_are_kept() -> None:
    urls = ["http://10.0.0.5:9400", "http://10.0.0.6:9400"]
    values = {
        "enabled": True,
        "settings": {"profileSettings": {"controlpilot": {"system": {"nodeAgentUrls": urls}}}},
    }
    for node_agent in (True, False):
        manifests = render({"gateway": values, "nodeAgent": {"enabled": node_agent}})
        [config_map] = [doc for doc in of_kind(manifests, "ConfigMap") if "gateway.yaml" in doc["data"]]
        settings = yaml.safe_load(config_map["data"]["gateway.yaml"])
        assert settings["profileSettings"]["controlpilot"]["system"]["nodeAgentUrls"] == urls


def test_the_agent_runs_with_least_privilege() -> None:
    manifests = _render()
    pod = _pod(manifests)["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    for host_access in ("hostPID", "hostNetwork", "hostIPC", "serviceAccountName"):
        assert host_access not in pod
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = _container(manifests)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert all("hostPort" not in port for port in container["ports"])
    assert not any("hostPath" in volume for volume in pod["volumes"])
    assert one(manifests, "DaemonSet", AGENT)["metadata"]["namespace"] == NAMESPACE


def test_host_disks_are_mounted_read_only_and_reported() -> None:
    disks = [{"name": "root", "path": "/"}, {"name": "data", "path": "/mnt/data"}]
    manifests = _render({"hostDisks": disks})
    config = _config(manifests)
    assert config.diskPaths == ["/", "/host/root", "/host/data"]
    pod = _pod(manifests)["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in _container(manifests)["volumeMounts"]}
    for disk, path in zip(disks, config.diskPaths[1:], strict=True):
        mount = mounts[path]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["hostPath"] == {"path": disk["path"], "type": "Directory"}
    assert sum("hostPath" in v for v in pod["volumes"]) == len(disks)


def test_the_claims_are_not_mounted_on_every_node() -> None:
    # The gateway measures the three volumes itself; a ReadWriteOnce claim could not follow the
    # agents onto every node anyway.
    pod = _pod(_render())["spec"]
    assert not any("persistentVolumeClaim" in volume for volume in pod["volumes"])


def test_gpu_nodes_are_tolerated_and_scheduling_comes_from_values() -> None:
    pod = _pod(_render())["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "nodeSelector" not in pod  # CPU nodes are a normal case
    values = {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [],
        "runtimeClassName": "nvidia",
        "priorityClassName": "system-node-critical",
        "resources": {"limits": {"memory": "256Mi"}},
        "image": {"repository": "registry.example/kp/node-agent", "tag": "2.0", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "podAnnotations": {"example.com/team": "ml"},
    }
    manifests = _render(values)
    pod = _pod(manifests)
    spec = pod["spec"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert "tolerations" not in spec
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    container = _container(manifests)
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    assert container["image"] == "registry.example/kp/node-agent:2.0"
    assert container["imagePullPolicy"] == "Always"
    assert pod["metadata"]["annotations"]["example.com/team"] == "ml"


def test_the_config_hash_rolls_the_agents_only_when_the_config_changes() -> None:
    def config_hash(values: dict[str, Any]) -> str:
        return str(_pod(_render(values))["metadata"]["annotations"]["kubepilot.io/config-hash"])

    default = config_hash({})
    assert len(default) == 64
    assert config_hash({"resources": {"limits": {"memory": "1Gi"}}}) == default
    assert config_hash({"port": 9401}) != default
    assert config_hash({"hostDisks": [{"name": "data", "path": "/data"}]}) != default


def test_the_service_monitor_scrapes_every_agent() -> None:
    assert of_kind(_render(), "ServiceMonitor") == []
    manifests = _render(
        {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}}
    )
    monitor = one(manifests, "ServiceMonitor", AGENT)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(manifests, "Service", AGENT)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "15s")
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize(
    "values",
    [
        {"nodeAgent": {"enabled": True}},
        {
            "nodeAgent": {
                "enabled": True,
                "hostDisks": [{"name": "data", "path": "/mnt/data"}],
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "runtimeClassName": "nvidia",
                "serviceMonitor": {"enabled": True},
            },
            "gateway": {"enabled": True},
        },
    ],
    ids=["defaults", "everything"],
)
def test_the_chart_lints_clean_with_the_node_agent(values: dict[str, Any]) -> None:
    report = lint(CHART, values, strict=True, namespace="ai", kube_version="v1.31.0")
    assert [m["error"] for m in report["messages"] if m["severity"] >= 2] + list(report["errors"]) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nodeAgent": {"hostDisks": [{"name": "Data", "path": "/data"}]}}, "'/nodeAgent/hostDisks/0/name'"),
        ({"nodeAgent": {"hostDisks": [{"name": "data", "path": "data"}]}}, "'/nodeAgent/hostDisks/0/path'"),
        ({"nodeAgent": {"hostDisks": [{"name": "data"}]}}, "missing property 'path'"),
        ({"nodeAgent": {"port": 0}}, "'/nodeAgent/port'"),
        ({"nodeAgent": {"hostPID": True}}, "'hostPID' not allowed"),
    ],
)
def test_node_agent_values_outside_the_schema_are_refused(values: dict[str, Any], message: str) -> None:
    errors = lint(CHART, values, strict=True)["errors"]
    assert any(message in error for error in errors), errors
