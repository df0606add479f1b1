"""The three PATCH flavours: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge.

Strategic merge takes its list merge keys from the upstream schemas (``x-kubernetes-patch-merge-key``
and ``x-kubernetes-patch-strategy``), so containers merge by name, conditions by type, and so on.
"""

from __future__ import annotations

from typing import Any

from kubepilot_devcluster.apiserver import builtin_schemas
from kubepilot_devcluster.apiserver.errors import ApiError, bad_request
from kubepilot_devcluster.apiserver.values import clone

JsonObject = dict[str, Any]


# -- JSON merge patch --------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch --------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise ApiError("UnprocessableEntity", f"jsonpatch: path {path!r} not found", code=422)
    return doc


def _add(doc: Any, parts: list[str], value: Any, path: str) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise ApiError("UnprocessableEntity", f"jsonpatch add: index out of range in {path!r}", code=422)
    else:
        raise ApiError("UnprocessableEntity", f"jsonpatch add: cannot add to {path!r}", code=422)
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    if not parts:
        raise ApiError("UnprocessableEntity", "jsonpatch remove: cannot remove the whole document", code=422)
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(
        "UnprocessableEntity",
        f"jsonpatch remove operation does not apply: doc is missing path: {path}",
        code=422,
    )


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply RFC 6902 operations (add, remove, replace, move, copy, test) to a copy of ``doc``."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = clone(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise bad_request(f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        parts = _pointer(path)
        if op == "add":
            doc = _add(doc, parts, clone(operation.get("value")), path)
        elif op == "remove":
            _remove(doc, parts, path)
        elif op == "replace":
            _walk(doc, parts, path)
            if parts:
                _remove(doc, parts, path)
            doc = _add(doc, parts, clone(operation.get("value")), path)
        elif op in ("move", "copy"):
            source = operation.get("from", "")
            value = clone(_walk(doc, _pointer(source), source))
            if op == "move":
                _remove(doc, _pointer(source), source)
            doc = _add(doc, parts, value, path)
        elif op == "test":
            if _walk(doc, parts, path) != operation.get("value"):
                raise ApiError(
                    "UnprocessableEntity", f"jsonpatch test operation does not apply: {path}", code=422
                )
        else:
            raise bad_request(f"unknown JSON patch operation {op!r}")
    return doc


# -- strategic merge patch ---------------------------------------------------------------------

_DIRECTIVE_PREFIXES = ("$setElementOrder/", "$deleteFromPrimitiveList/", "$retainKeys")


def _property_schema(schema: JsonObject | None, key: str) -> JsonObject | None:
    resolved = builtin_schemas.resolve(schema)
    if resolved is None:
        return None
    properties = resolved.get("properties")
    if isinstance(properties, dict) and key in properties:
        prop: JsonObject = properties[key]
        return prop
    additional = resolved.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


def strategic_merge(target: Any, patch: Any, schema: JsonObject | None) -> Any:
    """Strategic merge of ``patch`` into ``target`` guided by ``schema`` (an upstream definition)."""
    if not isinstance(patch, dict):
        return clone(patch)
    if patch.get("$patch") == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch" or key.startswith(_DIRECTIVE_PREFIXES):
            if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
                field = key.split("/", 1)[1]
                if isinstance(result.get(field), list):
                    result[field] = [item for item in result[field] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        field_schema = _property_schema(schema, key)
        if isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, field_schema)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, field_schema)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = clone(value)
    return result


def _merge_list(current: Any, patch: list[Any], schema: JsonObject | None) -> list[Any]:
    strategy = (schema or {}).get("x-kubernetes-patch-strategy", "")
    merge_key = (schema or {}).get("x-kubernetes-patch-merge-key")
    if "merge" not in strategy.split(",") or not isinstance(current, list):
        return [clone(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    if merge_key is None:
        # A merged list of primitives (e.g. finalizers): union, keeping the current order first.
        merged = list(current)
        merged.extend(item for item in patch if item not in merged)
        return merged
    item_schema = (schema or {}).get("items")
    merged = list(clone(current))
    for item in patch:
        if not isinstance(item, dict):
            continue
        position = next(
            (
                i
                for i, existing in enumerate(merged)
                if isinstance(existing, dict) and existing.get(merge_key) == item.get(merge_key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                merged.pop(position)
            continue
        if position is None:
            merged.append({k: clone(v) for k, v in item.items() if k != "$patch"})
        else:
            merged[position] = strategic_merge(merged[position], item, item_schema)
    return merged
