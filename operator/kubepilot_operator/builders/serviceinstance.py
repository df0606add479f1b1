"""ServiceInstance → a Deployment (replicas 0 or 1) and a Service, from the service catalog."""

from __future__ import annotations

import json
import posixpath

from kubepilot_api.serviceinstance import ServiceInstance
from kubepilot_api.workers.config import AdapterConfig, GeneratorConfig, GeneratorMode, Workload
from kubepilot_operator.builders.common import (
    Obj,
    child_meta,
    inputs_dir,
    meta,
    pod_template,
    service_manifest,
)
from kubepilot_operator.builders.upscalers import upscalers
from kubepilot_operator.naming import RESTART_ANNOTATION, selector, short_hash
from kubepilot_operator.settings import ServiceCatalogEntry, Settings

PLURAL = "serviceinstances"
COMPONENT = "service"
TEMPLATE_HASH = "kubepilot.io/template-hash"


class UnknownServiceType(ValueError):
    """The service catalog has no entry for this serviceType."""


def catalog_entry(settings: Settings, si: ServiceInstance) -> ServiceCatalogEntry:
    entry = settings.services.get(si.spec.serviceType.value)
    if entry is None:
        raise UnknownServiceType(
            f"serviceType {si.spec.serviceType.value!r} has no entry in the operator's service catalog"
        )
    return entry


def ports(si: ServiceInstance, entry: ServiceCatalogEntry) -> list[tuple[str, int]]:
    if si.spec.ports:
        return [(p.name, p.port) for p in si.spec.ports]
    return [(p.name, p.port) for p in entry.ports]


def service_ports(si: ServiceInstance, entry: ServiceCatalogEntry) -> list[tuple[str, int]]:
    """Every port the Service exposes: the program's and the executor's (when separate)."""
    result = ports(si, entry)
    if entry.executor != "none" and entry.executorPort and all(p != entry.executorPort for _, p in result):
        result.append(("executor", entry.executorPort))
    return result


def outputs_dir(cr: Obj) -> str:
    m = meta(cr)
    return posixpath.join("services", m["namespace"], m["name"])


def worker_config(settings: Settings, cr: Obj, model: str) -> Obj | None:
    """The config file of our own programs in the pod (generator server, adapter); None for others."""
    si = ServiceInstance.model_validate(cr)
    entry = catalog_entry(settings, si)
    m = meta(cr)
    workload = Workload(
        kind="ServiceInstance", namespace=m["namespace"], name=m["name"], uid=m.get("uid", "")
    )
    outputs = posixpath.join(settings.storage.outputs.mountPath, outputs_dir(cr))
    if entry.executor == "native":
        return GeneratorConfig(
            workload=workload,
            mode=GeneratorMode.SERVER,
            modelPath=posixpath.join(settings.storage.models.mountPath, model) if model else "",
            modelsRoot=settings.storage.models.mountPath,
            outputsDir=outputs,
            port=entry.executorPort,
            upscalers=upscalers(settings),
            inputsDir=inputs_dir(settings),
        ).to_dict()
    if entry.executor == "adapter" and entry.adapterBackend:
        backend_port = ports(si, entry)[0][1]
        return AdapterConfig(
            workload=workload,
            backend=entry.adapterBackend,
            backendUrl=f"http://127.0.0.1:{backend_port}",
            port=entry.executorPort,
            outputsDir=outputs,
        ).to_dict()
    return None


def with_tag(image: str, tag: str) -> str:
    """``image`` with its tag (or digest) replaced; a registry's ``host:port`` is not a tag."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name = name[:colon]
    return f"{name}:{tag}"


def _probe(entry: ServiceCatalogEntry, port: int) -> Obj:
    action: Obj = (
        {"httpGet": {"path": entry.readinessPath, "port": port}}
        if entry.readinessPath
        else {"tcpSocket": {"port": port}}
    )
    return {**action, "periodSeconds": 2, "failureThreshold": 3}


def deployment(settings: Settings, cr: Obj, *, replicas: int, restart_nonce: str) -> Obj:
    si = ServiceInstance.model_validate(cr)
    entry = catalog_entry(settings, si)
    image = si.spec.image or entry.image
    if si.spec.version and not si.spec.image:
        image = with_tag(image, si.spec.version)
    program_ports = ports(si, entry)
    env = [{"name": e.name, "value": e.value} for e in si.spec.env]
    sidecars: list[Obj] = []
    if entry.executor == "adapter":
        sidecars.append(
            {
                # The tool's image carries our adapter (its io.kubepilot.adapter-command label).
                "name": "adapter",
                "image": image,
                "imagePullPolicy": settings.images.pullPolicy,
                "command": ["python", "-m", "kubepilot_workers.adapters", "--host", "$(POD_IP)"],
                "env": [],  # filled below from the main container's contract variables
                "ports": [{"name": "executor", "containerPort": entry.executorPort}],
            }
        )
    command = [*entry.command, *entry.args, *si.spec.args]
    if entry.executor == "native":
        command = [*command, "--host", "$(POD_IP)"]
    template = pod_template(
        settings,
        cr,
        plural=PLURAL,
        component=COMPONENT,
        image=image,
        command=command,
        resources=si.spec.resources,
        restart_policy="Always",
        with_config=entry.executor != "none",
        extra_env=env,
        ports=[{"name": name, "containerPort": port} for name, port in program_ports],
        extra_containers=sidecars,
        annotations={RESTART_ANNOTATION: restart_nonce} if restart_nonce else None,
    )
    main = template["spec"]["containers"][0]
    main["readinessProbe"] = _probe(entry, program_ports[0][1]) if program_ports else None
    if main["readinessProbe"] is None:
        del main["readinessProbe"]
    if si.spec.envFromSecrets:
        main["envFrom"] = [{"secretRef": {"name": name}} for name in si.spec.envFromSecrets]
    for sidecar in template["spec"]["containers"][1:]:
        sidecar["env"] = [e for e in main["env"] if e["name"] not in {x.name for x in si.spec.env}]
        sidecar["volumeMounts"] = main["volumeMounts"]
    m = meta(cr)
    metadata = child_meta(cr, "svc", COMPONENT)
    # The server adds defaults to a stored template, so drift is judged by a hash of ours.
    metadata["annotations"] = {TEMPLATE_HASH: short_hash(json.dumps(template, sort_keys=True), 16)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            # One GPU, one pod: the old pod goes before the new one starts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(cr["kind"], m["name"], COMPONENT)},
            "template": template,
        },
    }


def deployment_drift(existing: Obj, desired: Obj) -> Obj | None:
    spec = existing.get("spec", {})
    patch: Obj = {}
    if spec.get("replicas") != desired["spec"]["replicas"]:
        patch["replicas"] = desired["spec"]["replicas"]
    wanted = desired["metadata"]["annotations"][TEMPLATE_HASH]
    if (existing.get("metadata", {}).get("annotations") or {}).get(TEMPLATE_HASH) != wanted:
        patch["template"] = desired["spec"]["template"]
        return {"metadata": {"annotations": {TEMPLATE_HASH: wanted}}, "spec": patch}
    return {"spec": patch} if patch else None


def service(settings: Settings, cr: Obj) -> Obj:
    si = ServiceInstance.model_validate(cr)
    entry = catalog_entry(settings, si)
    m = meta(cr)
    ports = [{"name": name, "port": port, "targetPort": port} for name, port in service_ports(si, entry)]
    return service_manifest(cr, "svc", COMPONENT, selector(cr["kind"], m["name"], COMPONENT), ports)
