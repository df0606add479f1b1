"""Upstream schemas of the built-in kinds, read from the ``kubernetes_validate`` package.

That package ships the Kubernetes API's JSON schemas per release (definitions named like
``io.k8s.api.core.v1.Pod`` with ``x-kubernetes-group-version-kind`` and the strategic-merge-patch
extensions), so neither the OpenAPI documents nor the patch merge keys are written by hand here.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

JsonObject = dict[str, Any]

SCHEMA_RELEASE = "v1.37.0-local"


@functools.cache
def definitions() -> dict[str, JsonObject]:
    """Every upstream definition by its dotted name."""
    root = (
        resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / SCHEMA_RELEASE
        / "_definitions.json"
    )
    document = json.loads(root.read_text(encoding="utf-8"))
    defs: dict[str, JsonObject] = document["$defs"]
    return defs


@functools.cache
def _definition_names_by_gvk() -> dict[tuple[str, str, str], str]:
    names: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            names.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return names


def definition_name(group: str, version: str, kind: str) -> str | None:
    return _definition_names_by_gvk().get((group, version, kind))


def ref_name(ref: str) -> str:
    """``#/$defs/io.k8s.api.core.v1.Pod`` -> ``io.k8s.api.core.v1.Pod``."""
    return ref.rsplit("/", 1)[-1]


def resolve(schema: JsonObject | None) -> JsonObject | None:
    """Follow a ``$ref`` (directly or under ``allOf``) to its definition."""
    seen = 0
    while schema is not None and seen < 16:
        seen += 1
        if "$ref" in schema:
            schema = definitions().get(ref_name(schema["$ref"]))
        elif schema.get("allOf") and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema
    return schema


def kind_schema(group: str, version: str, kind: str) -> JsonObject | None:
    name = definition_name(group, version, kind)
    return definitions().get(name) if name else None


def closure(names: list[str]) -> dict[str, JsonObject]:
    """The named definitions and every definition they reference, transitively."""
    found: dict[str, JsonObject] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in found or name not in definitions():
            continue
        schema = definitions()[name]
        found[name] = schema
        pending.extend(_refs(schema))
    return found


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        refs = [ref_name(node["$ref"])] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            refs.extend(_refs(value))
        return refs
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []
