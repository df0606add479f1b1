"""The gateway's Deployment, Services, Ingress and settings ConfigMap, as the chart renders them."""

from __future__ import annotations

import base64
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from helm_python import HelmRenderError, lint

from kubepilot_gateway.app.gateway import COMBINED_PREFIX
from kubepilot_gateway.app.settings import ListenerSettings, load_gateway_settings
from kubepilot_gateway.profiles import COMBINED_PORT, NATIVE_PORTS
from kubepilot_gateway.settings import Settings
from tests.chart.chart_tools import CHART, NAMESPACE, RELEASE, Manifest, of_kind, one, render

GATEWAY = f"{RELEASE}-gateway"
VOLUMES = ("models", "datasets", "outputs")
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _render(values: dict[str, Any] | None = None, **kwargs: Any) -> list[Manifest]:
    return render(_merge({"gateway": {"enabled": True}}, values or {}), **kwargs)


def _pod(manifests: list[Manifest]) -> dict[str, Any]:
    template: dict[str, Any] = one(manifests, "Deployment", GATEWAY)["spec"]["template"]
    return template


def _container(manifests: list[Manifest]) -> dict[str, Any]:
    [container] = _pod(manifests)["spec"]["containers"]
    return dict(container)


def _settings_text(manifests: list[Manifest]) -> str:
    [config_map] = [doc for doc in of_kind(manifests, "ConfigMap") if "gateway.yaml" in doc["data"]]
    return str(config_map["data"]["gateway.yaml"])


def _load(manifests: list[Manifest], tmp_path: Path) -> tuple[Settings, ListenerSettings]:
    """The settings as the gateway reads them from its mounted file."""
    path = tmp_path / "gateway.yaml"
    path.write_text(_settings_text(manifests))
    return load_gateway_settings(path)


def _native_ports(listeners: ListenerSettings) -> dict[str, int]:
    """The native listeners the gateway opens under these settings (as Gateway.native_ports)."""
    if not listeners.native:
        return {}
    ports = {}
    for name, native in NATIVE_PORTS.items():
        config = listeners.for_profile(name)
        port = native if config.port is None else config.port
        if config.enabled and port:
            ports[name] = port
    return ports


def _service_ports(manifests: list[Manifest], name: str = GATEWAY) -> dict[str, tuple[int, Any]]:
    service = one(manifests, "Service", name)
    return {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}


def test_the_gateway_can_be_left_out() -> None:
    manifests = render({"gateway": {"enabled": False}})
    gateway = [
        doc for doc in manifests if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"
    ]
    assert gateway == []


def test_the_gateway_runs_the_kubepilot_command_on_the_mounted_settings_file() -> None:
    manifests = _render()
    container = _container(manifests)
    assert container["image"] == "kubepilot/gateway:0.1.0"
    assert container["command"] == ["kubepilot"]
    assert container["args"] == ["gateway", "--settings", "/etc/kubepilot/gateway/gateway.yaml"]
    settings_file = PurePosixPath(container["args"][2])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(settings_file.parent))
    volume = next(v for v in _pod(manifests)["spec"]["volumes"] if v["name"] == mount["name"])
    config_map = one(manifests, "ConfigMap", volume["configMap"]["name"])
    assert list(config_map["data"]) == [settings_file.name]


def test_the_settings_configmap_parses_into_the_gateway_settings(tmp_path: Path) -> None:
    settings, listeners = _load(_render(), tmp_path)
    assert settings.namespace == settings.operatorNamespace == NAMESPACE
    assert settings.volumes.model_dump() == {name: f"/{name}" for name in VOLUMES}
    assert listeners.host == "0.0.0.0"
    assert listeners.combinedPort == COMBINED_PORT
    assert listeners.native is True
    assert listeners.auth.enabled is False
    assert sorted(listeners.profiles) == sorted(NATIVE_PORTS)


def test_the_gateway_mounts_each_claim_where_its_settings_say_it_sees_it(tmp_path: Path) -> None:
    manifests = _render({"storage": {"datasets": {"existingClaim": "shared-data"}}})
    settings, _ = _load(manifests, tmp_path)
    volumes = {v["name"]: v for v in _pod(manifests)["spec"]["volumes"]}
    mounts = {m["name"]: m for m in _container(manifests)["volumeMounts"]}
    for name in VOLUMES:
        assert mounts[name]["mountPath"] == getattr(settings.volumes, name)
        assert not mounts[name].get("readOnly")  # uploads, datasets and images are written there
    claims = {name: volumes[name]["persistentVolumeClaim"]["claimName"] for name in VOLUMES}
    assert claims == {
        "models": f"{RELEASE}-models",
        "datasets": "shared-data",
        "outputs": f"{RELEASE}-outputs",
    }


def test_the_chart_defaults_are_the_gateway_code_defaults() -> None:
    gateway = VALUES["gateway"]
    assert gateway["ports"]["combined"] == COMBINED_PORT
    assert {name: profile["port"] for name, profile in gateway["profiles"].items()} == NATIVE_PORTS
    assert list(gateway["profiles"]) == list(NATIVE_PORTS)
    # One pod cannot listen twice on 8000; HomePilot's own Service answers on it (DESIGN §7).
    service_ports = {name: profile["servicePort"] for name, profile in gateway["profiles"].items()}
    assert service_ports == {**NATIVE_PORTS, "homepilot": 8000}


def test_container_and_service_ports_are_the_listeners_the_settings_open(tmp_path: Path) -> None:
    manifests = _render()
    _, listeners = _load(manifests, tmp_path)
    expected = {"http": listeners.combinedPort, **_native_ports(listeners)}
    assert {p["name"]: p["containerPort"] for p in _container(manifests)["ports"]} == expected
    assert _service_ports(manifests) == {name: (port, name) for name, port in expected.items()}
    service = one(manifests, "Service", GATEWAY)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= _pod(manifests)["metadata"]["labels"].items()
    deployment = one(manifests, "Deployment", GATEWAY)
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_each_profile_has_a_service_on_the_port_its_clients_expect(tmp_path: Path) -> None:
    manifests = _render()
    _, listeners = _load(manifests, tmp_path)
    container_ports = {p["name"]: p["containerPort"] for p in _container(manifests)["ports"]}
    for name, port in _native_ports(listeners).items():
        service = one(manifests, "Service", f"{GATEWAY}-{name}")
        assert service["metadata"]["labels"]["kubepilot.io/profile"] == name
        [service_port] = service["spec"]["ports"]
        assert service_port["targetPort"] == name and container_ports[name] == port
        assert service_port["port"] == VALUES["gateway"]["profiles"][name]["servicePort"]
    assert _service_ports(manifests, f"{GATEWAY}-homepilot") == {"homepilot": (8000, "homepilot")}
    assert container_ports["homepilot"] == 8001


def test_probes_hit_healthz_on_the_combined_port(tmp_path: Path) -> None:
    manifests = _render({"gateway": {"ports": {"combined": 9100}}})
    _, listeners = _load(manifests, tmp_path)
    container = _container(manifests)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz"
        assert ports[check["port"]] == listeners.combinedPort == 9100
    assert _service_ports(manifests)["http"] == (9100, "http")


def test_profiles_can_be_disabled_and_moved(tmp_path: Path) -> None:
    values = {
        "gateway": {
            "profiles": {
                "onetrainer": {"enabled": False},
                "controlpilot": {"port": 17878},
                "sdcpp-studio": {"port": 0},
            }
        }
    }
    manifests = _render(values)
    _, listeners = _load(manifests, tmp_path)
    assert listeners.for_profile("onetrainer").enabled is False
    assert listeners.for_profile("sdcpp-studio").port == 0  # only under /p/sdcpp-studio
    native = _native_ports(listeners)
    assert native == {"controlpilot": 17878, "comfyui-docker": 8080, "homepilot": 8001}
    assert {p["name"]: p["containerPort"] for p in _container(manifests)["ports"]} == {"http": 9000, **native}
    assert set(_service_ports(manifests)) == {"http", *native}
    profile_services = {
        doc["metadata"]["name"]
        for doc in of_kind(manifests, "Service")
        if "kubepilot.io/profile" in doc["metadata"]["labels"]
    }
    assert profile_services == {f"{GATEWAY}-{name}" for name in native}
    # ControlPilot's clients still find it on 7878, wherever the pod listens.
    assert _service_ports(manifests, f"{GATEWAY}-controlpilot") == {"controlpilot": (7878, "controlpilot")}


def test_native_off_leaves_only_the_combined_listener(tmp_path: Path) -> None:
    manifests = _render({"gateway": {"native": False, "listeners": {"native": True}}})
    _, listeners = _load(manifests, tmp_path)
    assert listeners.native is False
    assert [p["name"] for p in _container(manifests)["ports"]] == ["http"]
    assert sorted(doc["metadata"]["name"] for doc in of_kind(manifests, "Service")) == [
        GATEWAY,
        f"{RELEASE}-operator",
    ]


def test_per_profile_services_can_be_left_out() -> None:
    manifests = _render({"gateway": {"service": {"perProfile": False, "type": "LoadBalancer"}}})
    services = [doc for doc in of_kind(manifests, "Service") if doc["metadata"]["name"].startswith(GATEWAY)]
    assert [doc["metadata"]["name"] for doc in services] == [GATEWAY]
    assert services[0]["spec"]["type"] == "LoadBalancer"


@pytest.mark.parametrize(
    "profiles",
    [{"onetrainer": {"port": 8080}}, {"homepilot": {"port": 9000}}],
    ids=["two profiles", "a profile on the combined port"],
)
def test_two_listeners_on_one_port_fail_the_render(profiles: dict[str, Any]) -> None:
    with pytest.raises(HelmRenderError, match=r"is already taken by another gateway listener"):
        _render({"gateway": {"profiles": profiles}})


def test_values_settings_are_kept_and_the_keys_the_chart_owns_win(tmp_path: Path) -> None:
    values = {
        "gateway": {
            "namespace": "studio",
            "profiles": {"controlpilot": {"enabled": False}},
            "settings": {
                "namespace": "elsewhere",
                "operatorNamespace": "elsewhere",
                "volumes": {"models": "/mnt/models"},
                "watch": {"timeoutSeconds": 60},
                "profileSettings": {"controlpilot": {"models": {"hfTokenSecret": "hub-token"}}},
            },
            "listeners": {
                "host": "127.0.0.1",
                "combinedPort": 1234,
                "syncTimeoutSeconds": 120,
                "profiles": {
                    "controlpilot": {"enabled": True, "cors": {"allowOrigins": ["https://cp.example"]}}
                },
                "auth": {"enabled": True, "apiKeyHeader": "X-API-Key"},
            },
        }
    }
    settings, listeners = _load(_render(values, name="ai", namespace="gpu"), tmp_path)
    assert (settings.namespace, settings.operatorNamespace) == ("studio", "gpu")
    assert settings.volumes.models == "/models"
    assert settings.watch.timeoutSeconds == 60
    assert settings.profileSettings["controlpilot"]["models"] == {"hfTokenSecret": "hub-token"}
    assert (listeners.host, listeners.combinedPort, listeners.syncTimeoutSeconds) == ("0.0.0.0", 9000, 120)
    controlpilot = listeners.for_profile("controlpilot")
    assert controlpilot.enabled is False
    assert controlpilot.cors is not None and controlpilot.cors.allowOrigins == ["https://cp.example"]
    assert listeners.auth.enabled is False  # no mounted tokens: the values' auth section decides
    assert listeners.auth.apiKeyHeader == "X-API-Key"


def test_the_controlpilot_settings_the_chart_writes_validate(tmp_path: Path) -> None:
    from kubepilot_gateway.profiles.controlpilot.config import ControlPilotSettings

    settings, _ = _load(_render(), tmp_path)
    controlpilot = ControlPilotSettings.model_validate(settings.profileSettings["controlpilot"])
    # No node agent installed: no agent to ask (the code's default, 127.0.0.1, is nothing in a pod).
    assert controlpilot.system.nodeAgentUrls == []


def test_every_profile_showing_node_figures_reads_the_charts_node_agents(tmp_path: Path) -> None:
    from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
    from kubepilot_gateway.profiles.controlpilot.config import ControlPilotSettings
    from kubepilot_gateway.profiles.onetrainer import OneTrainerSettings

    def urls(settings: Settings) -> list[list[str]]:
        profiles = settings.profileSettings
        return [
            ControlPilotSettings.model_validate(profiles["controlpilot"]).system.nodeAgentUrls,
            OneTrainerSettings.model_validate(profiles["onetrainer"]).system.nodeAgentUrls,
            ComfyUiDockerSettings.model_validate(profiles["comfyui-docker"]).nodeAgentUrls,
        ]

    assert urls(_load(_render(), tmp_path)[0]) == [[], [], []]
    with_agent, _ = _load(_render({"nodeAgent": {"enabled": True}}), tmp_path)
    [[agent], *others] = urls(with_agent)
    assert agent.startswith("http://") and agent.endswith(":9400") and others == [[agent], [agent]]
    mine = {"comfyui-docker": {"nodeAgentUrls": ["http://mine:9400"]}}
    given, _ = _load(
        _render({"nodeAgent": {"enabled": True}, "gateway": {"settings": {"profileSettings": mine}}}),
        tmp_path,
    )
    assert urls(given)[2] == ["http://mine:9400"] and urls(given)[1] == [agent]


def test_the_settings_list_no_listeners_key_from_gateway_settings() -> None:
    report = lint(CHART, {"gateway": {"enabled": True, "settings": {"listeners": {}}}}, strict=True)
    assert any("/gateway/settings" in error for error in report["errors"]), report["errors"]


def test_the_gateway_pod_runs_non_root_on_a_read_only_root() -> None:
    manifests = _render()
    pod = _pod(manifests)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    assert "hostNetwork" not in pod and "hostPID" not in pod
    container = _container(manifests)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert next(v for v in pod["volumes"] if v["name"] == tmp["name"]) == {
        "name": tmp["name"],
        "emptyDir": {},
    }
    account = one(manifests, "ServiceAccount", GATEWAY)
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_the_settings_hash_rolls_the_pod_only_when_the_settings_change() -> None:
    def settings_hash(values: dict[str, Any]) -> str:
        return str(_pod(_render(values))["metadata"]["annotations"]["kubepilot.io/settings-hash"])

    default = settings_hash({})
    assert len(default) == 64
    assert settings_hash({"gateway": {"resources": {"limits": {"memory": "2Gi"}}}}) == default
    assert settings_hash({"gateway": {"settings": {"bus": {"queueSize": 10}}}}) != default
    assert settings_hash({"gateway": {"profiles": {"homepilot": {"enabled": False}}}}) != default
    assert settings_hash({"nodeAgent": {"enabled": True}}) != default


def test_auth_tokens_come_from_a_secret_file_never_from_the_configmap(tmp_path: Path) -> None:
    tokens = ["s3cret-one", "s3cret-two"]
    manifests = _render({"gateway": {"auth": {"enabled": True, "tokens": tokens}}})
    settings_text = _settings_text(manifests)
    assert not any(token in settings_text for token in tokens)
    _, listeners = _load(manifests, tmp_path)
    assert listeners.auth.enabled is True
    tokens_file = PurePosixPath(listeners.auth.tokensFile)
    secret = one(manifests, "Secret", f"{GATEWAY}-auth")
    stored = base64.b64decode(secret["data"][tokens_file.name]).decode()
    assert stored.splitlines() == tokens
    container = _container(manifests)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(tokens_file.parent))
    assert mount["readOnly"] is True and "subPath" not in mount  # a changed Secret reaches the file
    volume = next(v for v in _pod(manifests)["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["items"] == [{"key": tokens_file.name, "path": tokens_file.name}]


def test_auth_can_use_an_existing_secret_and_needs_one() -> None:
    manifests = _render(
        {"gateway": {"auth": {"enabled": True, "existingSecret": "api-tokens", "secretKey": "list"}}}
    )
    assert of_kind(manifests, "Secret") == []
    volume = next(v for v in _pod(manifests)["spec"]["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "api-tokens"
    assert "/list" in _settings_text(manifests)
    with pytest.raises(HelmRenderError, match=r"gateway\.auth\.enabled needs"):
        _render({"gateway": {"auth": {"enabled": True}}})


def test_without_auth_nothing_is_mounted_for_it() -> None:
    manifests = _render()
    assert of_kind(manifests, "Secret") == []
    assert not any("secret" in v for v in _pod(manifests)["spec"]["volumes"])


def test_the_ingress_routes_the_combined_prefix_and_profile_hosts_to_real_service_ports() -> None:
    ingress_values = {
        "enabled": True,
        "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"},
        "hosts": ["kubepilot.example.com"],
        "profileHosts": {"controlpilot": "cp.example.com", "homepilot": "hp.example.com"},
        "tls": [{"secretName": "kp-tls", "hosts": ["kubepilot.example.com"]}],
    }
    manifests = _render({"gateway": {"ingress": ingress_values}})
    ingress = one(manifests, "Ingress", GATEWAY)
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == ingress_values["tls"]
    assert ingress["metadata"]["annotations"] == ingress_values["annotations"]
    rules = {rule["host"]: rule["http"]["paths"] for rule in spec["rules"]}
    assert set(rules) == {"kubepilot.example.com", "cp.example.com", "hp.example.com"}
    [combined] = rules["kubepilot.example.com"]
    assert (combined["path"], combined["pathType"]) == (COMBINED_PREFIX, "Prefix")
    assert combined["backend"]["service"] == {"name": GATEWAY, "port": {"name": "http"}}
    for host, profile in (("cp.example.com", "controlpilot"), ("hp.example.com", "homepilot")):
        [path] = rules[host]
        assert path["path"] == "/"
        backend = path["backend"]["service"]
        assert backend["name"] == f"{GATEWAY}-{profile}"
        assert backend["port"]["name"] in _service_ports(manifests, backend["name"])


def test_profile_hosts_use_the_main_service_without_per_profile_services() -> None:
    values = {
        "gateway": {
            "service": {"perProfile": False},
            "ingress": {"enabled": True, "profileHosts": {"sdcpp-studio": "sd.example.com"}},
        }
    }
    manifests = _render(values)
    [rule] = one(manifests, "Ingress")["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": GATEWAY, "port": {"name": "sdcpp-studio"}}
    assert "sdcpp-studio" in _service_ports(manifests)


def test_an_ingress_needs_a_host_and_a_profile_host_needs_its_profile_served() -> None:
    assert of_kind(_render(), "Ingress") == []
    with pytest.raises(HelmRenderError, match=r"needs gateway\.ingress\.hosts"):
        _render({"gateway": {"ingress": {"enabled": True}}})
    values = {
        "gateway": {
            "profiles": {"onetrainer": {"enabled": False}},
            "ingress": {"enabled": True, "profileHosts": {"onetrainer": "ot.example.com"}},
        }
    }
    with pytest.raises(HelmRenderError, match=r"profileHosts\.onetrainer: the profile is not served"):
        _render(values)


def test_the_service_monitor_scrapes_the_combined_port_of_the_main_service_only() -> None:
    manifests = _render({"gateway": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = one(manifests, "ServiceMonitor", GATEWAY)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selector = monitor["spec"]["selector"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")

    def selected(service: Manifest) -> bool:
        labels = service["metadata"]["labels"]
        absent = [e["key"] for e in selector["matchExpressions"] if e["operator"] == "DoesNotExist"]
        return selector["matchLabels"].items() <= labels.items() and not any(key in labels for key in absent)

    assert [s["metadata"]["name"] for s in of_kind(manifests, "Service") if selected(s)] == [GATEWAY]
    assert of_kind(_render(), "ServiceMonitor") == []


def test_image_resources_and_scheduling_come_from_values() -> None:
    values = {
        "gateway": {
            "image": {"repository": "registry.example/kp/gateway", "tag": "1.2.3", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "regcred"}],
            "replicas": 2,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "podAnnotations": {"example.com/team": "ml"},
            "serviceAccount": {"annotations": {"example.com/role": "gateway"}},
        }
    }
    manifests = _render(values)
    deployment = one(manifests, "Deployment", GATEWAY)
    pod = deployment["spec"]["template"]
    container = _container(manifests)
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "registry.example/kp/gateway:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == values["gateway"]["resources"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == values["gateway"]["tolerations"]
    assert pod["metadata"]["annotations"]["example.com/team"] == "ml"
    assert one(manifests, "ServiceAccount", GATEWAY)["metadata"]["annotations"] == {
        "example.com/role": "gateway"
    }


LINT_VALUES: dict[str, dict[str, Any]] = {
    "gateway defaults": {"gateway": {"enabled": True}},
    "gateway everything": {
        "gateway": {
            "enabled": True,
            "namespace": "studio",
            "native": True,
            "profiles": {"homepilot": {"enabled": False}, "controlpilot": {"port": 17878, "servicePort": 80}},
            "service": {"type": "NodePort", "annotations": {"example.com/a": "b"}},
            "ingress": {
                "enabled": True,
                "hosts": ["kubepilot.example.com"],
                "profileHosts": {"comfyui-docker": "comfy.example.com"},
                "tls": [{"secretName": "t", "hosts": ["kubepilot.example.com"]}],
            },
            "auth": {"enabled": True, "tokens": ["abc"]},
            "serviceMonitor": {"enabled": True},
            "serviceAccount": {"create": False, "name": "gw"},
            "rbac": {"create": False},
            "settings": {"watch": {"timeoutSeconds": 60}},
            "listeners": {"accessLog": False},
        }
    },
    "combined port only": {"gateway": {"enabled": True, "native": False}},
}


@pytest.mark.parametrize("values", LINT_VALUES.values(), ids=LINT_VALUES.keys())
def test_the_chart_lints_clean_with_the_gateway(values: dict[str, Any]) -> None:
    report = lint(CHART, values, strict=True, namespace="ai", kube_version="v1.31.0")
    assert [m["error"] for m in report["messages"] if m["severity"] >= 2] + list(report["errors"]) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"gateway": {"profiles": {"automatic1111": {"enabled": True, "port": 7860}}}},
            "'automatic1111' not allowed",
        ),
        ({"gateway": {"ports": {"combined": 0}}}, "'/gateway/ports/combined'"),
        (
            {"gateway": {"profiles": {"controlpilot": {"port": 70000}}}},
            "'/gateway/profiles/controlpilot/port'",
        ),
        ({"gateway": {"ingress": {"profileHosts": {"nope": "x.example.com"}}}}, "'nope' not allowed"),
        ({"gateway": {"ingress": {"hosts": ["Not A Host"]}}}, "'/gateway/ingress/hosts/0'"),
        ({"gateway": {"service": {"type": "ExternalName"}}}, "'/gateway/service/type'"),
        ({"gateway": {"namespace": "Bad_NS"}}, "'/gateway/namespace'"),
        ({"gateway": {"auth": {"tokens": ["has space"]}}}, "'/gateway/auth/tokens/0'"),
    ],
)
def test_gateway_values_outside_the_schema_are_refused(values: dict[str, Any], message: str) -> None:
    errors = lint(CHART, values, strict=True)["errors"]
    assert any(message in error for error in errors), errors


@pytest.mark.parametrize("sync_timeout", [None, 10, 300.5])
def test_the_startup_probe_outlasts_the_first_cache_sync(tmp_path: Path, sync_timeout: float | None) -> None:
    listeners = {} if sync_timeout is None else {"syncTimeoutSeconds": sync_timeout}
    manifests = _render({"gateway": {"listeners": listeners}})
    _, settings = _load(manifests, tmp_path)
    probe = _container(manifests)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= settings.syncTimeoutSeconds + 60


def test_controlpilot_finds_the_schedule_configmap_the_operator_uses(tmp_path: Path) -> None:
    from kubepilot_gateway.profiles.controlpilot.routes_system import SystemSettings
    from kubepilot_operator.settings import Settings as OperatorSettings
    from tests.chart.chart_tools import settings_document

    def names(values: dict[str, Any]) -> tuple[str, str]:
        manifests = _render(values)
        settings, _ = _load(manifests, tmp_path)
        system = SystemSettings.model_validate(settings.profileSettings["controlpilot"]["system"])
        return system.scheduleConfigMap, OperatorSettings(**settings_document(manifests)).scheduleConfigMap

    default, operator_default = names({})
    assert default == operator_default
    assert names({"operator": {"settings": {"scheduleConfigMap": "nightly"}}}) == ("nightly", "nightly")
