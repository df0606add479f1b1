"""HomePilot's core read endpoints, answered by the gateway: ``/health``, ``/health/detailed``,
``/models`` (image models; LLM listings go to the application) and ``/model-catalog``.

- ``/health`` is the gateway's liveness in HomePilot's shape (``ok``, ``service``, ``version``,
  ``providers``). HomePilot probes its LLM providers there; the gateway does not reach them, so
  ``providers`` is empty and ``kubepilot`` says what the gateway knows instead (cache synced,
  the application ServiceInstance's phase).
- ``/health/detailed`` reports the ServiceInstances HomePilot depends on (the application, and
  ``dependencyServices``: ComfyUI, the LLM runtime) from the cache, never by probing, with
  HomePilot's status rule turned to ours: 200 when the application is running, else 503.
- ``/models?provider=comfyui`` scans the models volume (``catalog.scan_installed``); every other
  provider is an LLM listing, which only the application knows: proxied (503 when it is down).
- ``/model-catalog`` is the configured catalog (``catalog`` setting, else the built-in one) with
  ``installed`` flags from the models volume.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.homepilot import catalog
from kubepilot_gateway.profiles.homepilot.config import HomePilotSettings
from kubepilot_gateway.profiles.homepilot.proxy import AppProxy
from kubepilot_gateway.upstream import ServiceEndpoint, service_endpoint

JsonObject = dict[str, Any]
SERVICE = "homepilot-backend"
LLM_PROVIDERS = frozenset({"openai_compat", "ollama", "openai", "claude", "watsonx"})


def _safe_err(message: str, code: str) -> JsonObject:
    """HomePilot's own error body for its handled failures."""
    return {"ok": False, "code": code, "message": message}


def _service_status(endpoint: ServiceEndpoint) -> JsonObject:
    if endpoint.usable:
        return {"ok": True, "url": endpoint.url, "status": "running", "service_instance": endpoint.name}
    return {"ok": False, "message": endpoint.describe(), "service_instance": endpoint.name}


def create_router(ctx: GatewayContext, settings: HomePilotSettings, proxy: AppProxy) -> APIRouter:
    router = APIRouter()
    models_root = Path(ctx.settings.volumes.models)

    @router.get("/health")
    async def health() -> JsonObject:
        """The gateway's liveness, in HomePilot's shape."""
        app = service_endpoint(ctx, settings.appService)
        return {
            "ok": True,
            "service": SERVICE,
            "version": settings.version,
            "providers": {},
            "kubepilot": {
                "cache_synced": ctx.cache.synced,
                "app_service": {"name": app.name, "phase": app.phase or None, "ready": app.ready},
            },
        }

    @router.get("/health/detailed")
    async def health_detailed() -> JSONResponse:
        """The ServiceInstances HomePilot needs; 503 while the application is not running."""
        app = service_endpoint(ctx, settings.appService)
        services: JsonObject = {
            "backend": {"ok": ctx.cache.synced, "service": SERVICE, "version": settings.version},
            "homepilot": _service_status(app),
        }
        for label, name in settings.dependencyServices.items():
            services[label] = _service_status(service_endpoint(ctx, name))
        ok = bool(ctx.cache.synced and app.usable)
        return JSONResponse(
            {"ok": ok, "services": services, "timestamp": uuid.uuid4().hex[:8]},
            status_code=200 if ok else 503,
        )

    @router.get("/models")
    async def list_models(
        request: Request,
        provider: str = Query("openai_compat", description="Provider to list models from"),
        base_url: str | None = Query(None, description="Override base URL for the provider"),
        model_type: str | None = Query(None, description="For ComfyUI: image, video, edit, enhance, addons"),
    ) -> Response:
        """Image models from the models volume; LLM providers' models from the application."""
        if provider != "comfyui":
            if provider not in LLM_PROVIDERS:
                return JSONResponse(
                    _safe_err(
                        f"Provider '{provider}' is not supported for model listing.", "unsupported_provider"
                    ),
                    status_code=400,
                )
            return await proxy.forward(request, "models")
        installed = await asyncio.to_thread(catalog.scan_installed, models_root)
        if model_type in catalog.MODEL_TYPES:
            models = installed[model_type]
        else:
            models = [name for kind in catalog.MODEL_TYPES for name in installed[kind]]
        return JSONResponse(
            {
                "ok": True,
                "provider": "comfyui",
                "model_type": model_type or "all",
                "models": models,
                "count": len(models),
                "message": f"Scanned filesystem - found {len(models)} installed models",
            }
        )

    @router.get("/model-catalog")
    async def model_catalog() -> JsonObject:
        """The catalog with what is installed."""
        source = settings.catalog if settings.catalog is not None else catalog.DEFAULT_CATALOG
        return await asyncio.to_thread(catalog.catalog_view, source, models_root)

    return router
