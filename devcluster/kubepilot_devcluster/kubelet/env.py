"""Container environment: env, envFrom, valueFrom (secret/configMap keys, downward API), $(VAR) expansion."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .quantity import parse_quantity
from .sources import ContainerConfigError, PodSources

JsonObject = dict[str, Any]

_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


@dataclass(frozen=True)
class PodFacts:
    """What the downward API can tell about a pod once it is placed on the node."""

    pod: JsonObject
    pod_ip: str
    host_ip: str
    node_name: str


def expand(text: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, ``$$`` escapes a ``$``, unknown stay."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(variables.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def format_map(values: dict[str, Any]) -> str:
    """Labels/annotations as the downward API writes them: ``key="value"`` lines, sorted."""
    lines = []
    for key in sorted(values):
        escaped = str(values[key]).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines)


def field_value(facts: PodFacts, field_path: str) -> str:
    """The value of a downward API ``fieldRef.fieldPath``."""
    meta = facts.pod.get("metadata") or {}
    spec = facts.pod.get("spec") or {}
    simple: dict[str, str] = {
        "metadata.name": str(meta.get("name", "")),
        "metadata.namespace": str(meta.get("namespace", "")),
        "metadata.uid": str(meta.get("uid", "")),
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": str(spec.get("serviceAccountName", "default")),
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
        "metadata.labels": format_map(meta.get("labels") or {}),
        "metadata.annotations": format_map(meta.get("annotations") or {}),
    }
    if field_path in simple:
        return simple[field_path]
    match = _FIELD_SUBSCRIPT.match(field_path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldRef.fieldPath {field_path!r}")


def resource_field_value(container: JsonObject, ref: JsonObject) -> str:
    """The value of a ``resourceFieldRef`` (limits/requests of cpu, memory, ephemeral-storage)."""
    resource = str(ref.get("resource", ""))
    section, _, name = resource.partition(".")
    if section not in ("limits", "requests") or not name:
        raise ContainerConfigError(f"unsupported resourceFieldRef.resource {resource!r}")
    resources = container.get("resources") or {}
    raw = (resources.get(section) or {}).get(name)
    if raw is None and section == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        return "0"
    try:
        divisor = parse_quantity(ref.get("divisor", "1")) or parse_quantity("1")
        return str(math.ceil(parse_quantity(raw) / divisor))
    except ValueError as err:
        raise ContainerConfigError(str(err)) from err


def _decode(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def container_env(container: JsonObject, facts: PodFacts, sources: PodSources) -> dict[str, str]:
    """The variables Kubernetes would put in the container: envFrom first, then env (which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        if "secretRef" in source:
            ref = source["secretRef"]
            data = sources.lookup("Secret", str(ref.get("name", "")), bool(ref.get("optional", False)))
        elif "configMapRef" in source:
            ref = source["configMapRef"]
            data = sources.lookup("ConfigMap", str(ref.get("name", "")), bool(ref.get("optional", False)))
        else:
            continue
        for key, value in (data or {}).items():
            env[prefix + key] = _decode(value)
    for var in container.get("env") or []:
        name = str(var.get("name", ""))
        if not name:
            continue
        value_from = var.get("valueFrom")
        if value_from is None:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        resolved = _value_from(value_from, container, facts, sources)
        if resolved is not None:
            env[name] = resolved
    return env


def _value_from(
    value_from: JsonObject, container: JsonObject, facts: PodFacts, sources: PodSources
) -> str | None:
    for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
        if key in value_from:
            ref = value_from[key]
            raw = sources.key(
                kind, str(ref.get("name", "")), str(ref.get("key", "")), bool(ref.get("optional", False))
            )
            return None if raw is None else _decode(raw)
    if "fieldRef" in value_from:
        return field_value(facts, str(value_from["fieldRef"].get("fieldPath", "")))
    if "resourceFieldRef" in value_from:
        return resource_field_value(container, value_from["resourceFieldRef"])
    raise ContainerConfigError(f"unsupported valueFrom {sorted(value_from)}")
