"""The model file index of the models volume: kept current without walking the volume per request.

Each folder's listing is remembered with the folder's modification time (``st_mtime_ns``), which
changes whenever an entry is added, removed or renamed in it (the downloader publishes by rename,
deletion unlinks). A refresh stats the known folders and re-lists only those whose time changed,
so a request costs one ``stat`` per folder, not one per file. Hidden entries (``.store``, the
downloader's temporaries) are not models.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

TYPE_NAMES = {
    "checkpoints": "Checkpoints",
    "diffusion_models": "Diffusion Models",
    "text_encoders": "Text Encoders",
    "clip": "CLIP",
    "clip_vision": "CLIP Vision",
    "vae": "VAE",
    "loras": "LoRAs",
    "controlnet": "ControlNet",
    "upscale_models": "Upscale Models",
    "embeddings": "Embeddings",
    "unet": "UNet",
}
"""Display names of the usual type folders; any other folder shows its own name."""


@dataclass(frozen=True)
class ModelFile:
    path: str
    """Relative to the models volume, ``/``-separated (``checkpoints/x.safetensors``)."""
    size: int
    mtime: float

    @property
    def type(self) -> str:
        return self.path.split("/", 1)[0]


@dataclass
class _Folder:
    mtime_ns: int
    files: dict[str, ModelFile] = field(default_factory=dict)
    children: tuple[str, ...] = ()


class ModelIndex:
    """The files under ``root``'s type folders (files directly in ``root`` are not models)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[str, _Folder] = {}
        self._lock = threading.Lock()

    def files(self) -> list[ModelFile]:
        """Every model file by path, the index brought up to date first (blocking: call in a thread)."""
        with self._lock:
            self._refresh()
            found = [item for folder in self._folders.values() for item in folder.files.values()]
        return sorted(found, key=lambda item: item.path)

    def _refresh(self) -> None:
        seen: dict[str, _Folder] = {}
        pending = [""]
        while pending:
            relative = pending.pop()
            folder = self._folder(relative)
            if folder is None:
                continue
            seen[relative] = folder
            pending.extend(folder.children)
        self._folders = seen

    def _folder(self, relative: str) -> _Folder | None:
        path = self.root / relative if relative else self.root
        try:
            mtime_ns = path.stat().st_mtime_ns
        except OSError:
            return None
        known = self._folders.get(relative)
        if known is not None and known.mtime_ns == mtime_ns:
            return known
        return self._scan(path, relative, mtime_ns)

    def _scan(self, path: Path, relative: str, mtime_ns: int) -> _Folder:
        files: dict[str, ModelFile] = {}
        children: list[str] = []
        try:
            entries = list(os.scandir(path))
        except OSError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = f"{relative}/{entry.name}" if relative else entry.name
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir():
                    children.append(child)
                elif entry.is_file() and relative:
                    stat = entry.stat()
                    files[child] = ModelFile(child, stat.st_size, stat.st_mtime)
            except OSError:
                continue
        return _Folder(mtime_ns, files, tuple(children))
