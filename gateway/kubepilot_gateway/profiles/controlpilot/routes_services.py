"""ControlPilot's Service Management API (CP-01 … CP-07) on ServiceInstances.

Reads come from the informer cache (never a LIST per request); writes go through the CR store,
whose answers the cache holds at once, so a client that starts a service sees it in the next
list. Errors are ControlPilot's: ``{"detail": "<text>"}`` with 400 / 404 / 422 / 500 as its
implementation answers (texts in ``seed-api-inventory`` §6.1); a failure of the API server is a
500 with its message, as ControlPilot answers a failed supervisorctl call.
"""

from __future__ import annotations

import secrets
import time
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, Field, StrictBool

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import (
    PODS,
    SECRETS,
    AlreadyExists,
    ApiError,
    BadRequest,
    KubeError,
    NotFound,
    resource_for,
)
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.profiles.controlpilot.podlogs import read_pod_log

JsonObject = dict[str, Any]
SERVICE_INSTANCES = resource_for("ServiceInstance")

UNKNOWN_SERVICE = "Unknown service"
BAD_ACTION = "Bad action"
UPDATES_NOT_SUPPORTED = "Updates are not supported for this service"
LOG_NOT_FOUND = "Log not found"
"""ControlPilot's own texts (seed-api-inventory §6.1, from its implementation)."""
GATEWAY_NOT_STOPPABLE = (
    "ControlPilot is the gateway itself: it cannot be stopped or restarted from its own API"
)
GATEWAY_AUTOSTART_FIXED = "ControlPilot is the gateway itself: it always starts with the platform"
NO_UPDATE_TARGET = "No target_version given and the service reports no latest version"
"""Ours: cases the original cannot meet (its portal is a supervisor program; its updater always
finds a pip index or a git remote)."""


class AutostartRequest(BaseModel):
    """CP-06 body; ``enabled`` must be a JSON boolean (422 otherwise)."""

    enabled: StrictBool


class UpdateStartRequest(BaseModel):
    """CP-04 optional body."""

    target_version: str | None = Field(default=None, max_length=253)


def _ok() -> JsonObject:
    return {"status": "ok"}


def _gateway_version() -> str | None:
    try:
        return metadata.version("kubepilot")
    except metadata.PackageNotFoundError:
        return None


def kube_failure(error: KubeError) -> HTTPException:
    """A failed call to the API server as ControlPilot reports a failed command: 500 with the text."""
    detail = error.message if isinstance(error, ApiError) else str(error)
    return HTTPException(status_code=500, detail=detail)


def create_router(ctx: GatewayContext, *, secret_env: dict[str, str] | None = None) -> APIRouter:
    """The Service Management routes, reading ``ctx.cache`` and writing through ``ctx.store``.

    ``secret_env`` maps a service name to a Secret whose keys its pod gets as environment
    variables once the Secret exists (the copilot token): a ServiceInstance created for that
    service lists it in ``envFromSecrets`` then, and not before (a missing Secret would keep the
    pod from starting).
    """
    router = APIRouter()
    namespace = ctx.store.namespace
    gateway_version = _gateway_version()

    def known(name: str) -> svc.KnownService:
        service = svc.known_service(name)
        if service is None:
            raise HTTPException(status_code=404, detail=UNKNOWN_SERVICE)
        return service

    def cached(name: str) -> JsonObject | None:
        return ctx.cache.get(SERVICE_INSTANCES, name, namespace)

    async def with_secret_env(service: svc.KnownService, body: JsonObject) -> JsonObject:
        secret = (secret_env or {}).get(service.name)
        if not secret:
            return body
        try:
            await ctx.client.request("GET", SECRETS.path(namespace, secret))
        except NotFound:
            return body
        return {**body, "spec": {**body["spec"], "envFromSecrets": [secret]}}

    async def patch_or_create(service: svc.KnownService, patch: JsonObject, body: JsonObject) -> JsonObject:
        """Patch the service's ServiceInstance, or create ``body`` when there is none (either race
        lost, the other is tried)."""
        try:
            if cached(service.name) is not None:
                try:
                    return await ctx.store.patch(SERVICE_INSTANCES, service.name, patch)
                except NotFound:
                    pass
            try:
                return await ctx.store.create(SERVICE_INSTANCES, await with_secret_env(service, body))
            except AlreadyExists:
                return await ctx.store.patch(SERVICE_INSTANCES, service.name, patch)
        except KubeError as error:
            raise kube_failure(error) from error

    @router.get("/api/services")
    async def list_services() -> list[JsonObject]:
        """CP-01: every known service with its supervisor state."""
        return [svc.service_item(service, cached(service.name)) for service in svc.KNOWN_SERVICES]

    @router.get("/api/services/versions")
    async def list_service_versions() -> list[JsonObject]:
        """CP-02: installed and latest versions from ``status.version``."""
        return [
            svc.version_item(service, cached(service.name), gateway_version=gateway_version)
            for service in svc.KNOWN_SERVICES
        ]

    @router.post("/api/services/{name}/update/start")
    async def service_update_start(
        name: str, payload: Annotated[UpdateStartRequest | None, Body()] = None
    ) -> JsonObject:
        """CP-04: set ``spec.version`` to the target; the running job if one is under way."""
        service = known(name)
        if not service.update_supported:
            raise HTTPException(status_code=400, detail=UPDATES_NOT_SUPPORTED)
        obj = cached(name)
        now = time.time()
        current = svc.update_job(name, obj, now=now)
        if current["state"] == "running":
            return current
        target = svc.update_target(payload.target_version if payload else None, obj)
        if target is None:
            raise HTTPException(status_code=400, detail=NO_UPDATE_TARGET)
        request = svc.UpdateRequest(target, svc.installed_version(obj), now)
        body = svc.new_service_instance(
            service,
            running=False,
            version=target,
            annotations={svc.UPDATE_ANNOTATION: request.to_annotation()},
        )
        written = await patch_or_create(service, svc.update_patch(request), body)
        return svc.update_job(name, written, now=now)

    @router.get("/api/services/{name}/update/status")
    async def service_update_status(name: str) -> JsonObject:
        """CP-05: the update job rendered from the ServiceInstance, or ``idle``."""
        known(name)
        return svc.update_job(name, cached(name), now=time.time())

    @router.post("/api/services/{name}/settings/autostart")
    async def service_autostart(name: str, payload: AutostartRequest) -> JsonObject:
        """CP-06: ``spec.autostart`` (start after the platform restarts, not now)."""
        service = known(name)
        if service.synthetic:
            if not payload.enabled:
                raise HTTPException(status_code=400, detail=GATEWAY_AUTOSTART_FIXED)
            return {"status": "ok", "name": name, "autostart": True}
        body = svc.new_service_instance(service, running=False, autostart=payload.enabled)
        written = await patch_or_create(service, svc.autostart_patch(payload.enabled), body)
        return {"status": "ok", "name": name, "autostart": svc.autostart(written)}

    @router.get("/api/services/{name}/log")
    async def service_log(name: str, lines: int = 100) -> JsonObject:
        """CP-07: the last ``lines`` lines of the service's current pod (its main container)."""
        service = known(name)
        pod = "" if service.synthetic else svc.pod_name(cached(name))
        if not pod:
            raise HTTPException(status_code=404, detail=LOG_NOT_FOUND)
        container = svc.main_container(ctx.cache.get(PODS, pod, namespace))
        try:
            text = await read_pod_log(
                ctx.client, namespace, pod, tail_lines=svc.tail_lines(lines), container=container
            )
        except (NotFound, BadRequest) as error:
            # Gone, or not started yet ("container ... is waiting to start"): no log to show.
            raise HTTPException(status_code=404, detail=LOG_NOT_FOUND) from error
        except KubeError as error:
            raise kube_failure(error) from error
        return {"log": text, "path": svc.log_path(namespace, pod, container)}

    # Declared after every literal path under /api/services (static before parametric).
    @router.post("/api/services/{name}/{action}")
    async def control_service(name: str, action: str) -> JsonObject:
        """CP-03: start / stop / restart (the name is checked before the action, as ControlPilot does)."""
        service = known(name)
        try:
            verb = svc.ServiceAction(action)
        except ValueError:
            raise HTTPException(status_code=400, detail=BAD_ACTION) from None
        if service.synthetic:
            if verb is not svc.ServiceAction.START:
                raise HTTPException(status_code=400, detail=GATEWAY_NOT_STOPPABLE)
            return _ok()
        obj = cached(name)
        if verb is svc.ServiceAction.STOP:
            if obj is not None:
                try:
                    await ctx.store.patch(SERVICE_INSTANCES, name, svc.running_patch(False))
                except NotFound:
                    pass  # already gone: stopped
                except KubeError as error:
                    raise kube_failure(error) from error
            return _ok()
        retry = obj is not None and svc.supervisor_state(obj) in (
            svc.SupervisorState.BACKOFF,
            svc.SupervisorState.FATAL,
        )
        if verb is svc.ServiceAction.RESTART or retry:
            # supervisorctl start on a failed program tries it again: so does a new restart nonce.
            patch = svc.restart_patch(secrets.token_hex(8))
        else:
            patch = svc.running_patch(True)
        await patch_or_create(service, patch, svc.new_service_instance(service, running=True))
        return _ok()

    return router
