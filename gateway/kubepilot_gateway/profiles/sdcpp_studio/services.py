"""Model start / stop (SD-27/28) as ServiceInstances, one per catalog model, and the model status
events the WebSocket sends from their phase changes (SD-WS-06).

**One ServiceInstance per model**, named from the model id (:func:`service_name`: a readable slug
and a hash, so any id gives a valid, collision-free name) and labelled with the profile and that
slug (``kubepilot.io/sdcpp-model``); the model id itself is an annotation. Its program is the
catalog entry's ``backend``: ``generator`` (our diffusers generator server, which executes the
GenerationJobs of that model: ``spec.models`` names the model's path, the operator routes by it)
or ``sdcpp`` (an sd.cpp server with ``spec.sdcpp`` from the entry, executing jobs through the sd.cpp
adapter). Start creates it (or sets ``running: true``), stop sets ``running: false`` (scaled to
zero, the object and its history stay). The API server is the lock: two concurrent starts create
one object, the loser patches the winner's.

**Which models start**: every ``server`` and ``cli`` model (a ``cli`` model then gets a warm
service too; without one its jobs still run as one-shot Jobs); an ``api`` model is an external
endpoint and answers 400. Start of a model whose service is starting or running is the product's
409 ``Model is already running``; stop of one that is not running the product's 400 ``Model is not
running``.

Pure but for :class:`Services` (cache reads, store writes).
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.exceptions import HTTPException

from kubepilot_api.constants import API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import AlreadyExists, KubeError, NotFound, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import catalog as cat
from kubepilot_gateway.profiles.sdcpp_studio.config import PROFILE_NAME, CatalogModel, Compat
from kubepilot_gateway.profiles.sdcpp_studio.downloads import entry_label, kube_failure

JsonObject = dict[str, Any]
SERVICE_INSTANCES = resource_for("ServiceInstance")
ANNOTATION_MODEL_ID = f"{LABEL_PREFIX}sdcpp-model-id"
SERVICE_TYPES = {"generator": "kubepilot-generator", "sdcpp": "sdcpp-server"}
ACTIVE = ("starting", "running")


def service_name(model_id: str) -> str:
    return f"sdcpp-{entry_label(model_id)}"


def service_labels(model_id: str) -> dict[str, str]:
    return {LABEL_PROFILE: PROFILE_NAME, cat.LABEL_MODEL: entry_label(model_id)}


def new_service(entry: CatalogModel) -> JsonObject:
    """The ServiceInstance that serves ``entry``, running."""
    spec: JsonObject = {
        "serviceType": SERVICE_TYPES[entry.backend],
        "displayName": entry.display_name,
        "running": True,
        "autostart": entry.mode == "preload",
        "models": [entry.path],
    }
    if entry.backend == "sdcpp":
        spec["sdcpp"] = {
            "id": entry.id,
            "path": entry.path,
            "execMode": entry.exec_mode,
            "mode": entry.mode,
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceInstance",
        "metadata": {
            "name": service_name(entry.id),
            "labels": service_labels(entry.id),
            "annotations": {ANNOTATION_MODEL_ID: entry.id},
        },
        "spec": spec,
    }


def model_id_of(service: JsonObject) -> str:
    """The catalog model a ServiceInstance of this profile serves ('' when it is not one)."""
    meta = service.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_PROFILE) != PROFILE_NAME or not labels.get(cat.LABEL_MODEL):
        return ""
    return str((meta.get("annotations") or {}).get(ANNOTATION_MODEL_ID) or "")


def status_of(service: JsonObject | None) -> str:
    return cat.model_status(service)


def status_event(
    old: JsonObject | None, new: JsonObject | None, compat: Compat, port: int | None
) -> JsonObject | None:
    """``model_status_changed`` when a model's status word changed between two versions of its
    ServiceInstance (None: absent); None when it did not change or the object is not ours."""
    current = new if new is not None else old
    if current is None:
        return None
    model_id = model_id_of(current)
    if not model_id:
        return None
    before, after = status_of(old), status_of(new)
    if before == after:
        return None
    if compat == "product":
        data: JsonObject = {"modelId": model_id, "status": after, "port": port}
        return {"channel": "models", "type": "model_status_changed", "data": data}
    return {"type": "model_status_changed", "data": {"id": model_id, "status": after, "port": port}}


class Services:
    """This profile's model services in the gateway's namespace."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.namespace = ctx.settings.namespace

    def of(self, entry: CatalogModel) -> JsonObject | None:
        found = self.ctx.cache.list(SERVICE_INSTANCES, self.namespace, labels=service_labels(entry.id))
        return found[0] if found else None

    async def start(self, entry: CatalogModel) -> JsonObject:
        if entry.exec_mode == "api":
            raise HTTPException(status_code=400, detail="Model uses an external API and cannot be started")
        current = self.of(entry)
        if (
            current is not None
            and status_of(current) in ACTIVE
            and (current.get("spec") or {}).get("running")
        ):
            raise HTTPException(status_code=409, detail="Model is already running")
        name = str((current or {}).get("metadata", {}).get("name") or service_name(entry.id))
        try:
            if current is not None:
                with contextlib.suppress(NotFound):
                    return await self.ctx.store.patch(SERVICE_INSTANCES, name, {"spec": {"running": True}})
            try:
                return await self.ctx.store.create(SERVICE_INSTANCES, new_service(entry))
            except AlreadyExists:  # a concurrent start won: set the same desired state on its object
                return await self.ctx.store.patch(SERVICE_INSTANCES, name, {"spec": {"running": True}})
        except KubeError as error:
            raise kube_failure(error) from error

    async def stop(self, entry: CatalogModel) -> JsonObject:
        current = self.of(entry)
        if current is None or not (current.get("spec") or {}).get("running"):
            raise HTTPException(status_code=400, detail="Model is not running")
        name = str(current["metadata"]["name"])
        try:
            return await self.ctx.store.patch(SERVICE_INSTANCES, name, {"spec": {"running": False}})
        except NotFound:
            raise HTTPException(status_code=400, detail="Model is not running") from None
        except KubeError as error:
            raise kube_failure(error) from error
