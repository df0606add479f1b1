"""OpenAPI documents: ``/openapi/v2`` and ``/openapi/v3`` (root plus one document per group-version).

Built-in schemas come from the upstream JSON schemas (:mod:`.builtin_schemas`), converted to the
OpenAPI shape kubectl expects; custom resources from their CRD's ``openAPIV3Schema``. Operations
carry ``x-kubernetes-group-version-kind`` and a ``fieldValidation`` parameter, which is how kubectl
detects server-side field validation; PATCH operations list strategic merge only for built-ins,
which is how ``kubectl apply`` picks merge patches for custom resources.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from kubepilot_devcluster.apiserver import builtin_schemas
from kubepilot_devcluster.apiserver.resources import ResourceRegistry, ResourceType

JsonObject = dict[str, Any]

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]


def _convert(node: Any, ref_prefix: str, v3: bool) -> Any:
    """JSON-schema (draft 2020) to OpenAPI: single ``type``, refs into components/definitions."""
    if isinstance(node, list):
        return [_convert(item, ref_prefix, v3) for item in node]
    if not isinstance(node, dict):
        return node
    if "oneOf" in node or "anyOf" in node:
        options = node.get("oneOf") or node.get("anyOf") or []
        option_types = {t for option in options for t in _types(option)}
        result: JsonObject = {"type": "string"}
        if "integer" in option_types:
            result["x-kubernetes-int-or-string"] = True
        if "description" in node:
            result["description"] = node["description"]
        return result
    converted: JsonObject = {}
    for key, value in node.items():
        if key == "type":
            types = [t for t in (value if isinstance(value, list) else [value]) if t != "null"]
            if types:
                converted["type"] = types[0]
        elif key == "$ref":
            converted["$ref"] = ref_prefix + builtin_schemas.ref_name(value)
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            converted[key] = {k: _convert(v, ref_prefix, v3) for k, v in value.items()}
        else:
            converted[key] = _convert(value, ref_prefix, v3)
    if v3 and "$ref" in converted and len(converted) > 1:
        # In OpenAPI 3.0 siblings of $ref are ignored; the real server wraps the ref in allOf.
        converted["allOf"] = [{"$ref": converted.pop("$ref")}]
    return converted


def _types(node: JsonObject) -> list[str]:
    value = node.get("type", [])
    return value if isinstance(value, list) else [value]


def _definition_name(resource: ResourceType) -> str:
    if not resource.is_custom:
        name = builtin_schemas.definition_name(resource.group, resource.version, resource.kind)
        if name:
            return name
    reversed_group = ".".join(reversed(resource.group.split(".")))
    return f"{reversed_group}.{resource.version}.{resource.kind}"


def _custom_schema(resource: ResourceType, ref_prefix: str) -> JsonObject:
    schema = copy.deepcopy(((resource.crd_version or {}).get("schema") or {}).get("openAPIV3Schema") or {})
    schema.setdefault("type", "object")
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    }
    properties["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object represents.",
    }
    properties["metadata"] = {"$ref": ref_prefix + _OBJECT_META}
    schema["x-kubernetes-group-version-kind"] = [
        {"group": resource.group, "version": resource.version, "kind": resource.kind}
    ]
    return schema


def _schemas(resources: list[ResourceType], ref_prefix: str, v3: bool) -> JsonObject:
    names = [_definition_name(r) for r in resources if not r.is_custom]
    if any(r.is_custom for r in resources):
        names.append(_OBJECT_META)
    names.extend(f"{n}List" for n in list(names) if f"{n}List" in builtin_schemas.definitions())
    names.extend(
        [
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        ]
    )
    schemas = {
        name: _convert(schema, ref_prefix, v3) for name, schema in builtin_schemas.closure(names).items()
    }
    for resource in resources:
        if resource.is_custom:
            schemas[_definition_name(resource)] = _custom_schema(resource, ref_prefix)
    return schemas


def _parameter(name: str, v3: bool) -> JsonObject:
    if v3:
        return {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    return {"name": name, "in": "query", "type": "string", "uniqueItems": True}


def _operation(resource: ResourceType, verb: str, action: str, v3: bool, ref: str) -> JsonObject:
    operation: JsonObject = {
        "operationId": f"{verb}{resource.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": resource.version,
            "kind": resource.kind,
        },
        "parameters": [_parameter("dryRun", v3), _parameter("fieldManager", v3)],
        "responses": {"200": {"description": "OK"}},
    }
    if verb.startswith(("create", "replace", "patch")):
        # kubectl checks the first PATCH operation it finds for this kind, subresources included.
        operation["parameters"].append(_parameter("fieldValidation", v3))
    if verb.startswith("patch"):
        types = _PATCH_TYPES if not resource.is_custom else [t for t in _PATCH_TYPES if "strategic" not in t]
        if v3:
            operation["requestBody"] = {
                "content": {
                    t: {"schema": {"$ref": ref + "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}} for t in types
                },
                "required": True,
            }
        else:
            operation["consumes"] = types
    elif verb.startswith(("create", "replace")):
        body_ref = {"$ref": ref + _definition_name(resource)}
        if v3:
            operation["requestBody"] = {"content": {"*/*": {"schema": body_ref}}, "required": True}
        else:
            operation["parameters"].append(
                {"name": "body", "in": "body", "required": True, "schema": body_ref}
            )
    return operation


def _paths(resources: list[ResourceType], v3: bool, ref: str) -> JsonObject:
    paths: JsonObject = {}
    for resource in resources:
        prefix = (
            f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
        )
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        collection = f"{prefix}{scope}/{resource.plural}"
        paths[collection] = {
            "get": _operation(resource, "list", "list", v3, ref),
            "post": _operation(resource, "create", "post", v3, ref),
        }
        paths[f"{collection}/{{name}}"] = {
            "get": _operation(resource, "read", "get", v3, ref),
            "put": _operation(resource, "replace", "put", v3, ref),
            "patch": _operation(resource, "patch", "patch", v3, ref),
            "delete": _operation(resource, "delete", "delete", v3, ref),
        }
        for sub in resource.subresources:
            if sub in ("status", "scale"):
                paths[f"{collection}/{{name}}/{sub}"] = {
                    "get": _operation(resource, f"read{sub.title()}", "get", v3, ref),
                    "put": _operation(resource, f"replace{sub.title()}", "put", v3, ref),
                    "patch": _operation(resource, f"patch{sub.title()}", "patch", v3, ref),
                }
    return paths


def group_version_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def v3_document(registry: ResourceRegistry, group: str, version: str) -> JsonObject | None:
    resources = registry.in_group_version(group, version)
    if not resources:
        return None
    ref = "#/components/schemas/"
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0-devcluster"},
        "paths": _paths(resources, True, ref),
        "components": {"schemas": _schemas(resources, ref, True)},
    }


def v3_root(registry: ResourceRegistry) -> JsonObject:
    paths: JsonObject = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            path = group_version_path(group, version)
            digest = _digest(registry, group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def _digest(registry: ResourceRegistry, group: str, version: str) -> str:
    text = json.dumps(
        [(r.plural, r.kind, r.crd_version) for r in registry.in_group_version(group, version)],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha512(text.encode()).hexdigest()[:64].upper()


def v2_document(registry: ResourceRegistry) -> JsonObject:
    resources = list(registry)
    ref = "#/definitions/"
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0-devcluster"},
        "paths": _paths(resources, False, ref),
        "definitions": _schemas(resources, ref, False),
    }
