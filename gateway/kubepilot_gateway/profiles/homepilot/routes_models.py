"""HomePilot's model and preset reads answered here: ``/v1/edit-models``, ``/v1/edit-models/preference``,
``/image-presets``, ``/video-presets`` and ``/models/health``.

- ``GET /v1/edit-models`` is HomePilot's ``get_edit_models_status`` shape (``upscale``:
  ``installed``, ``available`` [``id``, ``name``, ``description``, ``filename``, ``installed``,
  ``is_default``], ``selected``, ``default``; ``enhance.photo|restore|faces``) over HomePilot's own
  model registry (4x-UltraSharp, RealESRGAN x4+, RealESRGAN General v3, SwinIR 4x; GFPGAN v1.4,
  CodeFormer) plus every other upscaler file installed in ``upscale_models/`` and every name the
  operator configures. ``installed`` is read from the models volume. ``faces.comfyui_ready`` is
  always false, with the reason: the generator restores no faces.
- ``POST /v1/edit-models/preference?mode=&model_id=`` validates as HomePilot does (known model,
  mode's category, installed) and answers ``{"success", "mode", "model"}`` or ``{"success": false,
  "error"}``. HomePilot keeps preferences in process memory; here they are the ConfigMap
  ``homepilot-edit-model-preferences`` (shared by every gateway replica), and ``/v1/upscale`` and
  ``/v1/enhance`` use the preferred upscaler when a request names none.
- ``GET /image-presets`` and ``/video-presets`` follow HomePilot's handlers over preset tables of
  the same structure (``presets.<name>.base_values|base``, ``model_overrides``, ``ui``;
  ``aspect_ratios``; ``model_rules``). HomePilot's tables are data files of its own; ours are
  kubepilot's (``DEFAULT_IMAGE_PRESETS``, ``DEFAULT_VIDEO_PRESETS``) unless ``presets.image`` /
  ``presets.video`` are configured. ``preset_resolutions`` is computed from the tables (HomePilot
  asks its per-checkpoint model config). An unknown preset is HomePilot's 400 ``invalid_preset``.
- ``GET /models/health``: HomePilot HEAD-requests every catalog download URL. The gateway does not
  reach download hosts (ModelPull workers do), so each entry is reported from the models volume:
  ``healthy`` when it is installed, else ``unchecked`` with the reason; ``summary`` counts both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, AlreadyExists, Conflict, NotFound
from kubepilot_gateway.profiles.homepilot import catalog
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME, HomePilotSettings

JsonObject = dict[str, Any]
PREFERENCES_CONFIGMAP = "homepilot-edit-model-preferences"
FACES_NOT_READY = f"Face restoration {catalog.NOT_IN_GENERATOR}"

UPSCALE_REGISTRY: tuple[JsonObject, ...] = (
    {
        "id": "4x-UltraSharp",
        "name": "4x UltraSharp",
        "filename": "4x-UltraSharp.pth",
        "description": "High-quality upscaling with sharp details",
        "is_default": True,
    },
    {
        "id": "RealESRGAN_x4plus",
        "name": "RealESRGAN x4+",
        "filename": "RealESRGAN_x4plus.pth",
        "description": "Photo enhancement with natural texture recovery",
        "is_default": False,
    },
    {
        "id": "realesr-general-x4v3",
        "name": "RealESRGAN General v3",
        "filename": "realesr-general-x4v3.pth",
        "description": "General purpose upscaling",
        "is_default": False,
    },
    {
        "id": "SwinIR_4x",
        "name": "SwinIR 4x",
        "filename": "SwinIR_4x.pth",
        "description": "Artifact removal and restoration",
        "is_default": False,
    },
)
FACE_REGISTRY: tuple[JsonObject, ...] = (
    {
        "id": "GFPGANv1.4",
        "name": "GFPGAN v1.4",
        "filename": "gfpgan/GFPGANv1.4.pth",
        "description": "Face restoration and enhancement",
        "is_default": True,
    },
    {
        "id": "codeformer",
        "name": "CodeFormer",
        "filename": "codeformer/codeformer.pth",
        "description": "AI face restoration with fidelity control",
        "is_default": False,
    },
)
DEFAULT_PREFERENCES = {
    "upscale": "4x-UltraSharp",
    "photo": "4x-UltraSharp",
    "restore": "4x-UltraSharp",
    "faces": "GFPGANv1.4",
}
UPSCALE_MODES = ("upscale", "photo", "restore")


def _ratio(label: str, models: list[str], dims: dict[str, tuple[int, int]]) -> JsonObject:
    return {
        "ui_label": label,
        "compatible_models": models,
        "dimensions": {key: {"width": w, "height": h} for key, (w, h) in dims.items()},
    }


IMAGE_ARCHS = ["sd15", "sdxl", "flux_schnell", "flux_dev"]
DEFAULT_IMAGE_PRESETS: JsonObject = {
    "presets": {
        "low": {
            "base_values": {"steps": 15, "cfg": 6.0},
            "ui": {"label": "Low", "description": "Fast drafts"},
            "model_overrides": {
                "flux_schnell": {"steps": 4, "cfg": 1.0},
                "flux_dev": {"steps": 15, "cfg": 3.5},
            },
        },
        "med": {
            "base_values": {"steps": 25, "cfg": 7.0},
            "ui": {"label": "Medium", "description": "Balanced"},
            "model_overrides": {
                "sdxl": {"cfg": 5.5},
                "flux_schnell": {"steps": 4, "cfg": 1.0},
                "flux_dev": {"steps": 20, "cfg": 3.5},
            },
        },
        "high": {
            "base_values": {"steps": 35, "cfg": 7.0},
            "ui": {"label": "High", "description": "Detailed"},
            "model_overrides": {
                "sdxl": {"cfg": 6.0},
                "flux_schnell": {"steps": 6, "cfg": 1.0},
                "flux_dev": {"steps": 28, "cfg": 3.5},
            },
        },
        "ultra": {
            "base_values": {"steps": 50, "cfg": 7.0},
            "ui": {"label": "Ultra", "description": "Slowest, best"},
            "model_overrides": {
                "sdxl": {"cfg": 6.0},
                "flux_schnell": {"steps": 8, "cfg": 1.0},
                "flux_dev": {"steps": 35, "cfg": 3.5},
            },
        },
    },
    "aspect_ratios": {
        "1:1": _ratio(
            "Square",
            IMAGE_ARCHS,
            {
                "sd15": (512, 512),
                "sdxl": (1024, 1024),
                "flux_schnell": (1024, 1024),
                "flux_dev": (1024, 1024),
            },
        ),
        "4:3": _ratio(
            "Landscape 4:3",
            IMAGE_ARCHS,
            {"sd15": (640, 480), "sdxl": (1152, 896), "flux_schnell": (1152, 896), "flux_dev": (1152, 896)},
        ),
        "3:4": _ratio(
            "Portrait 3:4",
            IMAGE_ARCHS,
            {"sd15": (480, 640), "sdxl": (896, 1152), "flux_schnell": (896, 1152), "flux_dev": (896, 1152)},
        ),
        "16:9": _ratio(
            "Wide 16:9",
            IMAGE_ARCHS,
            {"sd15": (768, 432), "sdxl": (1216, 832), "flux_schnell": (1216, 832), "flux_dev": (1216, 832)},
        ),
        "9:16": _ratio(
            "Tall 9:16",
            IMAGE_ARCHS,
            {"sd15": (432, 768), "sdxl": (832, 1216), "flux_schnell": (832, 1216), "flux_dev": (832, 1216)},
        ),
    },
    "model_rules": {
        "sd15": {"default_aspect_ratio": "1:1", "max_edge": 768},
        "sdxl": {"default_aspect_ratio": "1:1", "max_edge": 1536},
        "flux_schnell": {"default_aspect_ratio": "16:9", "max_edge": 1536},
        "flux_dev": {"default_aspect_ratio": "16:9", "max_edge": 1536},
    },
}
"""kubepilot's image presets, in the structure of HomePilot's ``image_presets.json``."""

VIDEO_ARCHS = ["svd", "wan-2.2", "seedream"]
DEFAULT_VIDEO_PRESETS: JsonObject = {
    "presets": {
        "low": {
            "base": {"seconds": 2, "fps": 8, "steps": 15, "cfg": 3.0, "denoise": 0.8},
            "ui": {"label": "Low"},
        },
        "medium": {
            "base": {"seconds": 4, "fps": 12, "steps": 20, "cfg": 3.5, "denoise": 0.85},
            "ui": {"label": "Medium"},
        },
        "high": {
            "base": {"seconds": 4, "fps": 24, "steps": 30, "cfg": 4.0, "denoise": 0.9},
            "ui": {"label": "High"},
        },
        "ultra": {
            "base": {"seconds": 6, "fps": 24, "steps": 40, "cfg": 4.5, "denoise": 0.9},
            "ui": {"label": "Ultra"},
        },
    },
    "aspect_ratios": {
        "16:9": _ratio(
            "Wide 16:9",
            VIDEO_ARCHS,
            {"low": (512, 288), "medium": (768, 432), "high": (1024, 576), "ultra": (1280, 720)},
        ),
        "9:16": _ratio(
            "Tall 9:16",
            VIDEO_ARCHS,
            {"low": (288, 512), "medium": (432, 768), "high": (576, 1024), "ultra": (720, 1280)},
        ),
        "1:1": _ratio(
            "Square",
            VIDEO_ARCHS,
            {"low": (384, 384), "medium": (512, 512), "high": (768, 768), "ultra": (1024, 1024)},
        ),
    },
    "model_rules": {"svd": {"default_aspect_ratio": "16:9"}},
}
"""kubepilot's video presets, in the structure of HomePilot's ``video_presets.json`` (no video
generation runs on kubepilot yet: the presets only inform HomePilot's UI)."""


def _safe_err(message: str, code: str) -> JsonObject:
    return {"ok": False, "code": code, "message": message}


def image_presets(
    data: JsonObject, model: str | None, preset: str | None, aspect_ratio: str | None
) -> JSONResponse:
    """HomePilot's ``/image-presets`` over ``data``."""
    presets = data.get("presets") or {}
    name = preset or "med"
    if name not in presets:
        message = f"Unknown preset: {name}. Valid presets: {', '.join(presets)}"
        return JSONResponse(_safe_err(message, "invalid_preset"), status_code=400)
    config = presets[name]
    arch = (model or "").lower()
    values = {
        **config.get("base_values", {}),
        **(config.get("model_overrides", {}).get(arch, {}) if arch else {}),
    }
    ratios = data.get("aspect_ratios") or {}
    if aspect_ratio and aspect_ratio in ratios:
        dims = ratios[aspect_ratio].get("dimensions", {}).get(arch or "sdxl", {})
        values.update({k: dims[k] for k in ("width", "height") if k in dims})
    rules = (data.get("model_rules") or {}).get(arch, {}) if arch else {}
    compatible = [
        {
            "id": rid,
            "label": r.get("ui_label", rid),
            "dimensions": r.get("dimensions", {}).get(arch or "sdxl", {}),
        }
        for rid, r in ratios.items()
        if not arch or arch in r.get("compatible_models", [])
    ]
    default_ratio = rules.get("default_aspect_ratio") or (compatible[0]["id"] if compatible else "1:1")
    resolutions = {
        c["id"]: dict.fromkeys(presets, c["dimensions"]) for c in compatible if model and c["dimensions"]
    }
    return JSONResponse(
        {
            "ok": True,
            "preset": name,
            "model": model,
            "aspect_ratio": aspect_ratio,
            "values": values,
            "model_rules": rules,
            "ui": config.get("ui", {}),
            "compatible_aspect_ratios": compatible,
            "default_aspect_ratio": default_ratio,
            "preset_resolutions": resolutions,
            "preset_ui": {p: c.get("ui", {}) for p, c in presets.items()},
            "available_presets": list(presets),
        }
    )


def video_presets(
    data: JsonObject, model: str | None, preset: str | None, aspect_ratio: str | None
) -> JSONResponse:
    """HomePilot's ``/video-presets`` over ``data``."""
    presets = data.get("presets") or {}
    name = {"med": "medium"}.get(preset or "", preset or "medium")
    if name not in presets:
        message = f"Unknown preset: {name}. Valid presets: {', '.join(presets)}"
        return JSONResponse(_safe_err(message, "invalid_preset"), status_code=400)
    config = presets[name]
    arch = (model or "").lower()
    values = {**config.get("base", {}), **(config.get("model_overrides", {}).get(arch, {}) if arch else {})}
    ratios = data.get("aspect_ratios") or {}
    chosen = ratios.get(aspect_ratio or "") or (ratios.get("16:9") if aspect_ratio else None)
    if chosen and (not arch or arch in chosen.get("compatible_models", []) or aspect_ratio not in ratios):
        dims = chosen.get("dimensions", {}).get(name, {})
        values.update({k: dims[k] for k in ("width", "height") if k in dims})
    rules = (data.get("model_rules") or {}).get(arch, {}) if arch else {}
    compatible = [
        {
            "id": rid,
            "label": r.get("ui_label", rid),
            "dimensions": r.get("dimensions", {}).get(name, {}),
            "all_dimensions": r.get("dimensions", {}),
        }
        for rid, r in ratios.items()
        if not arch or arch in r.get("compatible_models", [])
    ]
    default_ratio = rules.get("default_aspect_ratio") or (compatible[0]["id"] if compatible else "16:9")
    return JSONResponse(
        {
            "ok": True,
            "preset": name,
            "model": model,
            "aspect_ratio": aspect_ratio,
            "values": values,
            "model_rules": rules,
            "ui": config.get("ui", {}),
            "compatible_aspect_ratios": compatible,
            "default_aspect_ratio": default_ratio,
        }
    )


class Preferences:
    """The edit-model preferences ConfigMap (data ``preferences.json``)."""

    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.path = CONFIGMAPS.path(ctx.store.namespace, PREFERENCES_CONFIGMAP)

    async def read(self) -> tuple[dict[str, str], str | None]:
        try:
            found = await self.ctx.client.request("GET", self.path)
        except NotFound:
            return dict(DEFAULT_PREFERENCES), None
        try:
            stored = json.loads((found.get("data") or {}).get("preferences.json") or "{}")
        except ValueError:
            stored = {}
        merged = {**DEFAULT_PREFERENCES, **{k: str(v) for k, v in stored.items() if k in DEFAULT_PREFERENCES}}
        return merged, str(found["metadata"].get("resourceVersion") or "")

    async def set(self, mode: str, model_id: str) -> None:
        for _ in range(5):
            current, version = await self.read()
            current[mode] = model_id
            body: JsonObject = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": PREFERENCES_CONFIGMAP, "labels": {LABEL_PROFILE: PROFILE_NAME}},
                "data": {"preferences.json": json.dumps(current)},
            }
            try:
                if version is None:
                    await self.ctx.client.request(
                        "POST", CONFIGMAPS.path(self.ctx.store.namespace), body=body
                    )
                else:
                    body["metadata"]["resourceVersion"] = version
                    await self.ctx.client.request("PUT", self.path, body=body)
                return
            except (Conflict, AlreadyExists, NotFound):
                continue
        raise Conflict(409, "Conflict", "the edit-model preferences kept changing; try again")


def upscale_entries(models_root: Path, settings: HomePilotSettings) -> list[JsonObject]:
    """HomePilot's upscalers and ours: registry entries, then other installed files and configured names."""
    installed = catalog.scan_installed(models_root)
    names = catalog.upscaler_names(installed, settings.images.upscalers)
    entries: list[JsonObject] = []
    for known in UPSCALE_REGISTRY:
        present = catalog.match_upscaler(known["id"], installed.get("enhance", [])) is not None
        entries.append({**known, "installed": present})
    listed = {e["filename"] for e in entries}
    for name in names:
        if name in listed or catalog.match_upscaler(name, [e["filename"] for e in entries]):
            continue
        entries.append(
            {
                "id": Path(name).stem if name in installed.get("enhance", []) else name,
                "name": name,
                "filename": name,
                "description": "Installed on the models volume"
                if name in installed.get("enhance", [])
                else "Configured in the operator (upscalers)",
                "is_default": False,
                "installed": True,
            }
        )
    return entries


def create_router(ctx: GatewayContext, settings: HomePilotSettings) -> APIRouter:
    router = APIRouter()
    models_root = Path(ctx.settings.volumes.models)
    preferences = Preferences(ctx)

    @router.get("/v1/edit-models")
    async def get_edit_models() -> JsonObject:
        """Upscale and face models: installed, available, selected."""
        upscale = await asyncio.to_thread(upscale_entries, models_root, settings)
        faces = [
            {
                **face,
                "filename": Path(face["filename"]).name,
                "installed": (models_root / face["filename"]).is_file(),
            }
            for face in FACE_REGISTRY
        ]
        prefs, _ = await preferences.read()
        installed_ids = [e["id"] for e in upscale if e["installed"]]

        def enhance(mode: str) -> JsonObject:
            return {"installed": installed_ids, "available": upscale, "selected": prefs[mode]}

        return {
            "upscale": {
                "installed": installed_ids,
                "available": upscale,
                "selected": prefs["upscale"],
                "default": next(e["id"] for e in UPSCALE_REGISTRY if e["is_default"]),
            },
            "enhance": {
                "photo": enhance("photo"),
                "restore": enhance("restore"),
                "faces": {
                    "installed": [f["id"] for f in faces if f["installed"]],
                    "available": faces,
                    "selected": prefs["faces"],
                    "comfyui_ready": False,
                    "comfyui_status": FACES_NOT_READY,
                },
            },
        }

    @router.post("/v1/edit-models/preference")
    async def set_edit_model_preference(
        mode: str = Query(description='"upscale", "photo", "restore" or "faces"'),
        model_id: str = Query(description="The model id (e.g. 4x-UltraSharp)"),
    ) -> JsonObject:
        """Validate and store the preferred model of a mode."""
        if mode not in DEFAULT_PREFERENCES:
            return {"success": False, "error": f"Unknown mode: {mode}"}
        upscale = await asyncio.to_thread(upscale_entries, models_root, settings)
        entry = next((e for e in upscale if model_id in (e["id"], e["filename"])), None)
        face = next((f for f in FACE_REGISTRY if f["id"] == model_id), None)
        if entry is None and face is None:
            return {"success": False, "error": f"Unknown model: {model_id}"}
        if (mode == "faces") != (face is not None):
            return {"success": False, "error": f"Model {model_id} is not compatible with mode {mode}"}
        if face is not None:
            return {"success": False, "error": f"Model {face['name']} cannot be used: {FACES_NOT_READY}"}
        assert entry is not None
        if not entry["installed"]:
            return {
                "success": False,
                "error": f"Model {entry['name']} is not installed. Please install it first.",
            }
        await preferences.set(mode, entry["id"])
        return {"success": True, "mode": mode, "model": entry["id"]}

    @router.get("/image-presets")
    async def get_image_presets(
        model: str | None = Query(
            None, description="Image model architecture: sd15, sdxl, flux_schnell, flux_dev"
        ),
        preset: str | None = Query(None, description="Quality preset: low, med, high, ultra"),
        aspect_ratio: str | None = Query(None, description="Aspect ratio: 1:1, 4:3, 3:4, 16:9, 9:16"),
    ) -> JSONResponse:
        """Preset values for a model architecture, quality and aspect ratio."""
        data = (settings.presets or {}).get("image") or DEFAULT_IMAGE_PRESETS
        return image_presets(data, model, preset, aspect_ratio)

    @router.get("/video-presets")
    async def get_video_presets(
        model: str | None = Query(None, description="Video model: svd, wan-2.2, seedream"),
        preset: str | None = Query(None, description="Quality preset: low, medium, high, ultra"),
        aspect_ratio: str | None = Query(None, description="Aspect ratio: 16:9, 9:16, 1:1"),
    ) -> JSONResponse:
        """Video preset values (video generation itself is not on kubepilot yet)."""
        data = (settings.presets or {}).get("video") or DEFAULT_VIDEO_PRESETS
        return video_presets(data, model, preset, aspect_ratio)

    @router.get("/models/health")
    async def check_models_health(
        model_type: str | None = Query(None, description="Filter by model type: 'image', 'video', 'edit'"),
        provider: str | None = Query(None, description="Filter by provider: 'comfyui', 'civitai'"),
    ) -> JsonObject:
        """Each downloadable catalog entry, from the models volume (no download host is probed)."""
        source = settings.catalog if settings.catalog is not None else catalog.DEFAULT_CATALOG
        view = await asyncio.to_thread(catalog.catalog_view, source, models_root)
        results: list[JsonObject] = []
        for prov_name, types in (view.get("providers") or {}).items():
            if (provider and prov_name != provider) or not isinstance(types, dict):
                continue
            for type_name, entries in types.items():
                if (model_type and type_name != model_type) or not isinstance(entries, list):
                    continue
                for entry in entries:
                    if not isinstance(entry, dict) or not entry.get("download_url"):
                        continue
                    installed = bool(entry.get("installed"))
                    results.append(
                        {
                            "id": entry.get("id"),
                            "label": entry.get("label", entry.get("id")),
                            "provider": prov_name,
                            "type": type_name,
                            "url": entry["download_url"],
                            "size_gb": entry.get("size_gb"),
                            "status": "healthy" if installed else "unchecked",
                            "http_status": None,
                            "response_time_ms": 0,
                            "error": None
                            if installed
                            else "Not probed: the gateway does not reach download hosts; install it "
                            "(a ModelPull) to check the source",
                        }
                    )
        results.sort(key=lambda r: (r["status"] != "healthy", str(r["type"]), str(r["id"])))
        healthy = sum(1 for r in results if r["status"] == "healthy")
        return {
            "ok": True,
            "summary": {
                "total": len(results),
                "healthy": healthy,
                "unhealthy": 0,
                "timeout": 0,
                "error": 0,
                "unchecked": len(results) - healthy,
            },
            "results": results,
        }

    return router
