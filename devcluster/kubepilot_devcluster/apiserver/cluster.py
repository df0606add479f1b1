"""Object semantics of the API: create, update, patch, delete and read, as the real server does them.

The HTTP layer parses requests and calls these; they stamp uid, timestamps, generation and
resourceVersion, enforce optimistic concurrency, split status from the main resource, run CRD
schemas and defaults, and honour finalizers. Garbage collection hooks in via :mod:`.gc`.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from kubepilot_devcluster.apiserver import builtin_schemas, builtins, crds, patching
from kubepilot_devcluster.apiserver.errors import (
    ApiError,
    already_exists,
    bad_request,
    cause,
    conflict,
    invalid,
    not_found,
)
from kubepilot_devcluster.apiserver.resources import ResourceRegistry, ResourceType
from kubepilot_devcluster.apiserver.store import ObjectStore
from kubepilot_devcluster.apiserver.timeutil import now_rfc3339
from kubepilot_devcluster.apiserver.values import clone

JsonObject = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)

PATCH_JSON = "application/json-patch+json"
PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"


@dataclass
class WriteOptions:
    """Per-request write options: ``dryRun=All``, ``fieldValidation``, the warnings to send back."""

    dry_run: bool = False
    field_validation: str = "Strict"
    warnings: list[str] = field(default_factory=list)


@dataclass
class DeleteOptions:
    propagation: str | None = None
    grace_period: int | None = None
    preconditions: JsonObject = field(default_factory=dict)
    dry_run: bool = False


def _spec_part(obj: JsonObject) -> JsonObject:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Cluster:
    """The API's object semantics over a registry and a store."""

    def __init__(self, registry: ResourceRegistry, store: ObjectStore) -> None:
        self.registry = registry
        self.store = store
        # Set by the garbage collector: called when an object is asked to be deleted.
        self.deletion_hooks: list[Any] = []

    # -- reads ---------------------------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> JsonObject:
        obj = self.store.get(resource.storage_key, namespace if resource.namespaced else "", name)
        if obj is None:
            raise not_found(resource.group, resource.plural, name)
        return self.present(resource, obj)

    @staticmethod
    def present(resource: ResourceType, obj: JsonObject) -> JsonObject:
        """The object as served in ``resource``'s version (custom resources share one storage)."""
        if obj.get("apiVersion") == resource.api_version:
            return obj
        return {**obj, "apiVersion": resource.api_version}

    # -- create --------------------------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str, body: Any, options: WriteOptions) -> JsonObject:
        obj = self._prepare_body(resource, namespace, body)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    secrets.choice(_NAME_ALPHABET) for _ in range(5)
                )
            else:
                raise invalid(
                    resource.group,
                    resource.kind,
                    "",
                    [
                        cause(
                            "metadata.name",
                            "Required value: name or generateName is required",
                            "FieldValueRequired",
                        )
                    ],
                )
        self._validate_name(resource, meta["name"])
        if resource.namespaced:
            self._check_namespace_open(meta["namespace"])
        key_namespace = meta.get("namespace", "")
        if self.store.get(resource.storage_key, key_namespace, meta["name"]) is not None:
            raise already_exists(resource.group, resource.plural, meta["name"])
        for server_field in (*_SERVER_METADATA, "resourceVersion", "managedFields", "selfLink"):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if resource.has_generation:
            meta["generation"] = 1
        if resource.is_custom and resource.has_status:
            obj.pop("status", None)
        builtins.apply_write_conversions(resource, obj)
        builtins.apply_create_defaults(
            resource, obj, self._cluster_ips() if resource.kind == "Service" else set()
        )
        obj = self._admit(resource, obj, None, options)
        if resource.kind == "CustomResourceDefinition":
            crds.validate_definition(obj)
            obj = crds.with_status(obj)
        if options.dry_run:
            return obj
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.store.next_resource_version())
        self.store.put(resource.storage_key, obj, "ADDED")
        if resource.kind == "CustomResourceDefinition":
            crds.register(self.registry, obj)
        if resource.kind == "Namespace":
            self.ensure_default_service_account(meta["name"])
        return obj

    def ensure_default_service_account(self, namespace: str) -> None:
        sa_type = self.registry.get("", "v1", "serviceaccounts")
        if sa_type is None or self.store.get(sa_type.storage_key, namespace, "default") is not None:
            return
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": namespace},
        }
        self.create(sa_type, namespace, body, WriteOptions())

    def _prepare_body(self, resource: ResourceType, namespace: str, body: Any) -> JsonObject:
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        obj: JsonObject = clone(body)
        kind = obj.get("kind")
        if kind and kind != resource.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        api_version = obj.get("apiVersion")
        if api_version and api_version != resource.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource.api_version})"
            )
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if resource.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for key in ("labels", "annotations"):
            if meta.get(key) is not None and not isinstance(meta[key], dict):
                raise bad_request(f"metadata.{key} must be an object of strings")
        return obj

    def _validate_name(self, resource: ResourceType, name: str) -> None:
        pattern, limit = (_LABEL, 63) if resource.kind in ("Namespace", "Service") else (_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            what = "RFC 1123 label" if limit == 63 else "RFC 1123 subdomain"
            raise invalid(
                resource.group,
                resource.kind,
                name,
                [
                    cause(
                        "metadata.name",
                        f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
                        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                        "character",
                    )
                ],
            )

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                details={"name": namespace, "kind": "namespaces"},
            )

    def _cluster_ips(self) -> set[str]:
        return {str((svc.get("spec") or {}).get("clusterIP")) for svc in self.store.list(("", "services"))}

    def _admit(
        self, resource: ResourceType, obj: JsonObject, old: JsonObject | None, options: WriteOptions
    ) -> JsonObject:
        """Schema checks: CRD structural schemas for custom objects, upstream schemas for built-ins."""
        if resource.is_custom:
            return crds.process_custom_object(resource, obj, old, options.field_validation, options.warnings)
        unknown = builtins.prune_unknown_fields(resource, obj)
        if options.field_validation in ("Strict", "Warn"):
            if unknown and options.field_validation == "Strict":
                listed = ", ".join(f'unknown field "{path}"' for path in unknown)
                raise bad_request(
                    f'{resource.kind} in version "{resource.version}" cannot be handled as a '
                    f"{resource.kind}: strict decoding error: {listed}"
                )
            options.warnings.extend(f'unknown field "{path}"' for path in unknown)
        builtins.validate_builtin(resource, obj)
        return obj

    # -- update and patch ----------------------------------------------------------------------

    def update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str | None,
        options: WriteOptions,
    ) -> JsonObject:
        current = self.store.get(resource.storage_key, namespace if resource.namespaced else "", name)
        if current is None:
            raise not_found(resource.group, resource.plural, name)
        new = self._prepare_body(resource, namespace, body)
        if new["metadata"].get("name", name) != name:
            raise bad_request(
                f"the name of the object ({new['metadata'].get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        new["metadata"]["name"] = name
        return self._write_update(resource, current, new, subresource, options)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        subresource: str | None,
        options: WriteOptions,
    ) -> JsonObject:
        current = self.store.get(resource.storage_key, namespace if resource.namespaced else "", name)
        if current is None:
            raise not_found(resource.group, resource.plural, name)
        base = self.present(resource, current)
        if patch_type == PATCH_JSON:
            new = patching.json_patch(base, patch)
        elif patch_type == PATCH_MERGE:
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            new = patching.merge_patch(clone(base), patch)
        elif patch_type == PATCH_STRATEGIC:
            if resource.is_custom:
                raise crds.reject_strategic_merge(resource)
            if not isinstance(patch, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            schema = builtin_schemas.kind_schema(resource.group, resource.version, resource.kind)
            new = patching.strategic_merge(base, patch, schema)
        else:
            raise ApiError(
                "UnsupportedMediaType",
                f"the media type {patch_type!r} is not supported for PATCH; "
                f"use {PATCH_JSON}, {PATCH_MERGE} or {PATCH_STRATEGIC}",
                code=415,
            )
        if not isinstance(new, dict):
            raise bad_request("the patched object is not a JSON object")
        new = self._prepare_body(resource, namespace, new)
        new["metadata"]["name"] = name
        return self._write_update(resource, current, new, subresource, options)

    def _write_update(
        self,
        resource: ResourceType,
        current: JsonObject,
        new: JsonObject,
        subresource: str | None,
        options: WriteOptions,
    ) -> JsonObject:
        meta, old_meta = new["metadata"], current["metadata"]
        wanted_version = meta.get("resourceVersion")
        if wanted_version and wanted_version != old_meta["resourceVersion"]:
            raise conflict(
                resource.group,
                resource.plural,
                old_meta["name"],
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if subresource == "status":
            merged = clone(current)
            merged["status"] = new.get("status")
            if merged["status"] is None:
                merged.pop("status")
            new = self._admit(resource, merged, self.present(resource, current), options)
        elif subresource == "scale":
            raise bad_request("writes to the scale subresource must go through PATCH/PUT of a Scale object")
        else:
            if resource.has_status:
                if "status" in current:
                    new["status"] = clone(current["status"])
                else:
                    new.pop("status", None)
            for server_field in _SERVER_METADATA:
                if server_field in old_meta:
                    meta[server_field] = old_meta[server_field]
                else:
                    meta.pop(server_field, None)
            meta.pop("managedFields", None)
            if resource.namespaced:
                meta["namespace"] = old_meta["namespace"]
            builtins.apply_write_conversions(resource, new)
            new = self._admit(resource, new, self.present(resource, current), options)
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if resource.has_generation and _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if resource.kind == "CustomResourceDefinition":
            crds.validate_definition(new)
            new = crds.with_status(new) if subresource != "status" else new
        if new == self.present(resource, current):
            return new  # a no-op write neither bumps the resourceVersion nor sends an event
        if options.dry_run:
            return new
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            return self.store.remove(resource.storage_key, new)
        new["metadata"]["resourceVersion"] = str(self.store.next_resource_version())
        self.store.put(resource.storage_key, new, "MODIFIED")
        if resource.kind == "CustomResourceDefinition":
            crds.register(self.registry, new)
        return new
