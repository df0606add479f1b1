"""ControlPilot's datasets as folders on the datasets volume: naming, listing, and safe replacement.

No FastAPI here. A dataset is a folder ``1_<name>`` directly in the volume (kohya's
``<repeats>_<name>`` convention, always one repeat); uploaded and saved archives are kept in
``ZIPs/``. A TrainingRun names its dataset by this folder (``spec.dataset.path``), so the folder
of a dataset is never half-written: new contents are built in a hidden staging sibling on the
same volume (``.kubepilot-tmp-*``, which no listing shows) and renamed into place, the previous
folder moved aside first and removed after.

Names, as ControlPilot makes them: a name that starts with ``1_`` is the folder name as given;
any other becomes ``1_`` + ``clean(name)``, where ``clean`` turns every run of characters outside
``[A-Za-z0-9_-]`` into ``_``, strips ``_`` and ``-`` from both ends, and falls back to
``dataset``; a blank name is ``dataset``. Unlike ControlPilot, a ``1_`` name that is not one plain
folder name (a ``/``, a control character, too long) is refused (``InvalidName``), and every
folder is contained by its resolved real path: a dataset folder that is a symlink leading out of
the volume is refused as well, never read or written through.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kubepilot_gateway.profiles.controlpilot.safezip import STAGING_PREFIX

DATASET_PREFIX = "1_"
ZIPS_DIR = "ZIPs"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
TAGPILOT_EXTENSIONS = IMAGE_EXTENSIONS | {".txt"}
"""What ControlPilot counts as a dataset image, and what TagPilot loads (images and their tags)."""
NAME_MAX_BYTES = 255
CHUNK_BYTES = 1024 * 1024
FILE_MODE = 0o644
DIR_MODE = 0o755
STALE_SECONDS = 6 * 3600
"""Staging leftovers older than this are from a request that died (a gateway restart): swept."""

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")

JsonObject = dict[str, Any]


class InvalidName(ValueError):
    """A client-given name that cannot name a folder inside the volume."""


class UploadTooLarge(ValueError):
    """An upload over the configured size."""


class VolumeError(OSError):
    """The volume itself is not as expected (a server-side problem, not the client's)."""


def clean_name(name: str) -> str:
    """ControlPilot's ``_clean_name``: safe characters only, never empty."""
    return _UNSAFE_RUN.sub("_", name).strip("_-") or "dataset"


def dataset_dirname(name: str) -> str:
    """The folder name of dataset ``name`` (see the module docstring); ``InvalidName`` if unsafe."""
    text = name.strip() or "dataset"
    if not text.startswith(DATASET_PREFIX):
        text = DATASET_PREFIX + clean_name(text)
    elif "/" in text or "\\" in text or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise InvalidName("Invalid dataset name")
    # Room for the ".zip" of its archive too: the folder and its zip must both be valid file names.
    if len(text.encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES - len(".zip"):
        raise InvalidName("Dataset name is too long")
    return text


def display_name(dirname: str) -> str:
    """ControlPilot's friendly name: without ``1_``, underscores as spaces, title case."""
    trimmed = dirname[len(DATASET_PREFIX) :] if dirname.startswith(DATASET_PREFIX) else dirname
    return trimmed.replace("_", " ").strip().title() or dirname


def zip_candidates(name: str) -> list[str]:
    """The archive names ``ZIPs/`` may hold for dataset ``name``: ControlPilot's two
    (``clean(name).zip``, ``1_clean(name).zip``) and, ours, the name without its ``1_`` (the
    archive an upload of ``<stem>.zip`` or a TagPilot save of ``<stem>`` left for ``1_<stem>``)."""
    stem = clean_name(name)
    names = [f"{stem}.zip", f"{DATASET_PREFIX}{stem}.zip"]
    if stem.startswith(DATASET_PREFIX) and len(stem) > len(DATASET_PREFIX):
        names.append(f"{clean_name(stem[len(DATASET_PREFIX) :])}.zip")
    return list(dict.fromkeys(names))


def safe_upload_filename(name: str) -> str:
    """A file name for a TagPilot item: the last step of what the browser sent, never a path."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join("_" if ord(char) < 0x20 or ord(char) == 0x7F else char for char in base).strip()
    if base in ("", ".", ".."):
        return "image.bin"
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        stem, suffix = base, ""
    # Leave room for a "_<n>" uniqueness suffix and the ".txt" sidecar.
    budget = NAME_MAX_BYTES - 16 - len(suffix.encode())
    if len(stem.encode()) > budget:
        stem = stem.encode()[: max(budget, 1)].decode("utf-8", "ignore") or "image"
    return f"{stem}.{suffix}" if suffix else stem


def regular_files(folder: Path) -> list[tuple[str, Path]]:
    """Every regular file below ``folder`` as ``(relative posix path, path)``, sorted by path steps.

    Symlinks are skipped, files and folders alike, so nothing outside ``folder`` is ever read.
    """
    found: list[tuple[tuple[str, ...], Path]] = []
    for here, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        base = Path(here)
        for filename in filenames:
            path = base / filename
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue  # removed while we looked
            if stat.S_ISREG(mode) and not filename.startswith(STAGING_PREFIX):
                found.append((path.relative_to(folder).parts, path))
    found.sort(key=lambda item: item[0])
    return [("/".join(parts), path) for parts, path in found]


def copy_stream(source: IO[bytes], target: Path, max_bytes: int) -> int:
    """Copy ``source`` into the new file ``target`` in chunks (never whole into memory);
    ``UploadTooLarge`` past ``max_bytes``. Never follows or overwrites an existing path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    total = 0
    fd = os.open(target, flags, FILE_MODE)  # FileExistsError before anything is read
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                total += len(chunk)
                if total > max_bytes:
                    raise UploadTooLarge(f"Upload too large (limit {max_bytes} bytes)")
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)  # ours (O_EXCL): no partial file stays behind
        raise
    return total


def write_text_replacing(target: Path, text: str) -> None:
    """Write ``target`` through a temporary sibling and a rename (a symlink there is replaced,
    not followed)."""
    staging = target.with_name(f"{STAGING_PREFIX}{secrets.token_hex(6)}.txt")
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(staging, flags, FILE_MODE), "w", encoding="utf-8") as out:
            out.write(text)
        staging.replace(target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def remove_tree(path: Path) -> None:
    """Remove ``path`` without following a symlink (a link itself is unlinked); best effort."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


@dataclass(frozen=True)
class DatasetSummary:
    """One CP-16 entry (ControlPilot also computes ``has_tags`` and ``path`` but never sends them)."""

    name: str
    display: str
    images: int
    size_bytes: int

    def to_json(self) -> JsonObject:
        return {
            "name": self.name,
            "display": self.display,
            "images": self.images,
            "size_bytes": self.size_bytes,
        }


def summarise(folder: Path) -> DatasetSummary:
    images = 0
    size = 0
    for relative, path in regular_files(folder):
        if Path(relative).suffix.lower() in IMAGE_EXTENSIONS:
            images += 1
        with suppress(OSError):
            size += os.lstat(path).st_size
    return DatasetSummary(folder.name, display_name(folder.name), images, size)


class DatasetVolume:
    """The datasets volume at ``root`` as ControlPilot sees ``/workspace/datasets``.

    Changes to which folder holds a dataset (create, delete, rename, the final swap of a
    replacement) are serialised by one lock in this process; extraction runs outside it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()

    def _root_real(self) -> str:
        return os.path.realpath(self.root)

    def contained(self, path: Path) -> bool:
        """Whether ``path``, resolved, is strictly inside the volume (resolved as well)."""
        root = self._root_real()
        real = os.path.realpath(path)
        return real != root and os.path.commonpath([root, real]) == root

    def dataset_path(self, name: str) -> Path:
        """The folder of dataset ``name``; ``InvalidName`` when unsafe or resolving out of the volume."""
        path = self.root / dataset_dirname(name)
        if not self.contained(path):
            raise InvalidName("Invalid dataset name")
        return path

    def ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def zips_dir(self) -> Path:
        """``ZIPs/``, created when missing; swept of stale work."""
        self.ensure_root()
        path = self.root / ZIPS_DIR
        path.mkdir(exist_ok=True)
        if not self.contained(path):
            raise VolumeError(f"{path} leads out of the datasets volume")
        self.sweep(path)
        return path

    def sweep(self, folder: Path) -> None:
        """Remove staging leftovers older than ``STALE_SECONDS`` from ``folder`` (best effort)."""
        cutoff = time.time() - STALE_SECONDS
        with suppress(OSError):
            for entry in os.scandir(folder):
                if (
                    entry.name.startswith(STAGING_PREFIX)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    remove_tree(Path(entry.path))

    def list(self) -> list[DatasetSummary]:
        """CP-16: every ``1_*`` folder, by name (a symlinked one only when it stays in the volume)."""
        try:
            names = sorted(entry.name for entry in os.scandir(self.root))
        except FileNotFoundError:
            return []
        summaries = []
        for name in names:
            path = self.root / name
            if name.startswith(DATASET_PREFIX) and path.is_dir() and self.contained(path):
                summaries.append(summarise(path))
        return summaries

    def staging_dir(self) -> Path:
        """A fresh hidden folder on the volume, for building a dataset's new contents."""
        self.ensure_root()
        self.sweep(self.root)
        path = self.root / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
        path.mkdir(DIR_MODE)
        path.chmod(DIR_MODE)  # whatever the umask: the workers read it as another user
        return path

    def aside(self, path: Path) -> Path:
        """Move ``path`` out of the datasets' names (a hidden sibling); the new name."""
        hidden = self.root / f"{STAGING_PREFIX}old-{secrets.token_hex(8)}"
        path.rename(hidden)
        return hidden

    def replace(self, staged: Path, target: Path) -> None:
        """Put the folder ``staged`` at ``target``, then remove what was there before."""
        with self.lock:
            previous = self.aside(target) if os.path.lexists(target) else None
            try:
                staged.rename(target)
            except BaseException:
                if previous is not None:
                    previous.rename(target)
                raise
        if previous is not None:
            remove_tree(previous)

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A staging folder that is removed unless the caller moved it into place."""
        path = self.staging_dir()
        try:
            yield path
        finally:
            if os.path.lexists(path):
                remove_tree(path)
