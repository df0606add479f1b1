"""The one module that talks to the Kubernetes API server (kopf's watches aside).

A thin JSON layer over the official client's connection, auth and TLS: objects are plain dicts,
as kopf hands them to us, so builders and reconcilers never see client model classes. Every
call records the verb and resource it used (``used``), which the RBAC test compares with the
ClusterRole the chart grants.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_api.paths import resource_path

log = logging.getLogger(__name__)

Obj = dict[str, Any]
REQUEST_TIMEOUT_SECONDS = 30
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Resource:
    """A resource type: its apiVersion and plural."""

    api_version: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        return resource_path(self.api_version, self.plural, namespace, name, subresource)


JOBS = Resource("batch/v1", "jobs")
DEPLOYMENTS = Resource("apps/v1", "deployments")
SERVICES = Resource("v1", "services")
SECRETS = Resource("v1", "secrets")
PODS = Resource("v1", "pods")
CONFIGMAPS = Resource("v1", "configmaps")
SERVICEACCOUNTS = Resource("v1", "serviceaccounts")
EVENTS = Resource("v1", "events")
LEASES = Resource("coordination.k8s.io/v1", "leases")


def custom(plural: str) -> Resource:
    return Resource(f"{GROUP}/{VERSION}", plural)


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body


_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class Kube:
    """JSON requests to the API server through one pooled, authenticated client."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        self._host = str(api_client.configuration.host).rstrip("/")
        self._lock = threading.Lock()
        self.used: set[tuple[str, str, str]] = set()
        """(api group, resource[/subresource], verb) of every call made, for the RBAC test."""

    def _record(self, resource: Resource, subresource: str, method: str, name: str) -> None:
        verb = _VERBS[method]
        if method == "GET" and not name:
            verb = "list"
        plural = f"{resource.plural}/{subresource}" if subresource else resource.plural
        with self._lock:
            self.used.add((resource.group, plural, verb))

    def request(
        self,
        method: str,
        resource: Resource,
        namespace: str = "",
        name: str = "",
        *,
        subresource: str = "",
        body: Any = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> Obj:
        path = resource.path(namespace, name, subresource)
        self._record(resource, subresource, method, name)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        self._client.update_params_for_auth(headers, [], ["BearerToken"], path, method, body)
        url = self._host + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        response = self._client.call_api(
            method, url, header_params=headers, body=body, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        data = response.read() or b""  # type: ignore[no-untyped-call]
        if response.status >= 400:
            text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
            raise ApiError(response.status, str(response.reason), text)
        return json.loads(data) if data else {}

    # -- conveniences -----------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Obj | None:
        try:
            return self.request("GET", resource, namespace, name)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def list(self, resource: Resource, namespace: str = "", label_selector: str = "") -> list[Obj]:
        query = {"labelSelector": label_selector} if label_selector else None
        items: list[Obj] = self.request("GET", resource, namespace, query=query).get("items", [])
        return items

    def create(self, resource: Resource, namespace: str, body: Obj) -> Obj:
        """Create; when it already exists, the existing object (creation is idempotent)."""
        try:
            return self.request("POST", resource, namespace, body=body)
        except ApiError as error:
            if error.status != 409:
                raise
            existing = self.get(resource, namespace, body["metadata"]["name"])
            if existing is None:
                raise
            return existing

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        content_type: str = MERGE_PATCH,
    ) -> Obj:
        return self.request(
            "PATCH", resource, namespace, name, subresource=subresource, body=body, content_type=content_type
        )

    def delete(self, resource: Resource, namespace: str, name: str, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request(
                "DELETE",
                resource,
                namespace,
                name,
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
            )
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True

    def ensure(
        self,
        resource: Resource,
        desired: Obj,
        drift: Callable[[Obj, Obj], Obj | None] | None = None,
        existing: Obj | None = None,
        *,
        likely_absent: bool = False,
    ) -> Obj:
        """Create-or-patch: create ``desired`` when absent, else merge-patch what ``drift`` returns.

        ``drift(existing, desired)`` returns the patch for the fields we own that differ (or None);
        immutable fields (a Job's template) are never in it. ``likely_absent`` (a watch cache has no
        such object) creates first and reads only when the create finds one: one call, not two.
        """
        namespace = desired["metadata"].get("namespace", "")
        name = desired["metadata"]["name"]
        if existing is None and likely_absent:
            try:
                return self.request("POST", resource, namespace, body=desired)
            except ApiError as error:
                if error.status != 409:
                    raise
        current = existing if existing is not None else self.get(resource, namespace, name)
        if current is None:
            return self.create(resource, namespace, desired)
        patch = drift(current, desired) if drift else None
        if patch:
            return self.patch(resource, namespace, name, patch)
        return current


def api_client_from_environment() -> client.ApiClient:
    """A client for the cluster in use: in-cluster config, else $KUBECONFIG or ~/.kube/config."""
    from kubernetes import config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = 64
    return client.ApiClient(configuration)
