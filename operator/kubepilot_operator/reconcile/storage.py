"""Files on the volumes the operator manages itself: removing a pull's files, publishing a LoRA.

The models volume is a content-addressed store (``.store/blobs/<sha256>``) hard-linked into the
type folders, as the downloader writes it. A file is removed only when no other ModelPull lists
it, and its blob only when nothing else links to it any more.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from kubepilot_operator.conditions import timestamp

log = logging.getLogger(__name__)
Obj = dict[str, Any]
CHUNK = 1024 * 1024


def inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it stays inside ``root`` (resolved), else None."""
    candidate = (root / relative).resolve()
    try:
        candidate.relative_to(root.resolve())
    except ValueError:
        return None
    return candidate


def remove_files(models_root: Path, files: list[str], held_elsewhere: set[str]) -> Obj:
    """Remove a pull's files (relative to the models volume); returns ``status.removal``."""
    removed = kept = freed = 0
    blobs = models_root / ".store" / "blobs"
    for relative in files:
        if relative in held_elsewhere:
            kept += 1
            continue
        path = inside(models_root, relative)
        if path is None:
            continue
        try:  # another deletion may be removing the same file right now
            stat = path.stat()
            digest_blob = _blob_of(blobs, stat)
            path.unlink()
            removed += 1
            if digest_blob is not None and digest_blob.stat().st_nlink <= 1:
                freed += digest_blob.stat().st_size
                digest_blob.unlink()
            elif digest_blob is None and stat.st_nlink <= 1:
                freed += stat.st_size
        except FileNotFoundError:
            continue
        _prune_empty_parents(path.parent, models_root)
    return {"filesRemoved": removed, "bytesFreed": freed, "filesKept": kept, "removedAt": timestamp()}


def _blob_of(blobs: Path, stat: os.stat_result) -> Path | None:
    """The store blob that is the same inode as a type-folder file, if any (a hard link)."""
    if stat.st_nlink < 2 or not blobs.is_dir():
        return None
    for blob in blobs.iterdir():
        with contextlib.suppress(OSError):
            other = blob.stat()
            if other.st_ino == stat.st_ino and other.st_dev == stat.st_dev:
                return blob
    return None


def _prune_empty_parents(folder: Path, root: Path) -> None:
    # Type folders themselves (checkpoints/, loras/) stay: tools expect them. Both sides resolved:
    # the file's path is, and a symlinked or relative root must still stop the climb.
    root = root.resolve()
    folder = folder.resolve()
    while folder != root and folder.parent != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def publish(models_root: Path, source: Path, relative_target: str) -> str:
    """Publish a file into the models store: blob by sha256, hard-linked into ``relative_target``.

    Idempotent: publishing the same bytes again changes nothing. Returns the sha256.
    """
    target = inside(models_root, relative_target)
    if target is None:
        raise ValueError(f"{relative_target!r} leaves the models volume")
    digest = sha256_of(source)
    blobs = models_root / ".store" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    blob = blobs / digest
    if not blob.exists():
        tmp = blobs / f".{digest}.tmp"
        try:
            os.link(source, tmp)
        except OSError:
            tmp.write_bytes(source.read_bytes())
        tmp.replace(blob)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.stat().st_ino == blob.stat().st_ino:
        return digest
    tmp_target = target.with_name(f".{target.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp_target.unlink()
    try:
        os.link(blob, tmp_target)
    except OSError:
        tmp_target.write_bytes(blob.read_bytes())
    tmp_target.replace(target)
    return digest
