"""A small asynchronous Kubernetes REST client: the only way controllers and the kubelet reach the API server.

It speaks plain HTTP to the devcluster API server (no auth) and covers what the control plane needs:
list, get, create, merge-patch (object or subresource), delete and watch. ``watch_forever`` resumes a
broken watch from the last resourceVersion it saw and relists when the server answers 410 Gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """A REST resource: its group/version, plural name and whether it lives in namespaces."""

    group_version: str
    plural: str
    namespaced: bool = True

    def base(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


PODS = Resource("v1", "pods")
SERVICES = Resource("v1", "services")
ENDPOINTS = Resource("v1", "endpoints")
SECRETS = Resource("v1", "secrets")
CONFIGMAPS = Resource("v1", "configmaps")
NODES = Resource("v1", "nodes", namespaced=False)
EVENTS = Resource("v1", "events")
JOBS = Resource("batch/v1", "jobs")
DEPLOYMENTS = Resource("apps/v1", "deployments")
REPLICASETS = Resource("apps/v1", "replicasets")
DAEMONSETS = Resource("apps/v1", "daemonsets")
ENDPOINTSLICES = Resource("discovery.k8s.io/v1", "endpointslices")


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch stream; ``type`` is ADDED, MODIFIED, DELETED or RELISTED (synthetic)."""

    type: str
    obj: JsonObject


class KubeClient:
    """Async REST helpers bound to one API server URL; use as an async context manager."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeClient used outside 'async with'")
        return self._session

    def url(
        self, res: Resource, namespace: str | None = None, name: str | None = None, sub: str | None = None
    ) -> str:
        parts = [self.api_url + res.base()]
        if res.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(res.plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        body: JsonObject | None = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        timeout = aiohttp.ClientTimeout(total=30)
        async with self.session.request(
            method, url, data=data, params=params, headers=headers, timeout=timeout
        ) as resp:
            text = await resp.text()
            payload: JsonObject = {}
            if text:
                try:
                    loaded = json.loads(text)
                    payload = loaded if isinstance(loaded, dict) else {}
                except ValueError:
                    payload = {"message": text[:300]}
            if resp.status >= 400:
                raise ApiError(resp.status, str(payload.get("reason", "")), str(payload.get("message", "")))
            return payload

    async def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[JsonObject], str]:
        """All objects (in one namespace or everywhere) and the list's resourceVersion."""
        params = {"labelSelector": label_selector} if label_selector else None
        payload = await self._request("GET", self.url(res, namespace), params=params)
        items = [item for item in payload.get("items") or [] if isinstance(item, dict)]
        return items, str(payload.get("metadata", {}).get("resourceVersion", ""))

    async def get(self, res: Resource, namespace: str | None, name: str) -> JsonObject | None:
        """The object, or None when it does not exist."""
        try:
            return await self._request("GET", self.url(res, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def create(self, res: Resource, namespace: str | None, body: JsonObject) -> JsonObject:
        return await self._request("POST", self.url(res, namespace), body=body)

    async def create_sub(
        self, res: Resource, namespace: str | None, name: str, sub: str, body: JsonObject
    ) -> JsonObject:
        return await self._request("POST", self.url(res, namespace, name, sub), body=body)

    async def patch(
        self, res: Resource, namespace: str | None, name: str, body: JsonObject, sub: str | None = None
    ) -> JsonObject | None:
        """JSON merge-patch the object (or its subresource); None when the object is gone."""
        try:
            return await self._request(
                "PATCH",
                self.url(res, namespace, name, sub),
                body=body,
                content_type="application/merge-patch+json",
            )
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        grace_period: int | None = None,
        propagation: str | None = None,
        uid: str | None = None,
    ) -> bool:
        """Delete the object; False when it was already gone."""
        options: JsonObject = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if propagation is not None:
            options["propagationPolicy"] = propagation
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        try:
            await self._request("DELETE", self.url(res, namespace, name), body=options)
        except ApiError as err:
            if err.status in (404, 409):
                return False
            raise
        return True

    async def watch_once(
        self, res: Resource, resource_version: str, namespace: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """One watch request from ``resource_version``; raises ApiError(410) when it is too old."""
        params = {"watch": "1", "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=10)
        async with self.session.get(self.url(res, namespace), params=params, timeout=timeout) as resp:
            if resp.status >= 400:
                text = await resp.text()
                raise ApiError(resp.status, "WatchFailed", text[:300])
            async for raw in resp.content:
                line = raw.strip()
                if not line:
                    continue
                event = json.loads(line)
                kind = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = int(obj.get("code", 500))
                    raise ApiError(code, str(obj.get("reason", "")), str(obj.get("message", "")))
                yield WatchEvent(kind, obj)

    async def watch_forever(self, res: Resource, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """List then watch without end: resumes after a disconnect, relists after 410 Gone.

        A relist is announced with a synthetic RELISTED event (its object holds the items) so that
        callers keeping a cache can replace it wholesale.
        """
        resource_version = ""
        backoff = 0.2
        while True:
            try:
                if not resource_version:
                    items, resource_version = await self.list(res, namespace)
                    yield WatchEvent("RELISTED", {"items": items})
                async for event in self.watch_once(res, resource_version, namespace):
                    rv = event.obj.get("metadata", {}).get("resourceVersion")
                    if rv:
                        resource_version = str(rv)
                    if event.type != "BOOKMARK":
                        yield event
                    backoff = 0.2
            except ApiError as err:
                if err.status == 410:
                    resource_version = ""
                    continue
                log.warning("watch %s failed: %s", res.plural, err)
            except (TimeoutError, aiohttp.ClientError, ValueError) as err:
                log.debug("watch %s interrupted: %s", res.plural, err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


# Failures a control loop survives by retrying on its next pass.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ApiError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)
