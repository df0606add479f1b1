"""CustomResourceDefinitions: serving their resources, their status, and processing CR writes."""

from __future__ import annotations

from typing import Any

from kubepilot_devcluster.apiserver import cel_rules, structural
from kubepilot_devcluster.apiserver.errors import ApiError, bad_request, cause, invalid
from kubepilot_devcluster.apiserver.resources import ResourceRegistry, ResourceType
from kubepilot_devcluster.apiserver.timeutil import now_rfc3339
from kubepilot_devcluster.apiserver.values import clone

JsonObject = dict[str, Any]


def resource_types(crd: JsonObject) -> list[ResourceType]:
    """One resource type per served version of ``crd``."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = tuple(sorted((version.get("subresources") or {}).keys()))
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                crd_version=version,
            )
        )
    return types


def validate_definition(crd: JsonObject) -> None:
    """Reject CRDs the real server would: names, group, versions, schemas."""
    name = crd.get("metadata", {}).get("name", "")
    spec = crd.get("spec")
    causes: list[JsonObject] = []
    if not isinstance(spec, dict):
        raise invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            name,
            [cause("spec", "Required value", "FieldValueRequired")],
        )
    names = spec.get("names") or {}
    group = spec.get("group", "")
    for key in ("plural", "kind"):
        if not names.get(key):
            causes.append(cause(f"spec.names.{key}", "Required value", "FieldValueRequired"))
    if not group or "." not in group:
        causes.append(
            cause("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot')
        )
    if names.get("plural") and group and name != f"{names['plural']}.{group}":
        causes.append(
            cause("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(
            cause(
                "spec.versions",
                "Required value: must have exactly one version marked as storage version",
                "FieldValueRequired",
            )
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            cause("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        )
    for index, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            causes.append(
                cause(
                    f"spec.versions[{index}].schema.openAPIV3Schema",
                    "Required value: schemas are required",
                    "FieldValueRequired",
                )
            )
    if causes:
        raise invalid("apiextensions.k8s.io", "CustomResourceDefinition", name, causes)


def with_status(crd: JsonObject) -> JsonObject:
    """The CRD as the server reports it once established: accepted names and conditions set."""
    result: JsonObject = clone(crd)
    spec = result.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    spec["names"] = names
    stamp = now_rfc3339()
    status = result.setdefault("status", {})
    # Conditions keep their transition time while they hold, so a no-op update stays a no-op.
    previous = {c.get("type"): c.get("lastTransitionTime") for c in status.get("conditions") or []}
    status["acceptedNames"] = names
    status["storedVersions"] = [v["name"] for v in spec.get("versions", []) if v.get("storage")]
    status["conditions"] = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "reason": "NoConflicts",
            "message": "no conflicts found",
            "lastTransitionTime": previous.get("NamesAccepted") or stamp,
        },
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
            "lastTransitionTime": previous.get("Established") or stamp,
        },
    ]
    return result


def register(registry: ResourceRegistry, crd: JsonObject) -> None:
    spec = crd["spec"]
    registry.remove_group_resource(spec["group"], spec["names"]["plural"])
    for resource in resource_types(crd):
        registry.add(resource)


def _schema(resource: ResourceType) -> JsonObject:
    version = resource.crd_version or {}
    schema: JsonObject = (version.get("schema") or {}).get("openAPIV3Schema") or {}
    return schema


def process_custom_object(
    resource: ResourceType,
    obj: JsonObject,
    old: JsonObject | None,
    field_validation: str,
    warnings: list[str],
) -> JsonObject:
    """Prune, default and validate a custom object; returns the object to store."""
    schema = _schema(resource)
    outcome = structural.Outcome()
    metadata = obj.get("metadata")
    processed: JsonObject = structural.prune_and_default(schema, obj, "", outcome, root=True)
    processed["metadata"] = metadata
    if outcome.unknown:
        listed = ", ".join(f'unknown field "{path}"' for path in outcome.unknown)
        if field_validation == "Strict":
            raise bad_request(
                f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
                f"strict decoding error: {listed}"
            )
        if field_validation == "Warn":
            warnings.extend(f'unknown field "{path}"' for path in outcome.unknown)
    body = {k: v for k, v in processed.items() if k not in ("apiVersion", "kind", "metadata")}
    # Object metadata is validated by the server itself, not by the CRD's schema.
    check_schema = dict(schema)
    check_schema["properties"] = {
        k: v
        for k, v in (schema.get("properties") or {}).items()
        if k not in ("apiVersion", "kind", "metadata")
    }
    structural.validate(check_schema, body, "", outcome)
    old_body = (
        None if old is None else {k: v for k, v in old.items() if k not in ("apiVersion", "kind", "metadata")}
    )
    cel_rules.evaluate(check_schema, body, old_body, "", outcome.causes)
    if outcome.causes:
        for entry in outcome.causes:
            entry["field"] = entry["field"] or "<nil>"
        name = (metadata or {}).get("name") or (metadata or {}).get("generateName", "")
        raise invalid(resource.group, resource.kind, name, outcome.causes)
    return processed


def reject_strategic_merge(resource: ResourceType) -> ApiError:
    return ApiError(
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        code=415,
    )
