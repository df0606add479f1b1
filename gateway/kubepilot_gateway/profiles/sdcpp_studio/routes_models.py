"""The model catalog's endpoints: reads (SD-22…26, SD-32) from the catalog setting, the files on
the models volume and the ServiceInstance labelled with the model id (read from the cache); and
downloads (SD-29…31, plus the product's ``POST /api/models/:id/download`` under ``compat:
product``) as ModelPulls (see :mod:`.downloads`).

The download routes are declared before ``/api/models/{model_id}…`` (``download/x`` would
otherwise match ``{model_id}/status``-style routes), and ``download``, ``running`` and
``downloaded`` are reserved model ids.

Start and stop (ServiceInstances) are not in this increment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from kubepilot_gateway.kube import resource_for
from kubepilot_gateway.profiles.sdcpp_studio import catalog as cat
from kubepilot_gateway.profiles.sdcpp_studio import downloads as dl
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
        if entry is None or model_id in cat.RESERVED_IDS:
            raise HTTPException(status_code=404, detail="Model not found")
        return entry

    downloads = dl.Downloads(runtime.ctx, settings)
    product = settings.compat == "product"

    async def files_present(pull: JsonObject) -> bool:
        """Whether every file a completed ModelPull lists is still on the models volume."""
        listed = dl.pulled_files(pull)
        found = await asyncio.to_thread(probe, Path(models_root), listed)
        return bool(listed) and all(found.values())

    def started(entry: CatalogModel, pull: JsonObject) -> JsonObject:
        status = dl.status_word(pull, settings.compat)
        if not product:
            return {"downloadId": dl.download_id(pull), "status": status}
        return {
            "success": True,
            "downloadId": dl.download_id(pull),
            "modelId": entry.id,
            "repo": entry.huggingface.repo,
            "status": "downloading" if dl.running(pull) else status,
            "message": f"Download started for {entry.display_name}",
        }

    @router.post("/api/models/download")
    async def download(request: Request) -> JsonObject:
        """SD-29: ``{"modelId"}`` → the model's download (a ModelPull)."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        model_id = body.get("modelId") if isinstance(body, dict) else None
        if not isinstance(model_id, str) or not model_id.strip():
            raise HTTPException(status_code=400, detail="Missing required field: modelId")
        entry = entry_or_404(model_id)
        return started(entry, await downloads.start(entry, files_present))

    @router.get("/api/models/download/{download_id}")
    async def download_status(download_id: str) -> JsonObject:
        """SD-30: the download's status and progress."""
        pull = downloads.require(download_id)
        return dl.product_status(pull) if product else dl.document_status(pull)

    @router.delete("/api/models/download/{download_id}")
    async def cancel_download(download_id: str) -> JsonObject:
        """SD-31: cancel a running download."""
        pull = await downloads.cancel(downloads.require(download_id), settings.compat)
        if not product:
            return {"success": True}
        return {
            "success": True,
            "downloadId": dl.download_id(pull),
            "status": "cancelled",
            "message": "Download has been cancelled",
        }

    if product:

        @router.post("/api/models/{model_id}/download")
        async def download_model(model_id: str) -> JsonObject:
            """The product's own download route (its web UI calls it)."""
            entry = entry_or_404(model_id)
            return started(entry, await downloads.start(entry, files_present))

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
