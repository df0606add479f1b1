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

The product's own ``presets.yaml`` reads as well: ``presets`` a mapping of preset id to entry, and
file sizes as its ``size`` strings (``"4.8GB"``, ``"~1.5GB"``: :func:`parse_size`) instead of
``size_bytes``; its other keys (``download_size``, ``optional``, the top-level ``metadata`` and
``categories``) are ignored (the download size is the sum of the files').

Entries that are malformed are skipped and reported in ``Catalog.problems`` (one bad entry never
hides the others). Sizes are rendered as the seed writes them: ``"14.5GB"`` strings.
"""

from __future__ import annotations

import json
import posixpath
import re
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
    size = raw.get("size_bytes")
    if size is None:
        size = parse_size(raw.get("size"))
    sha = raw.get("sha256")
    return PresetFile(path=path, url=url, size_bytes=int(size), sha256=str(sha).lower() if sha else None)


SIZE_PATTERN = re.compile(r"^~?\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)\b", re.IGNORECASE)
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def parse_size(value: Any) -> int:
    """The product's size strings (``"4.8GB"``, ``"538MB"``, ``"~1.5GB"``, ``"9.31GB (9536MB)"``) in bytes,
    decimal units as :func:`format_size` writes them (so a size reads back as written); -1 when absent
    or unreadable. A ``~`` size is an estimate: the downloader takes sizes as hints only."""
    if isinstance(value, bool):
        return -1
    if isinstance(value, int | float):
        return int(value) if value >= 0 else -1
    match = SIZE_PATTERN.match(str(value or "").strip())
    if match is None:
        return -1
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).upper()])


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
    if isinstance(raw, dict):
        # The product's own presets.yaml: a mapping of preset id to entry.
        raw = [
            {**entry, "id": entry.get("id") or key} if isinstance(entry, dict) else entry
            for key, entry in raw.items()
        ]
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


def _product(
    preset_id: str,
    name: str,
    category: str,
    kind: str,
    description: str,
    use_case: str,
    tags: list[str],
    files: list[tuple[str, str, str]],
) -> dict[str, Any]:
    """One of the product's own presets (its presets.yaml): files as (path, url, size string)."""
    return {
        "id": preset_id,
        "name": name,
        "category": category,
        "type": kind,
        "description": description,
        "use_case": use_case,
        "tags": tags,
        "files": [{"path": path, "url": url, "size": size} for path, url, size in files],
    }


_T5XXL = (
    "text_encoders/t5xxl_fp16.safetensors",
    _hf("Comfy-Org/sd3-t5xxlfp16", "t5xxl_fp16.safetensors"),
    "4.9GB",
)
_SDXL_VAE = (
    "vae/sdxl_vae.safetensors",
    _hf("stabilityai/sdxl-vae-fp16-fix", "sdxl_vae_fp16_fix.safetensors"),
    "335MB",
)
_HUNYUAN = "Comfy-Org/HunyuanVideo_repackaged"
_WAN = "Wailicv/Wan2.2"

PRODUCT_PRESETS: list[dict[str, Any]] = [
    _product(
        "FLUX_SCHNELL_BASIC",
        "FLUX Schnell",
        "Image Generation",
        "image",
        "FLUX Schnell 12B parameter fast image generation model",
        "Fast, high-quality image generation",
        ["flux", "schnell", "fast", "image"],
        [
            (
                "diffusion_models/flux1-schnell.safetensors",
                _hf("black-forest-labs/FLUX.1-schnell", "flux1-schnell.safetensors"),
                "12GB",
            ),
            _T5XXL,
            ("vae/ae.safetensors", _hf("black-forest-labs/FLUX.1-schnell", "ae.safetensors"), "335MB"),
        ],
    ),
    _product(
        "SDXL_BASE_V1",
        "SDXL Base 1.0",
        "Image Generation",
        "image",
        "Stable Diffusion XL 1.0 base model",
        "Standard high-resolution image generation",
        ["sdxl", "stable", "base", "image"],
        [
            (
                "checkpoints/sd_xl_base_1.0.safetensors",
                _hf("stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors"),
                "6.9GB",
            ),
            _SDXL_VAE,
        ],
    ),
    _product(
        "HUNYUAN_T2V_720P",
        "Hunyuan T2V 720P",
        "Video Generation",
        "video",
        "Hunyuan text-to-video model optimized for 720p output from ComfyUI documentation",
        "High-resolution 720p text-to-video generation following official workflow",
        ["hunyuan", "t2v", "720p", "official", "workflow"],
        [
            (
                "diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors",
                _hf(_HUNYUAN, "split_files/diffusion_models/hunyuan_video_t2v_720p_bf16.safetensors"),
                "5.1GB",
            ),
            (
                "text_encoders/clip_l.safetensors",
                _hf(_HUNYUAN, "split_files/text_encoders/clip_l.safetensors"),
                "1.8GB",
            ),
            (
                "text_encoders/llava_llama3_fp8_scaled.safetensors",
                _hf(_HUNYUAN, "split_files/text_encoders/llava_llama3_fp8_scaled.safetensors"),
                "3.2GB",
            ),
            (
                "vae/hunyuan_video_vae_bf16.safetensors",
                _hf(_HUNYUAN, "split_files/vae/hunyuan_video_vae_bf16.safetensors"),
                "1.5GB",
            ),
        ],
    ),
    _product(
        "LTX_VIDEO_T2V",
        "LTX-Video Text to Video",
        "Video Generation",
        "video",
        "LTX-Video text-to-video workflow from ComfyUI documentation",
        "Efficient video generation with long descriptive prompts",
        ["ltx", "t2v", "text-to-video", "efficient", "workflow"],
        [
            (
                "checkpoints/ltx-video-2b-v0.9.5.safetensors",
                _hf("Lightricks/LTX-Video", "ltx-video-2b-v0.9.5.safetensors"),
                "4.8GB",
            ),
            (
                "text_encoders/t5xxl_fp16.safetensors",
                _hf("Comfy-Org/mochi_preview_repackaged", "split_files/text_encoders/t5xxl_fp16.safetensors"),
                "4.9GB",
            ),
        ],
    ),
    _product(
        "WAN2_2_TI2V_5B_FP16",
        "WAN 2.2 TI2V 5B FP16 Complete",
        "Video Generation",
        "video",
        "Complete WAN 2.2 Text-Image-to-Video workflow with all required components based on official "
        "ComfyUI examples",
        "Creating videos from text and images using complete WAN 2.2 TI2V workflow",
        ["wan", "ti2v", "fp16", "video", "official", "workflow", "complete"],
        [
            (
                "diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
                _hf(_WAN, "models/wan2.2_ti2v_5B_fp16.safetensors"),
                "9.31GB (9536MB)",
            ),
            ("vae/wan2.2_vae.safetensors", _hf(_WAN, "models/wan2.2_vae.safetensors"), "~1.5GB"),
            (
                "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                _hf(_WAN, "models/umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
                "~4.9GB",
            ),
        ],
    ),
    _product(
        "UPSCALE_MODELS",
        "Video Upscale Models",
        "Video Generation",
        "video",
        "Video upscaling models collection",
        "Video quality enhancement and upscaling",
        ["upscale", "enhancement", "video", "quality"],
        [
            (
                "upscale_models/4x_NMKD-Siax_xl.pth",
                _hf("Guillaume-M/4x_NMKD-Siax_xl", "4x_NMKD-Siax_xl.pth"),
                "690MB",
            ),
            (
                "upscale_models/4x_NMKD-Superscale_150k.pth",
                _hf("ConseilsSuprimes/4x_NMKD-Superscale_150k", "4x_NMKD-Superscale_150k.pth"),
                "690MB",
            ),
            (
                "upscale_models/8x_NMKD-Superscale_150k.pth",
                _hf("ConseilsSuprimes/8x_NMKD-Superscale_150k", "8x_NMKD-Superscale_150k.pth"),
                "720MB",
            ),
        ],
    ),
]
"""Presets of the product's own catalog (``config/presets.yaml`` of ZeroClue/ComfyUI-Docker: the
download manager at 99b13c0 reads that file; the version read here is the nearest stored one),
with their ids, texts, URLs and sizes as the product lists them: most span type folders, each is
installed as one ``mixed`` ModelPull."""


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
            *PRODUCT_PRESETS,
        ]
    }
)
"""Served when the catalog ConfigMap does not exist: our SD 1.5 / SDXL / RealESRGAN presets (whose
workflow templates are built in) and :data:`PRODUCT_PRESETS`."""
