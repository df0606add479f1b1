"""The newest image in ComfyUI's output folder (CP-38), without re-walking the tree per request.

``OutputIndex`` remembers, per directory, its modification time and the images and subfolders it
held. A request stats every known directory (cheap) and lists again only those whose mtime
changed: adding, removing or renaming an entry changes its directory's mtime, which is how
ComfyUI writes (a new file per image, numbered). A file rewritten in place under the same name
keeps its directory's mtime and is seen with its old time until the directory changes again;
CP-38 only reports the newest file, so that is acceptable. A directory modified in the last two
seconds is listed again on the next request, since a timestamp tick can hide a second change.

Each listing is bounded: at most ``max_entries`` directory entries are read per request, so a
huge tree makes the answer partial (the newest among those seen), never a long request.
Symbolic links are not followed: the folder is on a shared volume that anyone can write to.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from PIL import Image, UnidentifiedImageError

JsonObject = dict[str, Any]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
"""What ControlPilot counts as a generated image."""
NO_OUTPUT_DIR = "No output directory found"
_RACY_NS = 2 * 10**9
"""A directory changed this recently is listed again next time (mtime ticks can be coarse)."""
NO_IMAGES = "No images found"


@dataclass(frozen=True)
class ImageFile:
    """One image: where it is under the root, its mtime and size."""

    subfolder: str
    """Relative folder, '/'-separated; '' for the root."""
    name: str
    mtime_ns: int
    size: int


@dataclass
class _Listing:
    mtime_ns: int
    images: list[ImageFile] = field(default_factory=list)
    subdirs: list[str] = field(default_factory=list)


class OutputIndex:
    """The images under ``root``, kept current from directory mtimes."""

    def __init__(self, root: Path, *, max_entries: int) -> None:
        self.root = root
        self.max_entries = max_entries
        self._listings: dict[str, _Listing] = {}
        self._lock = threading.Lock()

    def scan(self) -> list[ImageFile] | None:
        """Every image under the root (as far as the entry budget reaches); None when the root
        is not a directory. Blocking: run it in a worker thread."""
        with self._lock:
            return self._scan()

    def _scan(self) -> list[ImageFile] | None:
        try:
            if not self.root.is_dir():
                self._listings.clear()
                return None
        except OSError:
            return None
        budget = self.max_entries
        seen: dict[str, _Listing] = {}
        images: list[ImageFile] = []
        pending = [""]
        while pending:
            relative = pending.pop()
            directory = self.root / relative if relative else self.root
            try:
                # The root may itself be a link (a mount point); below it, links are not followed.
                mtime_ns = directory.stat(follow_symlinks=not relative).st_mtime_ns
            except OSError:
                continue
            listing = self._listings.get(relative)
            if listing is None or listing.mtime_ns != mtime_ns:
                if budget <= 0:
                    continue
                listing, used = _list(directory, relative, mtime_ns, budget)
                budget -= used
                if time.time_ns() - mtime_ns < _RACY_NS:
                    # Changed within the clock's granularity: a file added in the same tick would
                    # leave the mtime as it is now, so do not trust it until it has aged.
                    listing.mtime_ns = -1
            seen[relative] = listing
            images.extend(listing.images)
            pending.extend(listing.subdirs)
        self._listings = seen
        return images


def _list(directory: Path, relative: str, mtime_ns: int, budget: int) -> tuple[_Listing, int]:
    """List one directory, reading at most ``budget`` entries; the listing and the entries read."""
    listing = _Listing(mtime_ns)
    used = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if used >= budget:
                    listing.mtime_ns = -1  # partial: list it again next time
                    break
                used += 1
                try:
                    if entry.is_dir(follow_symlinks=False):
                        listing.subdirs.append(f"{relative}/{entry.name}" if relative else entry.name)
                    elif (
                        entry.is_file(follow_symlinks=False)
                        and PurePosixPath(entry.name).suffix.lower() in IMAGE_SUFFIXES
                    ):
                        stat = entry.stat(follow_symlinks=False)
                        listing.images.append(ImageFile(relative, entry.name, stat.st_mtime_ns, stat.st_size))
                except OSError:
                    continue  # vanished while listing
    except OSError:
        pass
    return listing, used


def dimensions(path: Path) -> str:
    """``"WxH"`` from the image header (Pillow reads only the header here); ``"Unknown"`` if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return "Unknown"
    return f"{width}x{height}"


def view_url(name: str, subfolder: str, prefix: str = "") -> str:
    """The CP-39 proxy URL of ComfyUI's ``/view`` for this image (``prefix``: the app's mount path)."""
    url = f"{prefix}/proxy/comfy/view?filename={quote(name, safe='')}"
    if subfolder:
        url += f"&subfolder={quote(subfolder, safe='/')}"
    return url


def latest_image(index: OutputIndex, *, url_prefix: str = "") -> JsonObject:
    """CP-38's answer: the newest image with its metadata and the image count, or why there is none."""
    images = index.scan()
    if images is None:
        return {"image": None, "message": NO_OUTPUT_DIR}
    if not images:
        return {"image": None, "message": NO_IMAGES, "image_count": 0}
    newest = max(images, key=lambda image: (image.mtime_ns, image.subfolder, image.name))
    path = index.root / newest.subfolder / newest.name if newest.subfolder else index.root / newest.name
    return {
        "image": {
            "url": view_url(newest.name, newest.subfolder, url_prefix),
            "filename": newest.name,
            "subfolder": newest.subfolder,
            "dimensions": dimensions(path),
            "size": newest.size,
            # Naive local time, as ControlPilot renders it.
            "generated_at": datetime.fromtimestamp(newest.mtime_ns / 1e9).isoformat(),
        },
        "image_count": len(images),
    }
