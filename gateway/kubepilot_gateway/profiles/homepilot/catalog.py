"""Models and capabilities: what is installed on the models volume, the catalog, and which image
features the kubepilot generator can really run. Pure functions over a folder and settings.

- ``scan_installed`` lists model ids by HomePilot's model types (``image``, ``video``, ``edit``,
  ``enhance``, ``addons``), as HomePilot's ``GET /models?provider=comfyui`` does: single files in
  ``checkpoints/`` and ``unet/`` by file name (HomePilot's ids are file names), diffusers folders
  (``model_index.json``) by their path relative to the volume (what a GenerationJob's ``model``
  takes), upscalers in ``upscale_models/``. Nothing follows a symlink out of the volume.
- ``catalog_view`` is the catalog with an ``installed`` flag per entry (``install_path`` + ``id``).
- ``capabilities`` answers HomePilot's ``/v1/capabilities`` keys from what the generator does:
  it runs txt2img, img2img, inpaint, variation and upscale (with an upscaler: a name the operator
  configures, or a file in ``upscale_models/``, see ``upscaler_names``); face restoration and
  background removal are not implemented by it (removal needs a segmentation model); outpaint,
  ``/v1/edit`` inpaint and background replace are inpainting with a mask the profile builds
  (available with an installed image model); background blur is done by the gateway.
  Each unavailable feature says why instead of pretending.
"""

from __future__ import annotations

import copy
from pathlib import Path, PurePosixPath
from typing import Any

JsonObject = dict[str, Any]

IMAGE_FILE_SUFFIXES = frozenset({".safetensors", ".ckpt", ".gguf", ".sft"})
UPSCALER_SUFFIXES = frozenset({".pth", ".pt", ".safetensors"})
MODEL_TYPES = ("image", "video", "edit", "enhance", "addons")
MAX_ENTRIES = 5000
"""Directory entries one scan reads at most (a models volume is small in entries, large in bytes)."""

DEFAULT_CATALOG: JsonObject = {
    "version": "1.0.0",
    "last_updated": "2026-12-01",
    "providers": {
        "comfyui": {
            "image": [
                {
                    "id": "sd_xl_base_1.0.safetensors",
                    "label": "SDXL Base 1.0",
                    "recommended": True,
                    "description": "Stable Diffusion XL base model (1024px).",
                    "size_gb": 6.9,
                    "install_path": "checkpoints/",
                    "download_url": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/"
                    "resolve/main/sd_xl_base_1.0.safetensors",
                },
                {
                    "id": "v1-5-pruned-emaonly.safetensors",
                    "label": "Stable Diffusion 1.5",
                    "recommended": False,
                    "description": "Stable Diffusion 1.5 (512px), light enough for small GPUs.",
                    "size_gb": 4.3,
                    "install_path": "checkpoints/",
                    "download_url": "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/"
                    "resolve/main/v1-5-pruned-emaonly.safetensors",
                },
            ],
            "enhance": [
                {
                    "id": "RealESRGAN_x4plus.pth",
                    "label": "RealESRGAN x4plus",
                    "recommended": True,
                    "description": "General-purpose 4x upscaler.",
                    "size_gb": 0.07,
                    "install_path": "upscale_models/",
                    "download_url": "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/"
                    "RealESRGAN_x4plus.pth",
                },
            ],
        },
    },
}
"""The built-in catalog (kubepilot's own short list; HomePilot's own catalog file is its data)."""


def _files(folder: Path, suffixes: frozenset[str], budget: list[int]) -> list[str]:
    """Names of the regular files in ``folder`` (not through symlinks) with one of ``suffixes``."""
    names: list[str] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return names
    for entry in entries:
        budget[0] -= 1
        if budget[0] < 0:
            break
        if entry.suffix.lower() in suffixes and entry.is_file() and not entry.is_symlink():
            names.append(entry.name)
    return names


def _diffusers_folders(root: Path, budget: list[int]) -> list[str]:
    """``diffusers/<name>`` for every diffusers pipeline folder under ``root/diffusers`` (two levels)."""
    found: list[str] = []
    base = root / "diffusers"
    stack = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            entries = sorted(folder.iterdir(), reverse=True)
        except OSError:
            continue
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                return sorted(found)
            if not entry.is_dir() or entry.is_symlink():
                continue
            if (entry / "model_index.json").is_file():
                found.append(entry.relative_to(root).as_posix())
            elif depth < 1:
                stack.append((entry, depth + 1))
    return sorted(found)


def scan_installed(models_root: Path) -> dict[str, list[str]]:
    """Installed model ids by HomePilot model type (see the module docstring)."""
    budget = [MAX_ENTRIES]
    image = _files(models_root / "checkpoints", IMAGE_FILE_SUFFIXES, budget)
    image += _files(models_root / "unet", IMAGE_FILE_SUFFIXES, budget)
    image += _diffusers_folders(models_root, budget)
    enhance = _files(models_root / "upscale_models", UPSCALER_SUFFIXES, budget)
    return {"image": image, "video": [], "edit": [], "enhance": enhance, "addons": []}


def resolve_image_model(models_root: Path, requested: str | None, default: str) -> str | None:
    """The model a job runs, relative to the models volume, or None when none is installed.

    ``requested`` (HomePilot's ``imgModel``) is used when it names an installed image model, by
    file name or by relative path; names of HomePilot's own workflows (``sdxl``, ``flux-dev``, ...)
    that match nothing fall back to ``default``, then to the first installed image model.
    """
    installed = scan_installed(models_root)["image"]
    by_name: dict[str, str] = {}
    for folder in ("checkpoints", "unet"):
        for name in _files(models_root / folder, IMAGE_FILE_SUFFIXES, [MAX_ENTRIES]):
            by_name.setdefault(name, f"{folder}/{name}")
    for candidate in (requested or "", default):
        if not candidate:
            continue
        if candidate in by_name:
            return by_name[candidate]
        if candidate in installed and "/" in candidate:
            return candidate
    if default:
        return default  # configured explicitly: the operator reports it when it is missing
    if installed:
        first = installed[0]
        return by_name.get(first, first)
    return None


def catalog_view(catalog: JsonObject, models_root: Path) -> JsonObject:
    """HomePilot's ``/model-catalog`` body: the catalog with ``installed`` per downloadable entry."""
    providers = copy.deepcopy(catalog.get("providers") or {})
    for types in providers.values():
        if not isinstance(types, dict):
            continue
        for entries in types.values():
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict) or "install_path" not in entry or "id" not in entry:
                    continue
                relative = Path(str(entry["install_path"])) / str(entry["id"])
                safe = not relative.is_absolute() and ".." not in relative.parts
                target = models_root / relative
                entry["installed"] = bool(safe and target.exists() and not target.is_symlink())
    return {
        "ok": True,
        "version": catalog.get("version", "1.0.0"),
        "last_updated": catalog.get("last_updated", "unknown"),
        "providers": providers,
    }


NOT_IN_GENERATOR = "is not implemented by the kubepilot generator (no GenerationJob type for it yet)"
NOT_IN_GATEWAY = "is not implemented by the kubepilot gateway yet"
BACKGROUND_REMOVAL_UNAVAILABLE = (
    "Background removal is not available: it needs a segmentation model (U2-Net, SAM) and the "
    f"kubepilot generator has none; background removal {NOT_IN_GENERATOR}"
)
UPSCALE_MODEL_NAMES = ("4x UltraSharp", "RealESRGAN x4+", "RealESRGAN General v3", "SwinIR 4x")
"""HomePilot's upscaler names, quoted by the "install one of" message when none is installed."""


def upscaler_names(installed: dict[str, list[str]], configured: list[str]) -> list[str]:
    """The upscalers an upscale GenerationJob can name here, preferred first: the names the operator
    configured (``GeneratorConfig.upscalers``), then the files in ``upscale_models/`` (the generator
    resolves a bare file name there)."""
    names = list(configured)
    names += [name for name in installed.get("enhance", []) if name not in names]
    return names


def match_upscaler(requested: str, names: list[str]) -> str | None:
    """The upscaler ``requested`` names: exactly, or a file by its stem (HomePilot's model ids, as
    ``4x-UltraSharp`` for ``4x-UltraSharp.pth``); None when nothing matches."""
    if requested in names:
        return requested
    stem = PurePosixPath(requested).stem if "." in requested else requested
    for name in names:
        if PurePosixPath(name).stem == stem:
            return name
    return None


def no_upscaler_reason() -> str:
    return (
        "No upscale model installed. Please install one of: "
        + ", ".join(UPSCALE_MODEL_NAMES)
        + " (a file in upscale_models/ of the models volume, or an upscaler the operator configures)"
    )


def capabilities(
    installed: dict[str, list[str]], upscalers: list[str], image_model: str | None = None
) -> dict[str, JsonObject]:
    """HomePilot's capability map (``available``, ``reason``, ``endpoint``, ``model``,
    ``installed_models``) for what the generator can run here. ``upscalers`` are the names the
    operator configured; ``image_model`` is the model the inpainting features would use (None:
    none installed)."""
    upscale_models = installed.get("enhance", [])
    choices = upscaler_names(installed, upscalers)
    if choices:
        upscale_ok, upscale_reason, upscale_model = True, None, choices[0]
    else:
        upscale_ok, upscale_reason, upscale_model = False, no_upscaler_reason(), None
    no_model = None if image_model else "No image model is installed (this feature inpaints with one)"
    image_models = installed.get("image", [])

    def status(
        available: bool,
        reason: str | None,
        endpoint: str,
        model: str | None = None,
        models: list[str] | None = None,
    ) -> JsonObject:
        return {
            "available": available,
            "reason": reason,
            "endpoint": endpoint,
            "model": model,
            "installed_models": models,
        }

    return {
        "enhance_photo": status(upscale_ok, upscale_reason, "/v1/enhance", upscale_model, upscale_models),
        "enhance_restore": status(upscale_ok, upscale_reason, "/v1/enhance", upscale_model, upscale_models),
        "enhance_faces": status(False, f"Face restoration {NOT_IN_GENERATOR}", "/v1/enhance", None, []),
        "upscale": status(upscale_ok, upscale_reason, "/v1/upscale", upscale_model, upscale_models),
        "background_remove": status(False, BACKGROUND_REMOVAL_UNAVAILABLE, "/v1/background", None, []),
        "background_replace": status(
            image_model is not None, no_model, "/v1/background", image_model, image_models
        ),
        "background_blur": status(True, None, "/v1/background", "gaussian blur (no model)", []),
        "outpaint": status(image_model is not None, no_model, "/v1/outpaint", image_model, image_models),
        "inpaint": status(image_model is not None, no_model, "/v1/edit", image_model, image_models),
    }
