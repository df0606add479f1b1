"""What the real server does to built-in objects on write: defaults, light validation, strict fields.

Only the defaults clients and our controllers read are applied (pod phase, job selectors, service
cluster IPs, deployment replicas...), not the full upstream defaulting.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from typing import Any

from kubepilot_devcluster.apiserver import builtin_schemas
from kubepilot_devcluster.apiserver.errors import JsonObject, bad_request, cause, invalid
from kubepilot_devcluster.apiserver.resources import ResourceType

_SERVICE_NETWORK = ipaddress.ip_network("127.2.0.0/16")
"""Loopback, so the control plane's userspace proxy can listen on every cluster IP it hands out."""


def _free_cluster_ip(taken: set[str]) -> str:
    # A random start keeps two devclusters on one machine (tests beside a dev stack) from colliding.
    size = _SERVICE_NETWORK.num_addresses
    start = random.randrange(2, size - 1)
    for step in range(size):
        offset = 2 + (start - 2 + step) % (size - 3)
        address = str(_SERVICE_NETWORK.network_address + offset)
        if offset % 256 not in (0, 255) and address not in taken:
            return address
    raise invalid("", "Service", "", [cause("spec.clusterIP", "no free cluster IP left")])


def _pod_spec_defaults(spec: JsonObject) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(container, dict):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            image = str(container.get("image", ""))
            container.setdefault(
                "imagePullPolicy",
                "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent",
            )
            container.setdefault("resources", {})


def _template_defaults(obj: JsonObject) -> None:
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _pod_spec_defaults(template["spec"])


def _job_defaults(obj: JsonObject) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    template = spec.setdefault("template", {})
    template.setdefault("spec", {}).setdefault("restartPolicy", "Never")
    if "selector" not in spec and not spec.get("manualSelector"):
        # The server generates the selector from the job's uid, as the real one does.
        uid = obj["metadata"]["uid"]
        name = obj["metadata"]["name"]
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
            }
        )
    _template_defaults(obj)


def _service_defaults(obj: JsonObject, taken: set[str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("clusterIP") is None:
        address = _free_cluster_ip(taken)
        spec["clusterIP"] = address
        spec["clusterIPs"] = [address]
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))


def apply_create_defaults(resource: ResourceType, obj: JsonObject, taken_cluster_ips: set[str]) -> None:
    """Fill the defaults and initial status the real server sets when ``obj`` is created."""
    kind = resource.kind
    if kind == "Pod":
        _pod_spec_defaults(obj.setdefault("spec", {}))
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind == "Job":
        _job_defaults(obj)
        obj["status"] = {}
    elif kind in ("Deployment", "ReplicaSet"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            )
        _template_defaults(obj)
        obj["status"] = {}
    elif kind == "DaemonSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        )
        _template_defaults(obj)
        obj["status"] = {
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }
    elif kind == "Service":
        _service_defaults(obj, taken_cluster_ips)
        obj["status"] = {"loadBalancer": {}}
    elif kind == "PersistentVolumeClaim":
        obj["status"] = {"phase": "Pending"}
    elif kind == "PersistentVolume":
        obj["status"] = {"phase": "Available"}
    elif kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")


def apply_write_conversions(resource: ResourceType, obj: JsonObject) -> None:
    """Conversions on every write: Secret ``stringData`` folds into base64 ``data``."""
    if resource.kind == "Secret" and resource.group == "":
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {}) or {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data


def validate_builtin(resource: ResourceType, obj: JsonObject) -> None:
    """The checks clients commonly trip over; the real server checks far more."""
    causes: list[JsonObject] = []
    spec: JsonObject = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    if resource.kind == "Pod":
        containers = spec.get("containers")
        if not containers:
            causes.append(cause("spec.containers", "Required value", "FieldValueRequired"))
        for index, container in enumerate(containers or []):
            if not isinstance(container, dict) or not container.get("name"):
                causes.append(cause(f"spec.containers[{index}].name", "Required value", "FieldValueRequired"))
            elif not container.get("image"):
                causes.append(
                    cause(f"spec.containers[{index}].image", "Required value", "FieldValueRequired")
                )
    elif resource.kind in ("Deployment", "ReplicaSet", "DaemonSet", "Job"):
        if not isinstance(spec.get("template"), dict):
            causes.append(cause("spec.template", "Required value", "FieldValueRequired"))
        if resource.kind != "Job" and not spec.get("selector"):
            causes.append(cause("spec.selector", "Required value", "FieldValueRequired"))
    if causes:
        raise invalid(resource.group, resource.kind, obj["metadata"].get("name", ""), causes)


_JSON_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__


def prune_unknown_fields(resource: ResourceType, obj: JsonObject) -> list[str]:
    """Drop fields the upstream schema of the kind does not declare (decoding into Go types does the
    same on the real server); returns their paths for ``fieldValidation``. A value of the wrong JSON
    type fails the request with 400, as it fails decoding on the real server."""
    schema = builtin_schemas.kind_schema(resource.group, resource.version, resource.kind)
    if schema is None:
        return []
    found: list[str] = []
    mistyped: list[str] = []
    _walk(schema, obj, "", found, mistyped, depth=0)
    if mistyped:
        raise bad_request(
            f'{resource.kind} in version "{resource.version}" cannot be handled as a '
            f"{resource.kind}: {mistyped[0]}"
        )
    return found


def _walk(
    schema: JsonObject | None, value: Any, path: str, found: list[str], mistyped: list[str], depth: int
) -> None:
    resolved = builtin_schemas.resolve(schema)
    if resolved is None or depth > 40 or value is None:
        return
    declared = resolved.get("type")
    types = [t for t in (declared if isinstance(declared, list) else [declared]) if t and t != "null"]
    if len(types) == 1 and types[0] in _JSON_TYPE_CHECKS and not _JSON_TYPE_CHECKS[types[0]](value):
        mistyped.append(
            f"json: cannot unmarshal {_json_type(value)} into Go struct field {path or '.'} of type "
            f"{types[0]}"
        )
        return
    if isinstance(value, dict):
        properties = resolved.get("properties")
        additional = resolved.get("additionalProperties")
        if not isinstance(properties, dict):
            if isinstance(additional, dict):
                for key, item in value.items():
                    _walk(additional, item, f"{path}.{key}" if path else key, found, mistyped, depth + 1)
            return
        for key, item in list(value.items()):
            child = f"{path}.{key}" if path else key
            if key in properties:
                _walk(properties[key], item, child, found, mistyped, depth + 1)
            else:
                found.append(child)
                del value[key]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(resolved.get("items"), item, f"{path}[{index}]", found, mistyped, depth + 1)
