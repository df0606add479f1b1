"""Structural-schema processing of custom resources: pruning, defaulting and validation.

Follows the apiextensions rules: fields the schema does not declare are pruned (and reported, so
``fieldValidation=Strict`` can reject them) unless ``x-kubernetes-preserve-unknown-fields``;
``default`` values fill missing fields; then types, enums, bounds, lengths, patterns, item counts
and ``date-time`` formats are checked, each failure a cause like the real server's.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]

# Fields every object has whatever its schema says.
_ROOT_FIELDS = {"apiVersion", "kind", "metadata"}


@dataclass
class Outcome:
    """What processing found: pruned unknown field paths and validation causes."""

    unknown: list[str] = field(default_factory=list)
    causes: list[JsonObject] = field(default_factory=list)


def _cause(path: str, reason: str, message: str) -> JsonObject:
    return {"reason": reason, "message": message, "field": path}


def _render(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune_and_default(schema: JsonObject, value: Any, path: str, outcome: Outcome, root: bool = False) -> Any:
    """Return ``value`` with unknown fields removed and defaults applied (``value`` is not modified)."""
    if isinstance(value, dict):
        embedded = schema.get("x-kubernetes-embedded-resource") or root
        allowed_extra = _ROOT_FIELDS if embedded else set()
        properties: JsonObject = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        result: JsonObject = {}
        for key, item in value.items():
            if key in allowed_extra:
                # apiVersion, kind and metadata of (embedded) objects belong to the server, not the schema.
                result[key] = item
            elif key in properties:
                if item is None and not properties[key].get("nullable"):
                    continue  # nulls of non-nullable fields are dropped, then defaulted, as upstream does
                result[key] = prune_and_default(properties[key], item, _join(path, key), outcome)
            elif isinstance(additional, dict):
                result[key] = prune_and_default(additional, item, _join(path, key), outcome)
            elif preserve or additional is True:
                result[key] = item
            else:
                outcome.unknown.append(_join(path, key))
        for key, prop in properties.items():
            if key not in result and "default" in prop:
                result[key] = prune_and_default(
                    prop, json.loads(json.dumps(prop["default"])), _join(path, key), outcome
                )
        return result
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [prune_and_default(items, item, f"{path}[{i}]", outcome) for i, item in enumerate(value)]
        return list(value)
    return value


_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _valid_datetime(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in text or " " in text


def validate(schema: JsonObject, value: Any, path: str, outcome: Outcome) -> None:
    """Append a cause to ``outcome`` for every way ``value`` breaks ``schema``."""
    if value is None:
        if not schema.get("nullable"):
            outcome.causes.append(
                _cause(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "null": {path} in body must be of type '
                    f'{schema.get("type", "object")}: "null"',
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _TYPE_CHECKS["integer"](value)):
            outcome.causes.append(
                _cause(
                    path,
                    "FieldValueTypeInvalid",
                    f"Invalid value: {_render(value)}: {path} in body must be of type integer or string",
                )
            )
            return
    else:
        expected = schema.get("type")
        if expected and not _TYPE_CHECKS.get(expected, lambda v: True)(value):
            actual = (
                type(value)
                .__name__.replace("dict", "object")
                .replace("list", "array")
                .replace("str", "string")
                .replace("int", "integer")
                .replace("float", "number")
                .replace("bool", "boolean")
            )
            outcome.causes.append(
                _cause(
                    path,
                    "FieldValueTypeInvalid",
                    f'Invalid value: "{actual}": {path} in body must be of type {expected}: "{actual}"',
                )
            )
            return
    _validate_value(schema, value, path, outcome)


def _validate_value(schema: JsonObject, value: Any, path: str, outcome: Outcome) -> None:
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_render(v) for v in enum)
        outcome.causes.append(
            _cause(
                path,
                "FieldValueNotSupported",
                f"Unsupported value: {_render(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_bounds(schema, value, path, outcome)
    if isinstance(value, str):
        _check_string(schema, value, path, outcome)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            outcome.causes.append(
                _cause(
                    path,
                    "FieldValueInvalid",
                    f"Invalid value: {len(value)}: {path} in body should have at least "
                    f"{schema['minItems']} items",
                )
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            outcome.causes.append(
                _cause(
                    path,
                    "FieldValueTooMany",
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                validate(items, item, f"{path}[{index}]", outcome)
    if isinstance(value, dict):
        _check_object(schema, value, path, outcome)


def _check_bounds(schema: JsonObject, value: float, path: str, outcome: Outcome) -> None:
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    if minimum is not None and (value < minimum or (schema.get("exclusiveMinimum") and value == minimum)):
        relation = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
        outcome.causes.append(
            _cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {_render(value)}: {path} in body should be {relation} {minimum}",
            )
        )
    if maximum is not None and (value > maximum or (schema.get("exclusiveMaximum") and value == maximum)):
        relation = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
        outcome.causes.append(
            _cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {_render(value)}: {path} in body should be {relation} {maximum}",
            )
        )


def _check_string(schema: JsonObject, value: str, path: str, outcome: Outcome) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        outcome.causes.append(
            _cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {_render(value)}: {path} in body should be at least "
                f"{schema['minLength']} chars long",
            )
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        outcome.causes.append(
            _cause(path, "FieldValueTooLong", f"Too long: may not be more than {schema['maxLength']} bytes")
        )
    pattern = schema.get("pattern")
    if pattern and not _compiled(pattern).search(value):
        outcome.causes.append(
            _cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {_render(value)}: {path} in body should match '{pattern}'",
            )
        )
    if schema.get("format") == "date-time" and not _valid_datetime(value):
        outcome.causes.append(
            _cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {_render(value)}: {path} in body must be of type date-time",
            )
        )


def _check_object(schema: JsonObject, value: JsonObject, path: str, outcome: Outcome) -> None:
    for key in schema.get("required") or []:
        if key not in value:
            outcome.causes.append(_cause(_join(path, key), "FieldValueRequired", "Required value"))
    properties: JsonObject = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if key in properties:
            validate(properties[key], item, _join(path, key), outcome)
        elif isinstance(additional, dict):
            validate(additional, item, _join(path, key), outcome)
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        outcome.causes.append(
            _cause(
                path,
                "FieldValueInvalid",
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        )
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        outcome.causes.append(
            _cause(
                path,
                "FieldValueTooMany",
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        )
