"""ControlPilot CP-16 … CP-23: datasets and TagPilot as folders on the datasets volume.

ControlPilot keeps datasets in ``/workspace/datasets``; here that is the gateway's view of the
datasets volume (``volumes.datasets``), the same files the TrainingRuns' pods read. No Kubernetes
object is involved. Shapes and texts are ControlPilot's (seed-api-inventory §1.1, §6.1); naming
and folder handling live in ``datasets``, archive checks in ``safezip``.

Deliberate differences from ControlPilot, all about bad input or safety:

- An unsafe or corrupt zip (CP-18, CP-22) is a **400** with the reason, where ControlPilot
  answers 500: bad input is never a 500 here. Beyond ControlPilot's checks (symlink entries,
  absolute paths, ``..``, drive prefixes, escaping the destination) archives are also refused for
  device entries, odd names, duplicate entries, and as bombs (``maxExtractedBytes``,
  ``maxEntries``, ``maxEntryBytes``, ``maxCompressionRatio``), counted while inflating.
- A zip is extracted into a hidden staging folder on the volume and renamed into place only when
  all of it succeeded: a refused or failed upload changes nothing, where ControlPilot deletes the
  existing dataset first and may leave half an archive behind. The stored archive in ``ZIPs/`` is
  replaced only on success too.
- Request bodies over ``maxUploadBytes`` are a **413** (ControlPilot has no limit); uploads are
  streamed to disk in chunks.
- A dataset name (path, query or body) that is not one plain folder name, or whose folder
  resolves out of the volume, is a 400 ``"Invalid dataset name"`` (ControlPilot would follow it).
  TagPilot never reads or writes through a symlink inside a dataset.
- The volume not configured (``volumes.datasets`` empty) is a 503 on every endpoint.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, Field

from kubepilot_gateway.app.bodylimit import size_limited_route
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.controlpilot import safezip
from kubepilot_gateway.profiles.controlpilot.datasets import (
    TAGPILOT_EXTENSIONS,
    ZIPS_DIR,
    DatasetVolume,
    InvalidName,
    UploadTooLarge,
    clean_name,
    copy_stream,
    regular_files,
    remove_tree,
    safe_upload_filename,
    write_text_replacing,
    zip_candidates,
)
from kubepilot_gateway.settings import Strict

JsonObject = dict[str, Any]
GIB = 1024**3
MIB = 1024**2

NAME_REQUIRED = "name is required"
ALREADY_EXISTS = "dataset already exists"
NOT_FOUND = "Dataset not found"
NEW_NAME_REQUIRED = "new name is required"
NEW_NAME_EXISTS = "Dataset with new name already exists"
"""ControlPilot's own texts (seed-api-inventory §6.1, from its implementation)."""
NOT_MOUNTED = "The datasets volume is not mounted on this gateway"
NOT_A_FOLDER = "Dataset path is not a folder"
"""Ours: cases ControlPilot cannot meet or answers with a 500."""


class DatasetsSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.datasets``)."""

    maxUploadBytes: int = Field(
        default=8 * GIB,
        gt=0,
        description="Largest request body (multipart included) the dataset and TagPilot endpoints "
        "accept; a larger one is answered 413 before or while it is read.",
    )
    maxExtractedBytes: int = Field(
        default=32 * GIB, gt=0, description="Most bytes one zip may expand into, all entries together."
    )
    maxEntries: int = Field(default=100_000, gt=0, description="Most entries (files and folders) in one zip.")
    maxEntryBytes: int = Field(default=8 * GIB, gt=0, description="Largest single file inside a zip.")
    maxCompressionRatio: float = Field(
        default=200.0,
        gt=1,
        description="Largest expansion (uncompressed / compressed) of a zip entry, and of the whole "
        "archive against its size, before it is treated as a zip bomb.",
    )
    ratioCheckMinBytes: int = Field(
        default=MIB,
        ge=0,
        description="The compression ratio is judged only once an entry (or the archive) has expanded "
        "past this many bytes: small, highly compressible files are normal.",
    )

    def zip_limits(self) -> safezip.ZipLimits:
        return safezip.ZipLimits(
            max_total_bytes=self.maxExtractedBytes,
            max_entries=self.maxEntries,
            max_entry_bytes=self.maxEntryBytes,
            max_ratio=self.maxCompressionRatio,
            ratio_min_bytes=self.ratioCheckMinBytes,
        )


class NameBody(BaseModel):
    """CP-17 / CP-20 body: ``{"name": "..."}`` (absent reads as empty, as ControlPilot's ``dict.get``)."""

    name: str = ""


def too_large(limit: int) -> HTTPException:
    """ControlPilot's 413 for an upload over its limit."""
    return HTTPException(status_code=413, detail=f"Upload too large (limit {limit} bytes)")


@contextmanager
def http_errors() -> Iterator[None]:
    """Client mistakes as 400 / 413 with their reason; a failing disk as ControlPilot's 500."""
    try:
        yield
    except (safezip.ZipRejected, InvalidName) as error:
        raise HTTPException(status_code=400, detail=str(error)) from error
    except UploadTooLarge as error:
        raise HTTPException(status_code=413, detail=str(error)) from error
    except OSError as error:
        raise HTTPException(status_code=500, detail=str(error)) from error


def read_nofollow(path: Path) -> bytes:
    """The bytes of ``path``, refusing to open it if it became a symlink since it was listed."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as source:
        return source.read()


def create_router(ctx: GatewayContext, settings: DatasetsSettings) -> APIRouter:
    """The dataset and TagPilot routes over ``ctx.settings.volumes.datasets`` (no cluster calls)."""
    router = APIRouter(route_class=size_limited_route(settings.maxUploadBytes, too_large))
    root = ctx.settings.volumes.datasets
    volume = DatasetVolume(Path(root)) if root else None
    limits = settings.zip_limits()

    def mounted() -> DatasetVolume:
        if volume is None:
            raise HTTPException(status_code=503, detail=NOT_MOUNTED)
        return volume

    def dataset_path(vol: DatasetVolume, name: str) -> Path:
        with http_errors():
            return vol.dataset_path(name)

    def install_zip(vol: DatasetVolume, upload: UploadFile, target: Path, zip_name: str) -> Path:
        """Stream the upload to ``ZIPs/``, extract it into staging, and swap both into place."""
        zips = vol.zips_dir()
        part = zips / f"{safezip.STAGING_PREFIX}{secrets.token_hex(8)}.zip.part"
        try:
            copy_stream(upload.file, part, settings.maxUploadBytes)
            with vol.staged() as staging:
                safezip.extract(part, staging, limits)
                vol.replace(staging, target)
            stored = zips / zip_name
            part.replace(stored)
            return stored
        finally:
            part.unlink(missing_ok=True)

    @router.get("/api/datasets")
    def list_datasets() -> list[JsonObject]:
        """CP-16: every ``1_*`` folder with its image count and size."""
        vol = mounted()
        with http_errors():
            return [summary.to_json() for summary in vol.list()]

    @router.post("/api/datasets/create")
    def create_dataset(payload: NameBody) -> JsonObject:
        """CP-17: an empty dataset folder."""
        vol = mounted()
        raw = payload.name.strip()
        if not raw:
            raise HTTPException(status_code=400, detail=NAME_REQUIRED)
        target = dataset_path(vol, raw)
        with http_errors(), vol.lock:
            if os.path.lexists(target):
                raise HTTPException(status_code=400, detail=ALREADY_EXISTS)
            vol.ensure_root()
            target.mkdir()
        return {"status": "created", "path": str(target)}

    @router.post("/api/datasets/upload")
    def upload_dataset(file: Annotated[UploadFile, File()]) -> JsonObject:
        """CP-18: a zip extracted to ``1_<stem>``, replacing that dataset (only once it all worked)."""
        vol = mounted()
        stem = clean_name(Path(file.filename or "dataset.zip").stem)
        target = dataset_path(vol, f"1_{stem}")
        with http_errors():
            stored = install_zip(vol, file, target, f"{stem}.zip")
        return {"status": "uploaded", "zip": str(stored), "extracted_to": str(target)}

    @router.delete("/api/datasets/{name}")
    def delete_dataset(name: str) -> JsonObject:
        """CP-19: the folder (moved aside at once, then removed), and its archives, best effort."""
        vol = mounted()
        target = dataset_path(vol, name)
        with http_errors():
            with vol.lock:
                if not target.is_dir():
                    raise HTTPException(status_code=404, detail=NOT_FOUND)
                hidden = vol.aside(target)
            remove_tree(hidden)
        for candidate in zip_candidates(name):
            with suppress(OSError):  # best effort, as ControlPilot
                (vol.root / ZIPS_DIR / candidate).unlink(missing_ok=True)
        return {"status": "deleted", "path": str(target)}

    @router.patch("/api/datasets/{name}")
    def rename_dataset(name: str, payload: NameBody) -> JsonObject:
        """CP-20: a new folder name, and its archive renamed along, best effort."""
        vol = mounted()
        new_name = payload.name.strip()
        if not new_name:
            raise HTTPException(status_code=400, detail=NEW_NAME_REQUIRED)
        source = dataset_path(vol, name)
        target = dataset_path(vol, new_name)
        with http_errors(), vol.lock:
            if not source.is_dir():
                raise HTTPException(status_code=404, detail=NOT_FOUND)
            if target != source:
                if os.path.lexists(target):
                    raise HTTPException(status_code=400, detail=NEW_NAME_EXISTS)
                source.rename(target)
        zips = vol.root / ZIPS_DIR
        for candidate in zip_candidates(name):
            with suppress(OSError):  # best effort, as ControlPilot
                if (zips / candidate).is_file():
                    (zips / candidate).replace(zips / f"{clean_name(new_name)}.zip")
        return {"status": "renamed", "old_path": str(source), "new_path": str(target)}

    @router.get("/api/tagpilot/load")
    def tagpilot_load(name: str) -> JsonObject:
        """CP-21: the dataset's images and ``.txt`` tag files, base64-encoded."""
        vol = mounted()
        target = dataset_path(vol, name)
        if not target.is_dir():
            raise HTTPException(status_code=404, detail=NOT_FOUND)
        files = []
        for relative, path in regular_files(target):
            if path.suffix.lower() not in TAGPILOT_EXTENSIONS:
                continue
            try:
                data = read_nofollow(path)
            except OSError:
                continue  # gone or replaced meanwhile: ControlPilot skips unreadable files too
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            files.append({"name": relative, "mime": mime, "b64": base64.b64encode(data).decode("ascii")})
        return {"name": target.name, "files": files}

    @router.post("/api/tagpilot/save")
    def tagpilot_save(name: str, file: Annotated[UploadFile, File()]) -> JsonObject:
        """CP-22: the dataset replaced by the zip TagPilot sends (only once it all extracted)."""
        vol = mounted()
        target = dataset_path(vol, name)
        with http_errors():
            stored = install_zip(vol, file, target, f"{clean_name(name)}.zip")
        return {"status": "saved", "path": str(target), "zip": str(stored)}

    @router.post("/api/tagpilot/save-item")
    def tagpilot_save_item(
        name: str,
        file: Annotated[UploadFile, File()],
        tags: Annotated[str, Form()] = "",
        reset: Annotated[bool, Form()] = False,
        done: Annotated[bool, Form()] = False,
    ) -> JsonObject:
        """CP-23: one image and its ``.txt`` tags; ``reset`` empties the dataset first, ``done``
        zips it into ``ZIPs/``."""
        vol = mounted()
        target = dataset_path(vol, name)
        with http_errors():
            zips = vol.zips_dir()
            previous = None
            with vol.lock:
                if reset and os.path.lexists(target):
                    previous = vol.aside(target)
                if not os.path.lexists(target):
                    target.mkdir()
            if previous is not None:
                remove_tree(previous)
            if not target.is_dir():
                raise HTTPException(status_code=400, detail=NOT_A_FOLDER)
            image = _write_unique(
                target, safe_upload_filename(file.filename or ""), file, settings.maxUploadBytes
            )
            write_text_replacing(image.with_suffix(".txt"), tags or "")
            answer: JsonObject = {
                "status": "saved-item",
                "path": str(target),
                "file": image.name,
                "done": done,
            }
            if done:
                archive = zips / f"{clean_name(name)}.zip"
                safezip.write_zip(regular_files(target), archive)
                answer["zip"] = str(archive)
        return answer

    return router


def _write_unique(folder: Path, filename: str, upload: UploadFile, max_bytes: int) -> Path:
    """Write the upload as ``filename`` in ``folder``, or ``<stem>_<n><suffix>`` when taken (an
    existing symlink counts as taken: it is never written through)."""
    stem, suffix = Path(filename).stem, Path(filename).suffix
    candidate = folder / filename
    index = 0
    while True:
        try:
            copy_stream(upload.file, candidate, max_bytes)
            return candidate
        except FileExistsError:
            index += 1
            candidate = folder / f"{stem}_{index}{suffix}"
