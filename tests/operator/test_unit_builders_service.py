"""Unit tests of the ServiceInstance builder: Deployment, Service, worker config, drift."""

from __future__ import annotations

import base64
import copy
import re
from typing import Any

import pytest

from kubepilot_api.serviceinstance import ServiceInstance
from kubepilot_api.workers.config import AdapterConfig, GeneratorConfig, GeneratorMode
from kubepilot_operator.builders import common
from kubepilot_operator.builders import serviceinstance as build
from kubepilot_operator.naming import RESTART_ANNOTATION, selector
from kubepilot_operator.settings import ServiceCatalogEntry, Settings, default_catalog
from tests.operator.builder_settings import settings_with

Obj = dict[str, Any]
UID = "3c3c3c3c-0000-1111-2222-333333333333"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def make_settings(**overrides: Any) -> Settings:
    return settings_with(**overrides)


def make_service(service_type: str = "comfyui", spec: Obj | None = None, name: str = "comfy") -> Obj:
    cr = ServiceInstance(spec={"serviceType": service_type, **(spec or {})}).to_dict()
    cr["metadata"] = {"name": name, "namespace": "studio", "uid": UID}
    return cr


def deploy(cr: Obj, replicas: int = 1, nonce: str = "", settings: Settings | None = None) -> Obj:
    return build.deployment(settings or make_settings(), cr, replicas=replicas, restart_nonce=nonce)


def containers(deployment: Obj) -> dict[str, Obj]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("replicas", [0, 1])
def test_deployment_replicas_follow_the_argument(replicas: int) -> None:
    assert deploy(make_service(), replicas=replicas)["spec"]["replicas"] == replicas


def test_deployment_recreates_and_selects_its_pods() -> None:
    deployment = deploy(make_service())
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    match = deployment["spec"]["selector"]["matchLabels"]
    assert match == selector("ServiceInstance", "comfy", "service")
    assert match.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["metadata"]["ownerReferences"][0]["controller"] is True
    pod = deployment["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["automountServiceAccountToken"] is False


def test_restart_nonce_becomes_the_restarted_at_annotation() -> None:
    deployment = deploy(make_service(), nonce="2024-06-01T10:00:00Z")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[RESTART_ANNOTATION] == "2024-06-01T10:00:00Z"
    plain = deploy(make_service())
    assert RESTART_ANNOTATION not in (plain["spec"]["template"]["metadata"].get("annotations") or {})


def hash_of(deployment: Obj) -> str:
    return str(deployment["metadata"]["annotations"][build.TEMPLATE_HASH])


def test_template_hash_changes_with_the_template_only() -> None:
    base = deploy(make_service(), replicas=1)
    same = deploy(make_service(), replicas=0)
    restarted = deploy(make_service(), replicas=1, nonce="n2")
    changed_env = deploy(make_service(spec={"env": [{"name": "A", "value": "1"}]}))
    assert hash_of(base) == hash_of(same)
    assert hash_of(base) != hash_of(restarted)
    assert hash_of(base) != hash_of(changed_env)


def test_deployment_drift_is_none_when_nothing_changed() -> None:
    desired = deploy(make_service())
    existing = copy.deepcopy(desired)
    # The server fills in defaults; the hash annotation is what counts.
    existing["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    assert build.deployment_drift(existing, desired) is None


def test_deployment_drift_scales_without_touching_the_template() -> None:
    existing = deploy(make_service(), replicas=1)
    desired = deploy(make_service(), replicas=0)
    assert build.deployment_drift(existing, desired) == {"spec": {"replicas": 0}}


def test_deployment_drift_replaces_the_template_when_the_hash_changes() -> None:
    existing = deploy(make_service())
    desired = deploy(make_service(), nonce="again")
    patch = build.deployment_drift(existing, desired)
    assert patch is not None
    assert patch["spec"]["template"] == desired["spec"]["template"]
    assert "replicas" not in patch["spec"]
    assert (
        patch["metadata"]["annotations"][build.TEMPLATE_HASH]
        == (desired["metadata"]["annotations"][build.TEMPLATE_HASH])
    )


def test_comfyui_gets_an_adapter_sidecar_under_the_contract() -> None:
    deployment = deploy(make_service(spec={"env": [{"name": "USER_ONLY", "value": "x"}]}))
    by_name = containers(deployment)
    assert set(by_name) == {"service", "adapter"}
    adapter = by_name["adapter"]
    assert adapter["image"] == by_name["service"]["image"]  # the tool's image carries the adapter
    assert adapter["command"][-2:] == ["--host", "$(POD_IP)"]
    assert adapter["ports"] == [{"name": "executor", "containerPort": 7861}]
    env = env_of(adapter)
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["KUBEPILOT_CONFIG"]["value"] == "/var/run/kubepilot/config.json"
    assert env["KUBEPILOT_REPORT_URL"]["value"].endswith("/v1/reports/studio/serviceinstances/comfy")
    assert "USER_ONLY" not in env
    assert "USER_ONLY" in env_of(by_name["service"])
    assert adapter["volumeMounts"] == by_name["service"]["volumeMounts"]


def test_comfyui_worker_config_is_an_adapter_config() -> None:
    settings = make_settings()
    cr = make_service()
    config_dict = build.worker_config(settings, cr, "")
    assert config_dict is not None
    secret = common.workload_secret(cr, "tok", config_dict)
    config = AdapterConfig.model_validate_json(base64.b64decode(secret["data"]["config.json"]))
    assert config.backend == "comfyui"
    assert config.backendUrl == "http://127.0.0.1:8188"
    assert config.port == 7861
    assert config.outputsDir == "/outputs/services/studio/comfy"


def test_native_generator_binds_to_the_pod_ip() -> None:
    deployment = deploy(make_service("kubepilot-generator", name="gen"))
    by_name = containers(deployment)
    assert set(by_name) == {"service"}
    main = by_name["service"]
    assert main["command"][-2:] == ["--host", "$(POD_IP)"]
    assert "POD_IP" in env_of(main)  # $(POD_IP) only expands for a variable the container defines
    assert main["readinessProbe"]["httpGet"] == {"path": "/v1/health", "port": 7860}


def test_native_generator_worker_config_is_a_server_config() -> None:
    config_dict = build.worker_config(
        make_settings(), make_service("kubepilot-generator"), "checkpoints/sd.st"
    )
    assert config_dict is not None
    config = GeneratorConfig.model_validate(config_dict)
    assert config.mode is GeneratorMode.SERVER
    assert config.modelPath == "/models/checkpoints/sd.st"
    assert config.port == 7860
    assert config.workload.kind == "ServiceInstance"


def test_program_without_executor_gets_no_config() -> None:
    cr = make_service("jupyter", name="nb")
    assert build.worker_config(make_settings(), cr, "") is None
    main = containers(deploy(cr))["service"]
    assert "KUBEPILOT_CONFIG" not in env_of(main)
    assert "KUBEPILOT_TOKEN_FILE" in env_of(main)


def test_service_ports_include_the_executor_port() -> None:
    service = build.service(make_settings(), make_service())
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["port"] == 8188
    assert ports["executor"] == {"name": "executor", "port": 7861, "targetPort": 7861}
    assert service["spec"]["selector"] == selector("ServiceInstance", "comfy", "service")


def test_native_executor_port_is_not_listed_twice() -> None:
    service = build.service(make_settings(), make_service("kubepilot-generator"))
    assert [p["port"] for p in service["spec"]["ports"]] == [7860]


def test_spec_ports_override_the_catalog() -> None:
    cr = make_service("jupyter", spec={"ports": [{"name": "lab", "port": 9999}]})
    service = build.service(make_settings(), cr)
    assert service["spec"]["ports"] == [{"name": "lab", "port": 9999, "targetPort": 9999}]
    main = containers(deploy(cr))["service"]
    assert main["ports"] == [{"name": "lab", "containerPort": 9999}]


def test_probe_is_tcp_when_the_catalog_has_no_readiness_path() -> None:
    main = containers(deploy(make_service("sdcpp-server", name="sd")))["service"]
    assert main["readinessProbe"]["tcpSocket"] == {"port": 7862}


def test_version_replaces_the_catalog_tag() -> None:
    main = containers(deploy(make_service(spec={"version": "v0.3.10"})))["service"]
    assert main["image"] == "kubepilot/comfyui:v0.3.10"
    override = containers(deploy(make_service(spec={"image": "me/comfy:x", "version": "v9"})))["service"]
    assert override["image"] == "me/comfy:x"


def test_args_and_env_from_secrets_reach_the_main_container() -> None:
    cr = make_service(spec={"args": ["--lowvram"], "envFromSecrets": ["api-keys"]})
    main = containers(deploy(cr))["service"]
    assert main["command"][-1] == "--lowvram"
    assert main["envFrom"] == [{"secretRef": {"name": "api-keys"}}]


def test_service_type_missing_from_the_catalog_raises() -> None:
    with pytest.raises(build.UnknownServiceType):
        deploy(make_service(), settings=make_settings(services={"comfyui": None}))


def test_version_on_an_untagged_image_from_a_registry_with_a_port() -> None:
    catalog = default_catalog()
    entry = catalog["comfyui"].model_dump()
    entry["image"] = "registry.local:5000/kubepilot/comfyui"
    catalog["comfyui"] = ServiceCatalogEntry(**entry)
    main = containers(
        deploy(make_service(spec={"version": "v0.4"}), settings=make_settings(services=catalog))
    )
    assert main["service"]["image"] == "registry.local:5000/kubepilot/comfyui:v0.4"


@pytest.mark.parametrize("name", ["sdxl.v2", "3d-studio"])
def test_service_name_is_a_dns_1035_label(name: str) -> None:
    service = build.service(make_settings(), make_service(name=name))
    assert DNS_1035.match(service["metadata"]["name"])
