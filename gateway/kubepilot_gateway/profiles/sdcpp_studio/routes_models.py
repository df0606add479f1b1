"""The model catalog's endpoints: reads (SD-22…26, SD-32) from the catalog setting, the files on
the models volume and the ServiceInstance labelled with the model id (read from the cache); and
downloads (SD-29…31, plus the product's ``POST /api/models/:id/download`` under ``compat:
product``) as ModelPulls (see :mod:`.downloads`).

The download routes are declared before ``/api/models/{model_id}…`` (``download/x`` would
otherwise match ``{model_id}/status``-style routes), and ``download``, ``running`` and
``downloaded`` are reserved model ids.

Start and stop are ServiceInstances (see :mod:`.services`); a model's status and ``running`` are
read from its ServiceInstance in the cache.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException

from kubepilot_gateway.profiles.sdcpp_studio import catalog as cat
from kubepilot_gateway.profiles.sdcpp_studio import downloads as dl
from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio import services as svc
from kubepilot_gateway.profiles.sdcpp_studio.config import CatalogModel
from kubepilot_gateway.profiles.sdcpp_studio.runtime import Runtime

JsonObject = dict[str, Any]


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

    services = svc.Services(runtime.ctx)
    service_of = services.of

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
            body = tr.parse_json(await request.body())
        except tr.BadRequest:
            body = None
        model_id = body.get("modelId") if isinstance(body, dict) else None
        if not isinstance(model_id, str) or not model_id.strip():
            raise HTTPException(status_code=400, detail="Missing required field: modelId")
        entry = entry_or_404(model_id)
        pull = await downloads.start(entry, files_present)
        runtime.logs.add("info", "modelDownloader", f"Download {dl.download_id(pull)} of {entry.id}")
        return started(entry, pull)

    @router.get("/api/models/download/{download_id}")
    async def download_status(download_id: str) -> JsonObject:
        """SD-30: the download's status and progress."""
        pull = downloads.require(download_id)
        return dl.product_status(pull) if product else dl.document_status(pull)

    @router.delete("/api/models/download/{download_id}")
    async def cancel_download(download_id: str) -> JsonObject:
        """SD-31: cancel a running download."""
        pull = await downloads.cancel(downloads.require(download_id), settings.compat)
        runtime.logs.add("info", "modelDownloader", f"Download {download_id} cancelled")
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
            pull = await downloads.start(entry, files_present)
            runtime.logs.add("info", "modelDownloader", f"Download {dl.download_id(pull)} of {entry.id}")
            return started(entry, pull)

    @router.get("/api/models")
    async def models() -> JsonObject:
        """SD-22."""
        return {"models": [await model_object(entry) for entry in settings.models]}

    @router.get("/api/models/running")
    async def running() -> Any:
        """SD-23: the models whose service runs: a bare array (document), or the product's
        ``{count, models: [{id, name, pid, port, execMode, startedAt, api}]}``."""
        answer = []
        for entry in settings.models:
            service = service_of(entry)
            if cat.model_status(service) != "running":
                continue
            if product:
                conditions = ((service or {}).get("status") or {}).get("conditions") or []
                since = next(
                    (c.get("lastTransitionTime") for c in conditions if c.get("type") == "Available"), None
                )
                answer.append(
                    {
                        "id": entry.id,
                        "name": entry.display_name,
                        "pid": None,
                        "port": entry.port,
                        "execMode": entry.exec_mode,
                        "startedAt": dl.epoch_ms(since),
                        "api": None,
                    }
                )
            else:
                answer.append(
                    {"id": entry.id, "name": entry.display_name, "port": entry.port, "status": "running"}
                )
        return {"count": len(answer), "models": answer} if product else answer

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

    @router.post("/api/models/{model_id}/start")
    async def start(model_id: str) -> JsonObject:
        """SD-27: the model's ServiceInstance, running."""
        entry = entry_or_404(model_id)
        started = await services.start(entry)
        runtime.logs.add("info", "modelManager", f"Model {entry.id} starting ({started['metadata']['name']})")
        if product:
            return {
                "success": True,
                "modelId": entry.id,
                "status": "starting",
                "pid": None,
                "message": f"Model {entry.id} is starting",
            }
        return {"success": True, "status": "starting", "port": entry.port}

    @router.post("/api/models/{model_id}/stop")
    async def stop(model_id: str) -> JsonObject:
        """SD-28: the model's ServiceInstance scaled to zero (``running: false``)."""
        entry = entry_or_404(model_id)
        stopped = await services.stop(entry)
        runtime.logs.add("info", "modelManager", f"Model {entry.id} stopping ({stopped['metadata']['name']})")
        if product:
            return {
                "success": True,
                "modelId": entry.id,
                "status": "stopped",
                "message": f"Model {entry.id} has been stopped",
            }
        return {"success": True, "status": "stopped"}

    @router.get("/api/models/{model_id}/files/status")
    async def files_status(model_id: str) -> JsonObject:
        """SD-32."""
        entry = entry_or_404(model_id)
        return cat.file_status(entry, models_root, await found_files(entry))

    return router
