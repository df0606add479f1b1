"""The resource endpoints: one dispatcher mapping HTTP method and URL shape to an API verb."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kubepilot_devcluster.apiserver import listing, pod_logs, subresources, tables
from kubepilot_devcluster.apiserver.cluster import PATCH_APPLY, Cluster, DeleteOptions, WriteOptions
from kubepilot_devcluster.apiserver.deletion import Deleter
from kubepilot_devcluster.apiserver.errors import ApiError, bad_request
from kubepilot_devcluster.apiserver.patching import json_patch, merge_patch
from kubepilot_devcluster.apiserver.requests import (
    ResourcePath,
    decode_json,
    dry_run,
    field_validation,
    flag,
    int_query,
    json_response,
    read_body,
)
from kubepilot_devcluster.apiserver.resources import REVIEW_KINDS, ResourceType

JsonObject = dict[str, Any]

# Kinds whose registry returns the deleted object itself rather than a Status.
_RETURNS_DELETED_OBJECT = {"Pod", "Namespace", "Service", "CustomResourceDefinition"}


def review(resource: ResourceType, body: Any) -> JsonObject:
    """Answer an access or identity review: the devcluster has no authorization, so all is allowed."""
    answer: JsonObject = dict(body) if isinstance(body, dict) else {}
    answer.update({"apiVersion": resource.api_version, "kind": resource.kind})
    answer.setdefault("metadata", {})["creationTimestamp"] = None
    if resource.kind == "SelfSubjectAccessReview":
        answer["status"] = {"allowed": True, "reason": "the devcluster authorizes every request"}
    else:
        answer["status"] = {
            "userInfo": {"username": "devcluster-admin", "groups": ["system:masters", "system:authenticated"]}
        }
    return answer


def verb_of(method: str, path: ResourcePath, request: web.Request) -> str:
    if method == "GET":
        if path.name is None:
            return "watch" if path.legacy_watch or flag(request, "watch") else "list"
        return "watch" if path.legacy_watch else "get"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if path.name is not None else "deletecollection",
    }.get(method, "unknown")


def _not_served(path: ResourcePath) -> ApiError:
    return ApiError(
        "NotFound",
        "the server could not find the requested resource",
        details={"group": path.group, "kind": path.plural} if path.group else {"kind": path.plural},
    )


class ResourceHandler:
    """Serves every ``/api`` and ``/apis`` resource URL against one :class:`Cluster`."""

    def __init__(self, cluster: Cluster, deleter: Deleter, logs: pod_logs.PodLogs) -> None:
        self.cluster = cluster
        self.deleter = deleter
        self.logs = logs

    def resolve(self, path: ResourcePath) -> ResourceType:
        resource = self.cluster.registry.get(path.group, path.version, path.plural)
        if resource is None:
            raise _not_served(path)
        if path.subresource is not None and path.subresource not in resource.subresources:
            raise _not_served(path)
        if path.namespace is not None and not resource.namespaced:
            raise _not_served(path)
        return resource

    async def handle(self, request: web.Request, path: ResourcePath, verb: str) -> web.StreamResponse:
        resource = self.resolve(path)
        namespace = path.namespace or ""
        if verb in ("create", "update", "patch", "delete") and resource.namespaced and path.namespace is None:
            raise ApiError("NotFound", "the server could not find the requested resource")
        if verb == "list":
            return json_response(listing.list_objects(self.cluster, request, resource, path.namespace))
        if verb == "watch":
            if path.name is not None:
                raise bad_request("watching a single object by URL is not supported; use fieldSelector")
            return await listing.watch(self.cluster, request, resource, path.namespace)
        if verb == "get":
            return await self._get(request, resource, namespace, path)
        if verb == "create":
            if path.name is not None and path.subresource == "binding":
                body = await read_body(request, "v1", "Binding")
                return json_response(
                    subresources.bind(self.cluster, resource, namespace, path.name, body), status=201
                )
            if path.name is not None:
                raise ApiError("MethodNotAllowed", "POST to a named object is not supported", code=405)
            if resource.kind in REVIEW_KINDS:
                # The answer does not depend on the body, so a protobuf one need not be decoded.
                is_json = "protobuf" not in request.headers.get("Content-Type", "")
                body = await read_body(request) if is_json else {}
                return json_response(review(resource, body), status=201)
            return await self._create(request, resource, namespace)
        if verb == "update":
            return await self._update(request, resource, namespace, path)
        if verb == "patch":
            return await self._patch(request, resource, namespace, path)
        if verb == "delete":
            return await self._delete(request, resource, namespace, str(path.name))
        if verb == "deletecollection":
            return await self._delete_collection(request, resource, path.namespace)
        raise ApiError(
            "MethodNotAllowed", "the server does not allow this method on the requested resource", code=405
        )

    async def _get(
        self, request: web.Request, resource: ResourceType, namespace: str, path: ResourcePath
    ) -> web.StreamResponse:
        name = str(path.name)
        if path.subresource == "log":
            return await self.logs.serve(request, self.cluster.get(resource, namespace, name))
        if path.subresource == "scale":
            return json_response(subresources.get_scale(self.cluster, resource, namespace, name))
        obj = self.cluster.get(resource, namespace, name)
        if "as=Table" in request.headers.get("Accept", ""):
            return json_response(
                tables.table(
                    resource,
                    [obj],
                    {"resourceVersion": obj["metadata"]["resourceVersion"]},
                    request.query.get("includeObject", "Metadata"),
                )
            )
        return json_response(obj)

    @staticmethod
    def _options(request: web.Request) -> WriteOptions:
        return WriteOptions(dry_run=dry_run(request), field_validation=field_validation(request))

    async def _create(
        self, request: web.Request, resource: ResourceType, namespace: str
    ) -> web.StreamResponse:
        options = self._options(request)
        body = await read_body(request, resource.api_version, resource.kind)
        created = self.cluster.create(resource, namespace, body, options)
        return json_response(created, status=201, warnings=options.warnings)

    async def _update(
        self, request: web.Request, resource: ResourceType, namespace: str, path: ResourcePath
    ) -> web.StreamResponse:
        options = self._options(request)
        body = await read_body(request, resource.api_version, resource.kind)
        if path.subresource == "scale":
            replicas = ((body or {}).get("spec") or {}).get("replicas") if isinstance(body, dict) else None
            return json_response(
                subresources.set_scale(self.cluster, resource, namespace, str(path.name), replicas, options)
            )
        updated = self.cluster.update(resource, namespace, str(path.name), body, path.subresource, options)
        return json_response(updated, warnings=options.warnings)

    async def _patch(
        self, request: web.Request, resource: ResourceType, namespace: str, path: ResourcePath
    ) -> web.StreamResponse:
        options = self._options(request)
        patch_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if patch_type == PATCH_APPLY:
            raise ApiError(
                "UnsupportedMediaType",
                "server-side apply (application/apply-patch+yaml) is not "
                "supported by the devcluster; use client-side kubectl apply or a merge patch",
                code=415,
            )
        if "protobuf" in patch_type:
            raise ApiError("UnsupportedMediaType", f"unsupported patch media type {patch_type}", code=415)
        raw = await request.read()
        try:
            patch = decode_json(raw) if raw else None
        except ValueError as error:
            raise bad_request(f"the patch is not valid JSON: {error}") from error
        if path.subresource == "scale":
            current = subresources.get_scale(self.cluster, resource, namespace, str(path.name))
            scaled = (
                json_patch(current, patch)
                if patch_type.startswith("application/json-patch")
                else merge_patch(current, patch)
            )
            replicas = (scaled.get("spec") or {}).get("replicas")
            return json_response(
                subresources.set_scale(self.cluster, resource, namespace, str(path.name), replicas, options)
            )
        patched = self.cluster.patch(
            resource, namespace, str(path.name), patch_type, patch, path.subresource, options
        )
        return json_response(patched, warnings=options.warnings)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        body = await read_body(request) if request.can_read_body else None
        body = body if isinstance(body, dict) else {}
        propagation = request.query.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = request.query.get("orphanDependents")
        if propagation is None and (orphan in ("true", "True") or body.get("orphanDependents") is True):
            propagation = "Orphan"
        if propagation not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(
                f"propagationPolicy must be Orphan, Background or Foreground, not {propagation!r}"
            )
        grace = int_query(request, "gracePeriodSeconds")
        if grace is None and isinstance(body.get("gracePeriodSeconds"), int):
            grace = body["gracePeriodSeconds"]
        dry = dry_run(request) or body.get("dryRun") == ["All"]
        return DeleteOptions(
            propagation=propagation,
            grace_period=grace,
            preconditions=body.get("preconditions") or {},
            dry_run=dry,
        )

    async def _delete(
        self, request: web.Request, resource: ResourceType, namespace: str, name: str
    ) -> web.StreamResponse:
        options = await self._delete_options(request)
        warnings = []
        if resource.orphan_by_default and options.propagation is None:
            # The real server warns the same way about batch/v1 Jobs' legacy Orphan default.
            warnings.append(
                "child pods are preserved by default when jobs are deleted; set "
                "propagationPolicy=Background to remove them or set propagationPolicy=Orphan to "
                "suppress this warning"
            )
        result = self.deleter.delete(resource, namespace, name, options)
        still_there = self.cluster.store.get(
            resource.storage_key, namespace if resource.namespaced else "", name
        )
        if still_there is not None or resource.is_custom or resource.kind in _RETURNS_DELETED_OBJECT:
            return json_response(result, warnings=warnings)
        # Like the real registry: most kinds answer an immediate delete with a Success Status.
        details = {
            "name": name,
            "group": resource.group,
            "kind": resource.plural,
            "uid": result["metadata"].get("uid", ""),
        }
        if not resource.group:
            del details["group"]
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details},
            warnings=warnings,
        )

    async def _delete_collection(
        self, request: web.Request, resource: ResourceType, namespace: str | None
    ) -> web.StreamResponse:
        options = await self._delete_options(request)
        body = listing.list_objects(self.cluster, request, resource, namespace)
        deleted = []
        for obj in body.get("items", []):
            meta = obj["metadata"]
            try:
                deleted.append(
                    self.deleter.delete(resource, meta.get("namespace", ""), meta["name"], options)
                )
            except ApiError as error:
                if error.code != 404:
                    raise
        return json_response(
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self.cluster.store.resource_version)},
                "items": deleted,
            }
        )
