"""The service catalog's copilot and tensorboard entries, through the ServiceInstance builder."""

from __future__ import annotations

import re
from typing import Any

from kubepilot_api.serviceinstance import ServiceInstance
from kubepilot_operator.builders import serviceinstance as build
from kubepilot_operator.settings import default_catalog
from tests.operator.builder_settings import settings_with

Obj = dict[str, Any]


def deployment_of(service_type: str, spec: Obj | None = None) -> Obj:
    cr = ServiceInstance(spec={"serviceType": service_type, **(spec or {})}).to_dict()
    cr["metadata"] = {"name": service_type, "namespace": "studio", "uid": "0000-1111"}
    return build.deployment(settings_with(), cr, replicas=1, restart_nonce="")


def main_container(deployment: Obj) -> Obj:
    containers: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1  # no executor: no adapter sidecar
    return containers[0]


def expanded_command(container: Obj) -> list[str]:
    """The container's command as Kubernetes runs it: $(VAR) replaced from its plain env values."""
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), arg) for arg in container["command"]]


def test_copilot_entry_runs_the_sidecar_on_7879() -> None:
    entry = default_catalog()["copilot"]
    assert entry.image == "kubepilot/copilot:0.1.0"
    assert entry.command == [
        "python",
        "-m",
        "kubepilot_workers.copilot",
        "--host",
        "$(POD_IP)",
        "--port",
        "7879",
    ]
    assert [(p.name, p.port) for p in entry.ports] == [("http", 7879)]
    assert entry.readinessPath == "/health"
    assert entry.executor == "none"


def test_copilot_pod_links_every_mounted_volume_into_its_workspace() -> None:
    main = main_container(deployment_of("copilot", {"envFromSecrets": ["copilot-token"]}))
    command = expanded_command(main)
    assert command[:7] == default_catalog()["copilot"].command
    volumes = [command[i + 1] for i, arg in enumerate(command) if arg == "--volume"]
    mounted = {m["mountPath"] for m in main["volumeMounts"] if m["name"] in {"models", "datasets", "outputs"}}
    assert sorted(volumes) == sorted(mounted) == ["/datasets", "/models", "/outputs"]
    assert main["readinessProbe"]["httpGet"] == {"path": "/health", "port": 7879}
    assert main["ports"] == [{"name": "http", "containerPort": 7879}]
    assert main["envFrom"] == [{"secretRef": {"name": "copilot-token"}}]
    assert "KUBEPILOT_CONFIG" not in {e["name"] for e in main["env"]}


def test_tensorboard_entry_serves_the_outputs_volume() -> None:
    settings = settings_with()
    main = main_container(deployment_of("tensorboard"))
    assert main["image"] == "kubepilot/diffusion-pipe:0.1.0"
    assert main["command"][0] == "tensorboard"
    assert f"--logdir={settings.storage.outputs.mountPath}" in expanded_command(main)
    assert {"name": "outputs", "mountPath": settings.storage.outputs.mountPath} in main["volumeMounts"]
    assert main["readinessProbe"]["httpGet"] == {"path": "/", "port": 6006}
    cr = ServiceInstance(spec={"serviceType": "tensorboard"}).to_dict()
    cr["metadata"] = {"name": "tb", "namespace": "studio", "uid": "0000-2222"}
    assert [p["port"] for p in build.service(settings, cr)["spec"]["ports"]] == [6006]


def test_comfyui_writes_its_images_to_the_outputs_volume() -> None:
    settings = settings_with()
    cr = ServiceInstance(spec={"serviceType": "comfyui"}).to_dict()
    cr["metadata"] = {"name": "comfy", "namespace": "studio", "uid": "0000-3333"}
    main = build.deployment(settings, cr, replicas=1, restart_nonce="")["spec"]["template"]["spec"][
        "containers"
    ][0]
    command = expanded_command(main)
    output = command[command.index("--output-directory") + 1]
    assert output == f"{settings.storage.outputs.mountPath}/comfy"


def test_homepilot_entry_runs_the_backend_on_the_pod_ip_with_its_data_on_outputs() -> None:
    entry = default_catalog()["homepilot"]
    assert entry.image == "kubepilot/homepilot:0.1.0"
    assert [(p.name, p.port) for p in entry.ports] == [("http", 8000)]
    assert entry.readinessPath == "/health"
    assert entry.executor == "none"

    settings = settings_with()
    outputs = settings.storage.outputs.mountPath
    main = main_container(deployment_of("homepilot"))
    assert main["image"] == "kubepilot/homepilot:0.1.0"
    # Every $(VAR) names a variable of the container (else Kubernetes leaves it as written).
    defined = {e["name"] for e in main["env"]}
    assert set(re.findall(r"\$\((\w+)\)", " ".join(main["command"]))) <= defined
    command = expanded_command(main)
    # `env` sets HomePilot's folders (it reads them from the environment only), then starts uvicorn.
    assert command[0] == "env"
    assignments = dict(arg.split("=", 1) for arg in command[1:] if "=" in arg and not arg.startswith("-"))
    assert assignments == {"DATA_DIR": f"{outputs}/homepilot", "UPLOAD_DIR": f"{outputs}/homepilot/uploads"}
    program = command[1 + len(assignments) :]
    assert program[:4] == ["python", "-m", "uvicorn", "app.main:app"]
    assert program[program.index("--host") + 1] == "$(POD_IP)"  # from the downward API, not a value
    assert program[program.index("--port") + 1] == "8000"
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in main["env"]
    assert {"name": "outputs", "mountPath": outputs} in main["volumeMounts"]
    assert main["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert main["ports"] == [{"name": "http", "containerPort": 8000}]
    assert "KUBEPILOT_CONFIG" not in defined  # no executor: no workload config

    cr = ServiceInstance(spec={"serviceType": "homepilot"}).to_dict()
    cr["metadata"] = {"name": "homepilot", "namespace": "studio", "uid": "0000-4444"}
    assert [(p["name"], p["port"]) for p in build.service(settings, cr)["spec"]["ports"]] == [("http", 8000)]
