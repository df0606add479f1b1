"""Validate objects against the generated CRD schemas the way an API server does.

Structural validation uses a real OpenAPI v3.0 validator (openapi-schema-validator); the
server's strict field validation (unknown fields rejected) is the same schema with
``additionalProperties: false`` on every object that does not preserve unknown fields; CEL rules
run through cel-python, the library our devcluster uses too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import yaml
from openapi_schema_validator import OAS30Validator

ROOT = Path(__file__).resolve().parents[2]


def load_crds() -> dict[str, dict[str, Any]]:
    """The committed CRDs in ``crds/``, by kind."""
    crds = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields forbidden wherever the server would reject them."""
    schema = copy.deepcopy(schema)

    def walk(node: dict[str, Any]) -> None:
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
            for child in node["properties"].values():
                walk(child)
        if isinstance(node.get("items"), dict):
            walk(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])

    walk(schema)
    # metadata is validated by the server's ObjectMeta, not by the CRD schema.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def structural_errors(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """Messages for every schema violation (empty when valid)."""
    validator = OAS30Validator(strict(schema_of(crd)))
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(obj)
    ]


def cel_rules(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, rule, schema node) for every x-kubernetes-validations rule in a schema."""
    for rule in node.get("x-kubernetes-validations", []):
        yield path, rule, node
    for name, child in node.get("properties", {}).items():
        yield from cel_rules(child, f"{path}.{name}" if path else name)


def _value_at(obj: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def cel_errors(crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Messages of the CEL rules the object breaks; transition rules only when ``old`` is given."""
    env = celpy.Environment()
    failures = []
    for path, rule, _node in cel_rules(schema_of(crd)):
        value = _value_at(obj, path)
        if value is None:
            continue
        transition = "oldSelf" in rule["rule"]
        old_value = _value_at(old, path) if old is not None else None
        if transition and old_value is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old_value)
        result = env.program(env.compile(rule["rule"])).evaluate(activation)
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            failures.append(f"{path}: {rule['message']}")
    return failures
