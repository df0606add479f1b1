"""HomePilot's ``/models/install`` and ``/models/delete`` as ModelPulls.

- ``provider: comfyui``: the catalog entry ``model_id`` (its ``download_url`` and
  ``install_path``) becomes a URL ModelPull into the type folder its ``install_path`` names;
  ``provider: civitai``: ``civitai_version_id`` becomes a Civitai ModelPull (``model_type`` picks
  the folder), authenticated with the stored Civitai key of ``/settings/api-keys`` when there is
  one (the request's ``civitai_api_key`` is not put in any object: it would outlive the call);
  ``provider: ollama`` is the application's LLM runtime: proxied.
- One ModelPull per model (deterministic name ``homepilot-<id>-<hash>``): a second install joins
  the running one; a failed or cancelled one is deleted and started again. Like HomePilot, the
  call answers when the install finished (``installWaitSeconds``; the pull goes on after that),
  following the event bus; a failure is HomePilot's 500 ``installation_failed``.
- Delete refuses a catalog entry marked ``protected`` (403), deletes the model's ModelPull (the
  operator's finalizer removes its files) and removes a file of that name still present in
  HomePilot's model folders; ``model_id`` must be a plain file name (no path reaches the
  filesystem from the client; no NUL, at most 255 bytes: 400 ``invalid_model_id``).
- ``civitai_version_id`` is ASCII digits naming a positive int64 (else 400 ``missing_version_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, AlreadyExists, NotFound, resource_for
from kubepilot_gateway.profiles.homepilot import catalog
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME, HomePilotSettings
from kubepilot_gateway.profiles.homepilot.generation import MAX_INT64, failure_of
from kubepilot_gateway.profiles.homepilot.proxy import AppProxy

JsonObject = dict[str, Any]
MODEL_PULLS = resource_for("ModelPull")
TERMINAL = frozenset({"Completed", "Failed", "Cancelled"})
TYPE_FOLDERS = frozenset(
    {
        "checkpoints",
        "diffusion_models",
        "loras",
        "vae",
        "text_encoders",
        "clip",
        "clip_vision",
        "controlnet",
        "upscale_models",
        "embeddings",
        "unet",
        "diffusers",
    }
)
CIVITAI_FOLDERS = {
    "image": "checkpoints",
    "video": "checkpoints",
    "edit": "checkpoints",
    "enhance": "upscale_models",
}
DELETE_FOLDERS = ("checkpoints", "unet", "clip", "vae", "controlnet", "upscale_models", "diffusion_models")
PLAIN_NAME = re.compile(r"^[^/\\]+$")


class ModelInstallRequest(BaseModel):
    """HomePilot's ``ModelInstallRequest``."""

    model_config = ConfigDict(protected_namespaces=())

    provider: str = Field(description="Provider (ollama, comfyui, civitai)")
    model_type: str = Field(description="Model type (chat, image, video, edit)")
    model_id: str = Field(description="Model ID to install")
    base_url: str | None = None
    civitai_version_id: str | None = None
    civitai_api_key: str | None = Field(default=None, description="Not used: the stored key is (see docs)")


class ModelDeleteRequest(BaseModel):
    """HomePilot's ``ModelDeleteRequest``."""

    model_config = ConfigDict(protected_namespaces=())

    provider: str = Field(description="Provider: 'comfyui' or 'ollama'")
    model_id: str = Field(description="Model filename / ID to delete")
    model_type: str | None = Field(default="image")


def _safe_err(message: str, code: str = "error") -> JsonObject:
    return {"ok": False, "code": code, "message": message}


def pull_name(provider: str, model_id: str) -> str:
    """A DNS-1123 name for the model's ModelPull, the same for every call."""
    digest = hashlib.sha256(f"{provider}/{model_id}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")[:40].strip("-") or "model"
    return f"homepilot-{slug}-{digest}"


def catalog_entry(source: JsonObject, provider: str, model_id: str) -> JsonObject | None:
    for entries in ((source.get("providers") or {}).get(provider) or {}).values():
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and entry.get("id") == model_id:
                return entry
    return None


def url_pull_spec(entry: JsonObject) -> JsonObject | None:
    """The ModelPull spec of a downloadable catalog entry (None when it is not one)."""
    url, model_id = str(entry.get("download_url") or ""), str(entry.get("id") or "")
    if not url.startswith(("http://", "https://")) or not _plain_file_name(model_id):
        return None
    folder, _, subdir = str(entry.get("install_path") or "").strip("/").partition("/")
    model_type = folder if folder in TYPE_FOLDERS else "other"
    return {
        "source": {"type": "URL", "urls": [{"url": url, "path": model_id}]},
        "destination": {"modelType": model_type, "subdir": subdir if model_type != "other" else folder},
        "displayName": str(entry.get("label") or model_id),
    }


def create_router(ctx: GatewayContext, settings: HomePilotSettings, proxy: AppProxy) -> APIRouter:
    router = APIRouter()
    namespace = ctx.store.namespace
    models_root = Path(ctx.settings.volumes.models)

    def source_catalog() -> JsonObject:
        return settings.catalog if settings.catalog is not None else catalog.DEFAULT_CATALOG

    async def civitai_key_ref() -> JsonObject | None:
        try:
            secret = await ctx.client.request("GET", SECRETS.path(namespace, settings.apiKeysSecret))
        except NotFound:
            return None
        if (secret.get("data") or {}).get("civitai"):
            return {"name": settings.apiKeysSecret, "key": "civitai"}
        return None

    async def start_pull(name: str, spec: JsonObject) -> JsonObject:
        """The model's ModelPull: the running or finished one, else a new one."""
        existing = ctx.cache.get(MODEL_PULLS, name, namespace)
        phase = str(((existing or {}).get("status") or {}).get("phase") or "")
        if existing is not None and phase in ("Failed", "Cancelled"):
            await ctx.store.delete(MODEL_PULLS, name, missing_ok=True)
            existing = None
        if existing is not None:
            return existing
        body = {
            "metadata": {"name": name, "labels": {LABEL_PROFILE: PROFILE_NAME}},
            "spec": {**spec, "category": "homepilot"},
        }
        try:
            return await ctx.store.create(MODEL_PULLS, body)
        except AlreadyExists:  # a concurrent install, or the old one still being removed
            current = ctx.cache.get(MODEL_PULLS, name, namespace)
            if current is None:
                raise
            return current

    async def wait_pull(name: str, seconds: float) -> JsonObject | None:
        deadline = time.monotonic() + seconds
        async with ctx.bus.subscribe(kinds=[MODEL_PULLS.kind], namespace=namespace) as events:
            while True:
                current = ctx.cache.get(MODEL_PULLS, name, namespace)
                phase = str(((current or {}).get("status") or {}).get("phase") or "")
                left = deadline - time.monotonic()
                if current is None or phase in TERMINAL or left <= 0:
                    return current
                with contextlib.suppress(TimeoutError, StopAsyncIteration):
                    await asyncio.wait_for(anext(events), timeout=min(left, 5.0))

    @router.post("/models/install")
    async def install_model(req: ModelInstallRequest, request: Request) -> Response:
        """A ModelPull for the model; answers when it finished."""
        if req.provider == "ollama":
            return await proxy.forward(request, "models/install", body=await request.body())
        if req.provider == "comfyui":
            entry = catalog_entry(source_catalog(), "comfyui", req.model_id)
            spec = url_pull_spec(entry) if entry is not None else None
            if spec is None:
                message = f"Model '{req.model_id}' is not a downloadable entry of the catalog"
                return JSONResponse(_safe_err(message, "unknown_model"), status_code=400)
        elif req.provider == "civitai":
            version = (req.civitai_version_id or "").strip()
            # ASCII digits only ("²" is a digit to str.isdigit, not to int), within a CR's int64.
            if not (version.isascii() and version.isdigit()) or not 1 <= int(version) <= MAX_INT64:
                return JSONResponse(
                    _safe_err("civitai_version_id required for Civitai provider", "missing_version_id"),
                    status_code=400,
                )
            folder = CIVITAI_FOLDERS.get(req.model_type, "checkpoints")
            spec = {
                "source": {"type": "Civitai", "civitai": {"versionId": int(version)}},
                "destination": {"modelType": folder},
                "displayName": req.model_id or f"civitai-{version}",
            }
            key = await civitai_key_ref()
            if key is not None:
                spec["credentialsSecretRef"] = key
        else:
            message = f"Unsupported provider: {req.provider}"
            return JSONResponse(_safe_err(message, "unsupported_provider"), status_code=400)
        name = pull_name(req.provider, req.model_id or str(req.civitai_version_id))
        await start_pull(name, spec)
        pull = await wait_pull(name, settings.installWaitSeconds)
        status = (pull or {}).get("status") or {}
        phase = str(status.get("phase") or "")
        if phase == "Completed":
            files = [str(f.get("path") or "") for f in status.get("files") or [] if isinstance(f, dict)]
            return JSONResponse(
                {
                    "ok": True,
                    "message": f"Successfully installed {req.model_id}",
                    "provider": req.provider,
                    "model_id": req.model_id,
                    "output": "\n".join([f"ModelPull {namespace}/{name} Completed", *files]),
                }
            )
        if phase in TERMINAL or pull is None:
            reason = failure_of(pull) if pull is not None else "the ModelPull was deleted"
            return JSONResponse(
                _safe_err(f"Installation failed: {reason}", "installation_failed"), status_code=500
            )
        message = (
            f"Installation timed out. Large models may take longer (ModelPull {namespace}/{name} "
            "goes on downloading)."
        )
        return JSONResponse(_safe_err(message, "timeout"), status_code=500)

    @router.post("/models/delete")
    async def delete_model(req: ModelDeleteRequest, request: Request) -> Response:
        """Remove a model: its ModelPull (and files), and a leftover file of that name."""
        if req.provider == "ollama":
            return await proxy.forward(request, "models/delete", body=await request.body())
        if req.provider != "comfyui":
            return JSONResponse(_safe_err("Only comfyui and ollama models can be deleted"), status_code=400)
        if not _plain_file_name(req.model_id):
            return JSONResponse(
                _safe_err("model_id must be a file name", "invalid_model_id"), status_code=400
            )
        entry = catalog_entry(source_catalog(), "comfyui", req.model_id) or {}
        if entry.get("protected"):
            message = f"Cannot delete '{req.model_id}': this is a protected default model."
            return JSONResponse(_safe_err(message, "protected_model"), status_code=403)
        name = pull_name("comfyui", req.model_id)
        had_pull = ctx.cache.get(MODEL_PULLS, name, namespace) is not None
        if had_pull:
            await ctx.store.delete(MODEL_PULLS, name, missing_ok=True)
        deleted = await asyncio.to_thread(_remove_files, models_root, req.model_id)
        if not deleted and not had_pull:
            return JSONResponse(_safe_err(f"Model file not found: {req.model_id}"), status_code=404)
        removed = deleted or [f"ModelPull {namespace}/{name}"]
        return JSONResponse({"ok": True, "message": f"Deleted: {', '.join(removed)}", "deleted": removed})

    return router


def _plain_file_name(name: str) -> bool:
    """A name that can only be one file's in a folder: no separator, no NUL, not ``.``/``..``, at
    most 255 bytes (the filesystem's limit: longer is ENAMETOOLONG, never a file)."""
    return (
        bool(PLAIN_NAME.match(name))
        and name not in (".", "..")
        and "\x00" not in name
        and len(name.encode("utf-8", "surrogatepass")) <= 255
    )


def _remove_files(models_root: Path, model_id: str) -> list[str]:
    """Remove ``<folder>/<model_id>`` from HomePilot's model folders; what was removed (relative)."""
    removed = []
    for folder in DELETE_FOLDERS:
        candidate = models_root / folder / model_id
        if candidate.is_file() and not candidate.is_symlink():
            size_mb = candidate.stat().st_size / (1024 * 1024)
            candidate.unlink()
            removed.append(f"{folder}/{model_id} ({size_mb:.0f} MB)")
    return removed
