"""The dashboard's REST endpoints of this increment: health and system, presets, downloads, models.

Every read comes from the cluster cache or the model index; writes go through the CR store.
Static paths are declared before parametric ones (``/api/models/types``).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kubepilot_gateway.profiles.comfyui_docker import catalog as cat
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from kubepilot_gateway.profiles.comfyui_docker.dashboard import MODEL_PULLS, Dashboard
from kubepilot_gateway.profiles.comfyui_docker.errors import api_error, has_lone_surrogate, now_iso
from kubepilot_gateway.profiles.comfyui_docker.modelindex import TYPE_NAMES

JsonObject = dict[str, Any]
API_VERSION = "1.0.0"
SEED_TYPES = ("checkpoints", "text_encoders", "vae", "loras")
"""The type folders the seed always shows (with a count of 0 when empty)."""


MAX_PER_PAGE = 1000


def paginate(
    rows: list[JsonObject], page: int | None, per_page: int | None
) -> tuple[list[JsonObject], JsonObject]:
    """The companion guide's optional paging (``page`` from 1, ``per_page``, 20 by default): the rows of
    that page and the guide's ``page`` / ``per_page`` / ``has_next`` / ``has_prev``. Without either
    parameter every row is answered and nothing is added (the seed's lists have no paging)."""
    if page is None and per_page is None:
        return rows, {}
    number, size = page or 1, per_page or 20
    start = (number - 1) * size
    fields = {"page": number, "per_page": size, "has_next": start + size < len(rows), "has_prev": number > 1}
    return rows[start : start + size], fields


PAGE = Query(default=None, ge=1, description="Page number (the guide's optional paging).")
PER_PAGE = Query(default=None, ge=1, le=MAX_PER_PAGE, description="Rows a page (20 when only page is given).")


class DeleteModelsRequest(BaseModel):
    """DELETE /api/models's body."""

    model_config = ConfigDict(extra="ignore")
    paths: list[str] = Field(min_length=1, max_length=1000)

    @field_validator("paths")
    @classmethod
    def unicode_only(cls, paths: list[str]) -> list[str]:
        """A path with a lone surrogate escape names no file, and the answer (which lists the paths it
        did not delete) could not be encoded: refused before anything is deleted."""
        if has_lone_surrogate(paths):
            raise ValueError("a path holds a lone surrogate escape (no Unicode character)")
        return paths


class InstallRequest(BaseModel):
    """POST /api/presets/{id}/install's body (all optional)."""

    model_config = ConfigDict(extra="ignore")
    force: bool = False
    priority: Literal["low", "normal", "high"] = "normal"


def create_router(board: Dashboard) -> APIRouter:
    router = APIRouter()
    ctx = board.ctx

    # -- health and system ------------------------------------------------------------------------

    @router.get("/health")
    @router.get("/api/health")
    async def health() -> JsonObject:
        """CD-01 (and the ``/api/health`` alias a client joining the base URL asks for); ``service`` is
        the companion guide's."""
        return {
            "status": "healthy",
            "service": "comfyui-dashboard",
            "version": API_VERSION,
            "timestamp": now_iso(),
        }

    def disk() -> tuple[int, int]:
        try:
            usage = shutil.disk_usage(board.models_root)
        except OSError:
            return 0, 0
        return usage.used, usage.total

    @router.get("/api/system/status")
    async def system_status() -> JsonObject:
        """CD-02: the gateway, ComfyUI's ServiceInstance, the operator's pulls as preset manager; the
        node's figures from its agents (``resources``)."""
        figures = await board.resources()
        return {
            "status": "running",
            "uptime": int(time.monotonic() - board.started),
            "services": {
                "dashboard": "running",
                "comfyui": board.comfyui_state(),
                "preset_manager": "running" if ctx.cache.synced else "starting",
            },
            "resources": {
                "cpu_percent": figures.cpu_percent,
                "memory_percent": figures.memory_percent,
                "gpu_percent": figures.gpu_percent,
                "disk_used_gb": cat.gb(figures.disk_used),
                "disk_total_gb": cat.gb(figures.disk_total),
            },
        }

    @router.get("/api/system/storage")
    async def system_storage() -> JsonObject:
        """CD-03: the models volume's usage and its model files by type."""
        used, total = await asyncio.to_thread(disk)
        files = await board.files()
        by_type: dict[str, int] = dict.fromkeys(SEED_TYPES, 0)
        for item in files.values():
            by_type[item.type] = by_type.get(item.type, 0) + 1
        return {
            "workspace": {
                "path": str(board.models_root),
                "used_gb": cat.gb(used),
                "total_gb": cat.gb(total),
                "available_gb": cat.gb(total - used),
                "usage_percent": round(used * 100 / total, 1) if total else 0.0,
            },
            "models": {
                "count": len(files),
                "total_size_gb": cat.gb(sum(item.size for item in files.values())),
                "by_type": by_type,
            },
        }

    # -- presets ----------------------------------------------------------------------------------

    def preset_row(preset: cat.Preset, installed: bool) -> JsonObject:
        return {
            "id": preset.id,
            "name": preset.name,
            "category": preset.category,
            "type": preset.type,
            "description": preset.description,
            "download_size": cat.format_size(preset.size_bytes),
            "installed": installed,
            "use_case": preset.use_case,
            "tags": list(preset.tags),
        }

    @router.get("/api/presets")
    async def list_presets(
        category: str | None = None,
        type: str | None = None,  # the seed's query parameter name
        installed: bool | None = None,
        search: str | None = None,
        page: int | None = PAGE,
        per_page: int | None = PER_PAGE,
    ) -> JsonObject:
        """CD-04: the catalog with what is installed, filtered; ``total`` counts the whole catalog,
        ``filtered`` the matches (all pages)."""
        catalog = await board.catalog()
        files = await board.files()
        rows = []
        for preset in catalog.presets:
            done = board.installed(preset, files)
            if category is not None and preset.category != category:
                continue
            if type is not None and preset.type != type:
                continue
            if installed is not None and done != installed:
                continue
            if search is not None and not preset.matches(search):
                continue
            rows.append(preset_row(preset, done))
        shown, paging = paginate(rows, page, per_page)
        return {
            "presets": shown,
            "total": len(catalog.presets),
            "filtered": len(rows),
            "categories": catalog.categories(),
            **paging,
        }

    @router.get("/api/presets/{preset_id}/status")
    async def preset_status(preset_id: str) -> JsonObject:
        """CD-08: the install's state and progress."""
        preset = await board.preset(preset_id)
        files = await board.files()
        return dl.preset_status(preset, board.pull(preset.id), installed=board.installed(preset, files))

    @router.get("/api/presets/{preset_id}")
    async def preset_detail(preset_id: str) -> JsonObject:
        """CD-05: the preset with its files (each installed or not) and install date."""
        preset = await board.preset(preset_id)
        files = await board.files()
        pull = board.pull(preset.id)
        done = board.installed(preset, files)
        return {
            **preset_row(preset, done),
            "install_date": dl.install_date(pull) if done else None,
            "files": [
                {
                    "path": item.path,
                    "url": item.url,
                    "size": cat.format_size(item.size_bytes),
                    "installed": item.path in files,
                }
                for item in preset.files
            ],
            "dependencies": list(preset.dependencies),
            "workflows": list(preset.workflows),
        }

    @router.post("/api/presets/{preset_id}/install")
    async def install_preset(preset_id: str, body: InstallRequest | None = None) -> JsonObject:
        """CD-06: one ModelPull with every file of the preset."""
        request = body or InstallRequest()
        return await board.install(preset_id, force=request.force, priority=request.priority)

    @router.delete("/api/presets/{preset_id}")
    async def uninstall_preset(preset_id: str) -> JsonObject:
        """CD-07: delete the preset's ModelPull (its finalizer removes the files) and what is left."""
        return await board.uninstall(preset_id)

    # -- downloads --------------------------------------------------------------------------------

    @router.get("/api/downloads")
    async def list_downloads() -> JsonObject:
        """CD-21: unfinished downloads and those finished recently; ``active`` = downloading now."""
        pulls = board.recent(board.pulls(), time.time())
        rows = [dl.download_row(pull) for pull in pulls]
        return {
            "downloads": rows,
            "active": sum(1 for row in rows if row["status"] == "downloading"),
            "total": len(rows),
        }

    async def set_paused(download_id: str, paused: bool) -> JsonObject:
        pull = board.by_download_id(download_id)
        if dl.phase(pull) not in dl.ACTIVE:
            raise api_error(
                409,
                "DOWNLOAD_NOT_ACTIVE",
                f"Download {download_id} is {dl.DOWNLOAD_STATUS.get(dl.phase(pull), 'finished')}",
                {"download_id": download_id},
            )
        await ctx.store.patch(MODEL_PULLS, dl.meta(pull)["name"], {"spec": {"paused": paused}})
        return {"status": "paused" if paused else "downloading", "download_id": download_id}

    @router.post("/api/downloads/{download_id}/pause")
    async def pause_download(download_id: str) -> JsonObject:
        """CD-22: ``spec.paused`` on the ModelPull (partial files are kept for resume)."""
        return await set_paused(download_id, True)

    @router.post("/api/downloads/{download_id}/resume")
    async def resume_download(download_id: str) -> JsonObject:
        """CD-23."""
        return await set_paused(download_id, False)

    @router.delete("/api/downloads/{download_id}")
    async def cancel_download(download_id: str) -> JsonObject:
        """CD-24: ``spec.cancel`` on the ModelPull (kept until deleted, so the id still resolves)."""
        pull = board.by_download_id(download_id)
        if dl.phase(pull) not in dl.ACTIVE and dl.phase(pull) != "Cancelled":
            raise api_error(
                409,
                "DOWNLOAD_NOT_ACTIVE",
                f"Download {download_id} is {dl.DOWNLOAD_STATUS.get(dl.phase(pull), 'finished')}",
                {"download_id": download_id},
            )
        await ctx.store.patch(MODEL_PULLS, dl.meta(pull)["name"], {"spec": {"cancel": True}})
        return {"status": "cancelled", "download_id": download_id, "files_removed": True}

    # -- models -----------------------------------------------------------------------------------

    @router.get("/api/models/types")
    async def model_types() -> JsonObject:
        """CD-11: the type folders with their file counts (the seed's four always listed)."""
        counts: dict[str, int] = dict.fromkeys(SEED_TYPES, 0)
        for item in (await board.files()).values():
            counts[item.type] = counts.get(item.type, 0) + 1
        return {
            "types": [
                {"id": name, "name": TYPE_NAMES.get(name, name), "count": count}
                for name, count in counts.items()
            ]
        }

    @router.delete("/api/models")
    async def delete_models(body: DeleteModelsRequest) -> JsonObject:
        """CD-10: per-path failures go into ``errors`` (``MODEL_NOT_FOUND``, ``MODEL_IN_USE``); 404
        ``MODEL_NOT_FOUND`` when no path names a model file."""
        return await board.delete_models(body.paths)

    @router.get("/api/models")
    async def list_models(
        type: str | None = None,  # the seed's query parameter name
        search: str | None = Query(default=None, description="Search in the file name."),
        page: int | None = PAGE,
        per_page: int | None = PER_PAGE,
    ) -> JsonObject:
        """CD-09: the model files from the index; ``preset`` is the preset whose download lists it;
        ``total`` and ``total_size_gb`` cover every match (all pages)."""
        owners = board.owners()
        catalog = await board.catalog()
        for preset in catalog.presets:
            for listed in preset.files:
                owners.setdefault(listed.path, preset.id)
        rows: list[JsonObject] = []
        total_bytes = 0
        needle = (search or "").strip().lower()
        for item in (await board.files()).values():
            if type is not None and item.type != type:
                continue
            if needle and needle not in item.path.rsplit("/", 1)[-1].lower():
                continue
            total_bytes += item.size
            rows.append(
                {
                    "path": item.path,
                    "type": item.type,
                    "size_gb": cat.gb(item.size),
                    "modified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.mtime)),
                    "preset": owners.get(item.path),
                    "size_bytes": item.size,
                }
            )
        shown, paging = paginate(rows, page, per_page)
        return {"models": shown, "total": len(rows), "total_size_gb": cat.gb(total_bytes), **paging}

    return router
