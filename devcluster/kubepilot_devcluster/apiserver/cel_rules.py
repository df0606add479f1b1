"""``x-kubernetes-validations`` CEL rules of custom resources, evaluated with cel-python.

Each rule is evaluated with ``self`` bound to the value at the schema node that declares it.
Transition rules (those that mention ``oldSelf``) run only on updates where an old value exists at
that node, as the real server does.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

import celpy
from celpy.adapter import json_to_cel

JsonObject = dict[str, Any]

log = logging.getLogger(__name__)

_OLD_SELF = re.compile(r"\boldSelf\b")


@functools.cache
def _environment() -> Any:
    # Built on first use: the CEL grammar takes a noticeable time to load, and most servers never need it.
    return celpy.Environment()


@functools.cache
def _program(rule: str) -> Any:
    environment = _environment()
    return environment.program(environment.compile(rule))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def evaluate(schema: JsonObject, value: Any, old: Any, path: str, causes: list[JsonObject]) -> None:
    """Append an Invalid cause for every failing rule under ``schema`` (``old`` is None on create).

    Validation ratcheting, as Kubernetes does it (KEP-4008, on by default since 1.30): a value an
    update leaves unchanged is not held to the rules again, so a rule added to a CRD later does not
    lock existing objects, and a status write does not re-run every rule of the unchanged spec.
    """
    if value is None or (old is not None and value == old):
        return
    for rule_spec in schema.get("x-kubernetes-validations") or []:
        rule = rule_spec.get("rule", "")
        transition = bool(_OLD_SELF.search(rule))
        if transition and old is None:
            continue
        field_path = rule_spec.get("fieldPath", "")
        where = f"{path}{field_path}" if field_path.startswith((".", "[")) else path
        activation = {"self": json_to_cel(value)}
        if transition:
            activation["oldSelf"] = json_to_cel(old)
        try:
            result = _program(rule).evaluate(activation)
        except Exception as error:
            message = rule_spec.get("message") or f"failed rule: {rule}"
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {message} ({error})",
                    "field": where,
                }
            )
            continue
        # celpy answers its own BoolType (an int subclass); anything not truthy-boolean fails.
        if not (isinstance(result, int) and bool(result)):
            message = rule_spec.get("message") or f"failed rule: {rule}"
            reason = rule_spec.get("reason", "FieldValueInvalid")
            causes.append(
                {"reason": reason, "message": f'Invalid value: "object": {message}', "field": where}
            )
    if isinstance(value, dict):
        properties: JsonObject = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key) or (additional if isinstance(additional, dict) else None)
            if child:
                old_item = old.get(key) if isinstance(old, dict) else None
                evaluate(child, item, old_item, _join(path, key), causes)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        for index, item in enumerate(value):
            old_item = _correlate(old, item, index, keys, schema.get("x-kubernetes-list-type"))
            evaluate(schema["items"], item, old_item, f"{path}[{index}]", causes)


def _correlate(old: Any, item: Any, index: int, keys: list[str] | None, list_type: str | None) -> Any:
    """Old list items correlate with new ones only in map lists, by their keys."""
    if list_type != "map" or not keys or not isinstance(old, list) or not isinstance(item, dict):
        return None
    for candidate in old:
        if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
            return candidate
    return None
