"""What the REST routes and the WebSocket share: the catalog, the model index, install and uninstall.

- The catalog ConfigMap is read through the API server (ConfigMaps are not cached) at most once
  per ``catalogCacheSeconds``; when it does not exist, :data:`~.catalog.DEFAULT_CATALOG` serves.
- A preset is installed when every one of its files is on the models volume (the index), whoever
  put it there; its ModelPull gives the install state and date.
- Waiting for the operator (a ModelPull's finalizer removing files) follows the event bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Invalid,
    NotFound,
    resource_for,
)
from kubepilot_gateway.kube.configdoc import ConfigMapDocument
from kubepilot_gateway.profiles.comfyui_docker import catalog as cat
from kubepilot_gateway.profiles.comfyui_docker import downloads as dl
from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
from kubepilot_gateway.profiles.comfyui_docker.errors import api_error
from kubepilot_gateway.profiles.comfyui_docker.modelindex import ModelFile, ModelIndex
from kubepilot_gateway.profiles.comfyui_docker.resources import Usage, read_usage
from kubepilot_gateway.profiles.controlpilot.telemetry import NodeAgents

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
MODEL_PULLS = resource_for("ModelPull")


class Dashboard:
    """The profile's state over one gateway context."""

    def __init__(self, ctx: GatewayContext, settings: ComfyUiDockerSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.namespace = ctx.store.namespace
        self.models_root = Path(ctx.settings.volumes.models)
        self.agents = NodeAgents(settings.nodeAgentUrls, settings.nodeAgentTimeoutSeconds)
        self.index = ModelIndex(self.models_root)
        self.started = time.monotonic()
        self._catalog = ConfigMapDocument(
            ctx.client,
            self.namespace,
            settings.catalogConfigMap,
            settings.catalogKey,
            ttl=settings.catalogCacheSeconds,
            parse=cat.parse_catalog,
            default_text=cat.DEFAULT_CATALOG,
            what="preset catalog",
        )

    # -- the catalog ------------------------------------------------------------------------------

    async def catalog(self) -> cat.Catalog:
        """The preset catalog ConfigMap, read at most once per ``catalogCacheSeconds``."""
        return await self._catalog.get()

    async def preset(self, preset_id: str) -> cat.Preset:
        preset = (await self.catalog()).get(preset_id)
        if preset is None:
            raise api_error(
                404, "PRESET_NOT_FOUND", f"Preset {preset_id} does not exist", {"preset_id": preset_id}
            )
        return preset

    # -- files and pulls --------------------------------------------------------------------------

    async def files(self) -> dict[str, ModelFile]:
        """The models volume's model files by path (the index, brought up to date)."""
        found = await asyncio.to_thread(self.index.files)
        return {item.path: item for item in found}

    def pull(self, preset_id: str) -> JsonObject | None:
        return self.ctx.cache.get(MODEL_PULLS, dl.pull_name(preset_id), self.namespace)

    def pulls(self) -> list[JsonObject]:
        """This profile's ModelPulls, oldest first."""
        found = self.ctx.cache.list(MODEL_PULLS, self.namespace, {LABEL_PROFILE: dl.PROFILE_NAME})
        return sorted(
            found, key=lambda p: (str(dl.meta(p).get("creationTimestamp") or ""), dl.meta(p)["name"])
        )

    def by_download_id(self, download_id: str) -> JsonObject:
        found = self.ctx.cache.list(MODEL_PULLS, self.namespace, {dl.LABEL_DOWNLOAD_ID: download_id})
        if not found or not download_id.startswith("dl_"):
            raise api_error(
                404,
                "DOWNLOAD_NOT_FOUND",
                f"Download {download_id} does not exist",
                {"download_id": download_id},
            )
        return found[0]

    @staticmethod
    def installed(preset: cat.Preset, files: dict[str, ModelFile]) -> bool:
        return bool(preset.files) and all(item.path in files for item in preset.files)

    def owners(self) -> dict[str, str]:
        """Model path → preset id, for the files a ModelPull of this profile lists."""
        owned: dict[str, str] = {}
        for pull in self.pulls():
            if dl.phase(pull) in ("Cancelled", "Removing"):
                continue
            for path in dl.listed_paths(pull):
                owned[path] = dl.preset_id(pull)
        return owned

    def holders(self) -> dict[str, set[str]]:
        """Model path → who holds it: every live ModelPull of the namespace (any profile), by its
        preset id or else its name, from its spec (URL files) and its status (every source)."""
        held: dict[str, set[str]] = {}
        for pull in self.ctx.cache.list(MODEL_PULLS, self.namespace):
            if dl.phase(pull) in ("Cancelled", "Removing"):
                continue
            owner = dl.preset_id(pull) or dl.meta(pull)["name"]
            paths = dl.listed_paths(pull)
            paths += [str(item.get("path") or "") for item in dl.status(pull).get("files") or []]
            for path in paths:
                held.setdefault(path, set()).add(owner)
        return held

    async def delete_models(self, paths: list[str]) -> JsonObject:
        """DELETE /api/models: each path normalised and contained in the models volume; a file held by
        the downloads of two or more presets is kept (``MODEL_IN_USE``); 404 ``MODEL_NOT_FOUND`` when
        none of the paths names a model file."""
        files = await self.files()
        holders = self.holders()
        deleted, freed, errors = 0, 0, []
        for raw in paths:
            path = cat.safe_model_path(raw)
            if path is None or path not in files:
                errors.append(
                    {"path": raw, "code": "MODEL_NOT_FOUND", "message": "Model file does not exist"}
                )
                continue
            owners = holders.get(path, set())
            if len(owners) > 1:
                errors.append(
                    {
                        "path": raw,
                        "code": "MODEL_IN_USE",
                        "message": f"Used by several presets: {', '.join(sorted(owners))}",
                    }
                )
                continue
            if await asyncio.to_thread(self._remove, [path]):
                deleted += 1
                freed += files[path].size
            else:
                errors.append(
                    {"path": raw, "code": "MODEL_NOT_FOUND", "message": "Model file does not exist"}
                )
        if not deleted and all(error["code"] == "MODEL_NOT_FOUND" for error in errors):
            # Nothing asked for exists: the guide's 404 (a partial failure stays a 200 with errors).
            raise api_error(404, "MODEL_NOT_FOUND", "Requested model file does not exist", {"errors": errors})
        return {"deleted": deleted, "space_freed_gb": cat.gb(freed), "errors": errors}

    # -- waiting on the bus -----------------------------------------------------------------------

    async def wait_gone(self, old: JsonObject, within: float) -> None:
        """Until ``old`` (by uid) is gone from the cache; TimeoutError after ``within`` seconds."""
        name = dl.meta(old)["name"]
        uid = dl.meta(old).get("uid")

        def gone() -> bool:
            current = self.ctx.cache.get(MODEL_PULLS, name, self.namespace)
            return current is None or dl.meta(current).get("uid") != uid

        async with self.ctx.bus.subscribe(kinds=[MODEL_PULLS.kind], namespace=self.namespace) as events:
            if gone():
                return
            async with asyncio.timeout(within):
                async for item in events:
                    # A Lagged marker may hide our event: look again whenever anything arrives.
                    if isinstance(item, ResourceEvent) and item.name != name:
                        continue
                    if gone():
                        return
        raise TimeoutError

    async def delete_pull(self, pull: JsonObject, policy: str) -> None:
        """Delete ``pull`` (if still that object) with ``deletePolicy`` ``policy``; wait until it is gone."""
        name = dl.meta(pull)["name"]
        if not dl.meta(pull).get("deletionTimestamp"):
            with contextlib.suppress(NotFound):
                if (pull.get("spec") or {}).get("deletePolicy") != policy:
                    await self.ctx.store.patch(MODEL_PULLS, name, {"spec": {"deletePolicy": policy}})
                options: JsonObject = {
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                }
                if dl.meta(pull).get("uid"):
                    options["preconditions"] = {"uid": dl.meta(pull)["uid"]}
                with contextlib.suppress(Conflict):
                    await self.ctx.client.request(
                        "DELETE", MODEL_PULLS.path(self.namespace, name), body=options
                    )
        try:
            await self.wait_gone(pull, self.settings.removalTimeoutSeconds)
        except TimeoutError:
            raise api_error(
                500,
                "REMOVAL_TIMEOUT",
                "Timed out waiting for the operator to remove the download",
                {"name": name},
            ) from None

    # -- install / uninstall ----------------------------------------------------------------------

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.models_root).free
        except OSError:
            return -1

    async def install(self, preset_id: str, *, force: bool = False, priority: str = "normal") -> JsonObject:
        """Start installing ``preset_id`` (the running install, if there is one): the seed's answer."""
        preset = await self.preset(preset_id)
        if priority not in dl.PRIORITIES:
            raise api_error(
                400, "INVALID_REQUEST", "priority must be low, normal or high", {"priority": priority}
            )
        unsupported = dl.unsupported_folders(preset)
        if unsupported or not preset.files:
            raise api_error(
                400,
                "INVALID_REQUEST",
                f"This preset's files are not under model type folders: {', '.join(unsupported)}"
                if unsupported
                else "This preset lists no files",
                {"preset_id": preset.id, "unsupported_folders": unsupported},
            )
        files = await self.files()
        pull = self.pull(preset.id)
        if pull is not None and not dl.meta(pull).get("deletionTimestamp") and dl.phase(pull) in dl.ACTIVE:
            return self.install_answer(preset, pull, files)
        if self.installed(preset, files) and not force:
            raise api_error(
                409,
                "PRESET_ALREADY_INSTALLED",
                f"Preset {preset.id} is already installed",
                {"preset_id": preset.id},
            )
        missing = sum(max(f.size_bytes, 0) for f in preset.files if force or f.path not in files)
        free = await asyncio.to_thread(self.free_bytes)
        if free >= 0 and missing + self.settings.storageReserveBytes > free:
            raise api_error(
                507,
                "INSUFFICIENT_STORAGE",
                "Not enough disk space for this preset",
                {"required_gb": cat.gb(missing), "available_gb": cat.gb(free)},
            )
        if pull is not None:
            # A finished (failed, cancelled, or completed then deleted) install: replace it, keeping
            # its files for the new one to verify and reuse.
            await self.delete_pull(pull, "Retain")
        body = dl.new_model_pull(preset, download_id=dl.new_download_id(), force=force, priority=priority)
        try:
            created = await self.ctx.store.create(MODEL_PULLS, body)
        except AlreadyExists:
            # A concurrent install won the race: its ModelPull is this install too.
            created = await self.ctx.store.get(MODEL_PULLS, dl.pull_name(preset.id))
        except (Invalid, BadRequest) as error:
            # The catalog entry makes a download the cluster refuses (a URL or path too long, a bad
            # checksum): the guide's 500 DOWNLOAD_FAILED, with the API server's reason.
            raise api_error(
                500,
                "DOWNLOAD_FAILED",
                f"The download of preset {preset.id} could not be started: {error}",
                {"preset_id": preset.id},
            ) from error
        return self.install_answer(preset, created, files)

    def install_answer(self, preset: cat.Preset, pull: JsonObject, files: dict[str, ModelFile]) -> JsonObject:
        missing = sum(max(f.size_bytes, 0) for f in preset.files if f.path not in files)
        return {
            "status": "installing",
            "preset_id": preset.id,
            "download_id": dl.download_id(pull),
            "estimated_time_seconds": round(missing / self.settings.assumedSpeedBytesPerSecond),
            "total_size_gb": cat.gb(preset.size_bytes),
        }

    async def uninstall(self, preset_id: str) -> JsonObject:
        """Remove the preset's files (not those another live ModelPull also lists: the operator's
        finalizer keeps them, and so does the sweep of what is left here)."""
        preset = await self.preset(preset_id)
        before = await self.files()
        present = {f.path: before[f.path].size for f in preset.files if f.path in before}
        pull = self.pull(preset.id)
        if pull is not None:
            await self.delete_pull(pull, "Delete")
        # Files another live ModelPull (another preset's, or any other of the namespace) lists stay.
        held = {path for path, owners in self.holders().items() if owners - {preset.id}}
        await asyncio.to_thread(self._remove, [p for p in present if p not in held])
        after = await self.files()
        removed = {path: size for path, size in present.items() if path not in after}
        return {
            "status": "uninstalled",
            "preset_id": preset.id,
            "files_removed": len(removed),
            "space_freed_gb": cat.gb(sum(removed.values())),
        }

    def _remove(self, paths: list[str]) -> int:
        """Unlink model files, each contained in the models volume (resolved, so no link leads out);
        how many were removed."""
        removed = 0
        root = self.models_root.resolve()
        for relative in paths:
            safe = cat.safe_model_path(relative)
            if safe is None:
                continue
            path = self.models_root / safe
            try:
                path.resolve().relative_to(root)
            except (ValueError, OSError):
                continue
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    def recent(self, pulls: list[JsonObject], now: float) -> list[JsonObject]:
        """Downloads to list: the unfinished ones and those finished within ``recentDownloadSeconds``."""
        kept = []
        for pull in pulls:
            if dl.phase(pull) == "Removing":
                continue
            done = dl.finished_at(pull) if dl.phase(pull) in dl.TERMINAL else None
            if done is not None and now - done.timestamp() > self.settings.recentDownloadSeconds:
                continue
            kept.append(pull)
        return kept

    async def resources(self) -> Usage:
        """The node's figures (``resources``: node agents, else this host)."""
        return await read_usage(self.agents, self.models_root)

    async def usage(self) -> JsonObject:
        """The WebSocket's ``system_status`` data: whole percents."""
        figures = await self.resources()
        return {
            "cpu_usage": figures.cpu_percent,
            "memory_usage": figures.memory_percent,
            "gpu_usage": figures.gpu_percent,
            "disk_usage": figures.disk_percent,
        }

    def comfyui_state(self) -> str:
        """The ComfyUI ServiceInstance's state as the dashboard names it."""
        for service in self.ctx.cache.list(resource_for("ServiceInstance"), self.namespace):
            if (service.get("spec") or {}).get("serviceType") == "comfyui":
                phase = str((service.get("status") or {}).get("phase") or "Pending")
                return {"Running": "running", "Error": "error", "Failed": "error"}.get(phase, phase.lower())
        return "stopped"
