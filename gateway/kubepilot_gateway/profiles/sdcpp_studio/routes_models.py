"""The model catalog's read endpoints (SD-22…26, SD-32): the catalog setting, the files on the
models volume, and the ServiceInstance labelled with the model id (read from the cache).

Start, stop and downloads (ServiceInstances and ModelPulls) are not in this increment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from starlette.exceptions import HTTPException

from kubepilot_gateway.kube import resource_for
from kubepilot_gateway.profiles.sdcpp_studio import catalog as cat
from kubepilot_gateway.profiles.sdcpp_studio.config import CatalogModel
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

JsonObject = dict[str, Any]
SERVICE_INSTANCES = resource_for("ServiceInstance")


def probe(root: Path, names: list[str]) -> dict[str, bool]:
    """Which of ``names`` exist under ``root`` (never outside it)."""
    base = root.resolve()
    found = {}
    for name in names:
        try:
            path = (base / name).resolve()
            found[name] = (path == base or base in path.parents) and path.exists()
        except (OSError, RuntimeError):
            found[name] = False
    return found


def create_router(runtime: Runtime) -> APIRouter:
    router = APIRouter()
    settings = runtime.settings
    models_root = runtime.ctx.settings.volumes.models

    def service_of(entry: CatalogModel) -> JsonObject | None:
        labels = {cat.LABEL_MODEL: entry.id}
        found = runtime.ctx.cache.list(SERVICE_INSTANCES, runtime.namespace, labels=labels)
        return found[0] if found else None

    async def found_files(entry: CatalogModel) -> dict[str, bool]:
        return await asyncio.to_thread(probe, Path(models_root), cat.files_of(entry))

    async def model_object(entry: CatalogModel) -> JsonObject:
        return cat.model_object(entry, models_root, await found_files(entry), service_of(entry))

    def entry_or_404(model_id: str) -> CatalogModel:
        entry = next((m for m in settings.models if m.id == model_id), None)
        if entry is None:
            raise HTTPException(status_code=404, detail="Model not found")
        return entry

    @router.get("/api/models")
    async def models() -> JsonObject:
        """SD-22."""
        return {"models": [await model_object(entry) for entry in settings.models]}

    @router.get("/api/models/running")
    async def running() -> list[JsonObject]:
        """SD-23: a bare array of the models whose service runs."""
        answer = []
        for entry in settings.models:
            if cat.model_status(service_of(entry)) == "running":
                answer.append(
                    {"id": entry.id, "name": entry.display_name, "port": entry.port, "status": "running"}
                )
        return answer

    @router.get("/api/models/downloaded")
    async def downloaded() -> JsonObject:
        """SD-24: the models whose files all exist."""
        answer = []
        for entry in settings.models:
            status = cat.file_status(entry, models_root, await found_files(entry))
            if status["allFilesExist"]:
                answer.append(
                    {"id": entry.id, "name": entry.display_name, "fileStatus": {"allFilesExist": True}}
                )
        return {"models": answer}

    @router.get("/api/models/{model_id}")
    async def model(model_id: str) -> JsonObject:
        """SD-25."""
        return await model_object(entry_or_404(model_id))

    @router.get("/api/models/{model_id}/status")
    async def model_status(model_id: str) -> JsonObject:
        """SD-26."""
        entry = entry_or_404(model_id)
        return {"id": entry.id, "status": cat.model_status(service_of(entry)), "port": entry.port}

    @router.get("/api/models/{model_id}/files/status")
    async def files_status(model_id: str) -> JsonObject:
        """SD-32."""
        entry = entry_or_404(model_id)
        return cat.file_status(entry, models_root, await found_files(entry))

    return router
