"""The preset catalog: parsed from a ConfigMap (Helm values rendered as YAML or JSON), pure.

A preset is a bundle of model files (path under the models volume, URL, size, optional sha256)
plus the workflows it serves. The catalog's shape (key ``presets``, a list)::

    presets:
      - id: SD15_BASE
        name: Stable Diffusion 1.5
        category: Image Generation
        type: image
        description: ...
        use_case: ...
        tags: [sd15, t2i]
        dependencies: []
        workflows: [sd15_t2i_basic.json]
        files:
          - {path: checkpoints/v1-5-pruned-emaonly.safetensors, url: https://..., size_bytes: 4265146304}

Entries that are malformed are skipped and reported in ``Catalog.problems`` (one bad entry never
hides the others). Sizes are rendered as the seed writes them: ``"14.5GB"`` strings.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import yaml

CATEGORIES = ("Video Generation", "Image Generation", "Audio Generation")
"""The seed's categories, listed in ``categories`` even when no preset uses one."""


@dataclass(frozen=True)
class PresetFile:
    """One file of a preset: ``path`` is relative to the models volume (``checkpoints/x.safetensors``)."""

    path: str
    url: str
    size_bytes: int = -1
    sha256: str | None = None

    @property
    def folder(self) -> str:
        """The type folder (first path segment)."""
        return self.path.split("/", 1)[0]


@dataclass(frozen=True)
class Preset:
    id: str
    name: str
    category: str
    type: str
    description: str = ""
    use_case: str = ""
    tags: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    files: tuple[PresetFile, ...] = ()

    @property
    def size_bytes(self) -> int:
        return sum(max(f.size_bytes, 0) for f in self.files)

    def matches(self, search: str) -> bool:
        """The seed's ``search``: a case-insensitive substring of name, description or a tag."""
        needle = search.strip().lower()
        haystack = [self.name, self.description, *self.tags]
        return not needle or any(needle in text.lower() for text in haystack)


@dataclass(frozen=True)
class Catalog:
    presets: tuple[Preset, ...]
    problems: tuple[str, ...] = field(default=())

    def get(self, preset_id: str) -> Preset | None:
        return next((p for p in self.presets if p.id == preset_id), None)

    def categories(self) -> list[str]:
        """The seed's three categories, then any other the catalog uses, in order of appearance."""
        seen = list(CATEGORIES)
        for preset in self.presets:
            if preset.category and preset.category not in seen:
                seen.append(preset.category)
        return seen


def safe_model_path(path: str) -> str | None:
    """``path`` normalised when it is a relative path inside the models volume with a type folder
    and a file name (no ``..``, no absolute path, no hidden segment), else None."""
    if not path or path.startswith("/") or "\\" in path:
        return None
    normal = posixpath.normpath(path)
    parts = normal.split("/")
    if len(parts) < 2 or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    return normal


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def _file(raw: Any) -> PresetFile:
    if not isinstance(raw, dict):
        raise ValueError("a file must be a mapping")
    path = safe_model_path(str(raw.get("path") or ""))
    if path is None:
        raise ValueError(f"file path {raw.get('path')!r} is not a relative path under a type folder")
    url = str(raw.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"file {path}: url must be http(s)")
    size = raw.get("size_bytes", -1)
    sha = raw.get("sha256")
    return PresetFile(path=path, url=url, size_bytes=int(size), sha256=str(sha).lower() if sha else None)


def _preset(raw: Any) -> Preset:
    if not isinstance(raw, dict) or not raw.get("id"):
        raise ValueError("a preset needs an id")
    files = tuple(_file(item) for item in raw.get("files") or [])
    if len({f.path for f in files}) != len(files):
        raise ValueError("two files have the same path")
    return Preset(
        id=str(raw["id"]),
        name=str(raw.get("name") or raw["id"]),
        category=str(raw.get("category") or ""),
        type=str(raw.get("type") or ""),
        description=str(raw.get("description") or ""),
        use_case=str(raw.get("use_case") or ""),
        tags=_strings(raw.get("tags")),
        dependencies=_strings(raw.get("dependencies")),
        workflows=_strings(raw.get("workflows")),
        files=files,
    )


def parse_catalog(text: str) -> Catalog:
    """The catalog in ``text`` (YAML or JSON); an unreadable document is an empty catalog with a problem."""
    try:
        document = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        return Catalog((), (f"unreadable catalog: {error}",))
    raw = document.get("presets") if isinstance(document, dict) else document
    presets: list[Preset] = []
    problems: list[str] = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            preset = _preset(item)
        except (ValueError, TypeError) as error:
            problems.append(f"preset #{index}: {error}")
            continue
        if any(p.id == preset.id for p in presets):
            problems.append(f"preset #{index}: duplicate id {preset.id}")
            continue
        presets.append(preset)
    return Catalog(tuple(presets), tuple(problems))


def format_size(size_bytes: int) -> str:
    """``"14.5GB"`` / ``"320MB"`` as the seed writes sizes (decimal units); ``"unknown"`` when not known."""
    if size_bytes < 0:
        return "unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size_bytes >= scale:
            value = size_bytes / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{size_bytes}B"


def gb(size_bytes: int) -> float:
    """Bytes as the seed's ``*_gb`` floats (decimal gigabytes, one decimal; two below 0.1 GB)."""
    value = max(size_bytes, 0) / 1e9
    return round(value, 1) if value >= 0.1 else round(value, 3)


def _hf(repo: str, name: str) -> str:
    return f"https://huggingface.co/{repo}/resolve/main/{name}"


DEFAULT_CATALOG: str = json.dumps(
    {
        "presets": [
            {
                "id": "SD15_BASE",
                "name": "Stable Diffusion 1.5",
                "category": "Image Generation",
                "type": "image",
                "description": "The Stable Diffusion 1.5 base checkpoint (EMA-only, pruned)",
                "use_case": "General text-to-image and image-to-image at 512px",
                "tags": ["sd15", "t2i", "text-to-image"],
                "workflows": ["sd15_t2i_basic.json"],
                "files": [
                    {
                        "path": "checkpoints/v1-5-pruned-emaonly.safetensors",
                        "url": _hf(
                            "stable-diffusion-v1-5/stable-diffusion-v1-5", "v1-5-pruned-emaonly.safetensors"
                        ),
                        "size_bytes": 4_265_146_304,
                    }
                ],
            },
            {
                "id": "SDXL_BASE_REFINER",
                "name": "SDXL 1.0 Base + Refiner",
                "category": "Image Generation",
                "type": "image",
                "description": "Stable Diffusion XL 1.0 base and refiner checkpoints",
                "use_case": "High-resolution text-to-image at 1024px",
                "tags": ["sdxl", "t2i", "text-to-image", "refiner"],
                "workflows": ["sdxl_t2i_basic.json"],
                "files": [
                    {
                        "path": "checkpoints/sd_xl_base_1.0.safetensors",
                        "url": _hf("stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors"),
                        "size_bytes": 6_938_078_334,
                    },
                    {
                        "path": "checkpoints/sd_xl_refiner_1.0.safetensors",
                        "url": _hf(
                            "stabilityai/stable-diffusion-xl-refiner-1.0", "sd_xl_refiner_1.0.safetensors"
                        ),
                        "size_bytes": 6_075_981_930,
                    },
                ],
            },
            {
                "id": "UPSCALE_REALESRGAN_X4",
                "name": "RealESRGAN x4 Upscaler",
                "category": "Image Generation",
                "type": "image",
                "description": "RealESRGAN x4plus upscale model",
                "use_case": "4x image upscaling after generation",
                "tags": ["upscale", "esrgan"],
                "workflows": [],
                "files": [
                    {
                        "path": "upscale_models/RealESRGAN_x4plus.pth",
                        "url": "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
                        "size_bytes": 67_040_989,
                    }
                ],
            },
        ]
    }
)
"""Served when the catalog ConfigMap does not exist. Only presets whose files share one type folder:
a ModelPull has one destination folder (see the package docstring)."""
