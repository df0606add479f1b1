"""Model downloads (SD-29…31 and the product's ``POST /api/models/:id/download``) as ModelPulls.

**One ModelPull per catalog model**, named deterministically (:func:`pull_name`), so two concurrent
downloads of one model create one object: the API server is the lock, the loser of the create
race reads the winner's object. Its files come from the catalog entry (:func:`plan`):

- ``files`` (or ``path`` when it names a weight file) are paths relative to the models volume;
  each is fetched from ``huggingface.repo`` by its file name and lands exactly there. All of them
  must share one folder whose first segment is a type folder of the models store
  (``checkpoints/x/model.safetensors``): a ModelPull has one destination folder.
- ``path`` naming a folder (``diffusers/tiny-sd``) without ``files``: the whole repository lands
  in that folder.

A catalog entry that cannot be pulled that way is a 400 with the reason (never a ModelPull whose
files would land where ``files/status`` does not look).

**The download id** is the ModelPull's ``metadata.uid``: a UUID as the document shows, the same
for every caller of one download, and new when a finished download is started again (the old
ModelPull is deleted first, its files kept: ``deletePolicy: Retain``, so a re-download verifies and
reuses them). Starting a model whose download runs, or whose completed download's files are all
present, answers that download.

**Status shapes.** Document mode: ``{status: downloading|completed|failed, progress: fraction,
bytes_downloaded, total_bytes}``; Pending, Downloading and Paused read ``downloading``, Failed and
Cancelled read ``failed`` (the document has no ``cancelled``). Product mode: the product's job
object (``id, repo, status, method, progress`` in percent, ``bytesDownloaded, totalBytes``,
formatted ``speed`` and ``eta``, ``currentFile, currentFileIndex, stderr, files, error,
createdAt, completedAt`` in epoch ms) with its own status words (``pending``, ``downloading``,
``paused``, ``completed``, ``failed``, ``cancelled``); ``method`` is ``kubepilot``.

This module is pure (no I/O) but for :class:`Downloads`, which reads the cache and writes through
the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.exceptions import HTTPException

from kubepilot_api.constants import API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_api.modelpull import ModelType
from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import AlreadyExists, ApiError, Conflict, KubeError, NotFound, resource_for
from kubepilot_gateway.profiles.sdcpp_studio.config import PROFILE_NAME, CatalogModel, Compat, SdcppSettings

JsonObject = dict[str, Any]
MODEL_PULLS = resource_for("ModelPull")
CATALOG = "sdcpp-models"
"""``spec.catalogRef.catalog`` and the catalog label's value."""
LABEL_CATALOG = f"{LABEL_PREFIX}catalog"
LABEL_CATALOG_ENTRY = f"{LABEL_PREFIX}catalog-entry"
PULL_LABELS = {LABEL_PROFILE: PROFILE_NAME, LABEL_CATALOG: CATALOG}
WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".ckpt", ".bin", ".pt", ".pth", ".onnx", ".sft")
TYPE_FOLDERS = frozenset(t.value for t in ModelType)
RUNNING_PHASES = ("Pending", "Downloading", "Paused")
FINISHED_PHASES = ("Completed", "Failed", "Cancelled")

NOT_FOUND = "Download not found"
NO_HUGGINGFACE = "Model has no HuggingFace configuration"
"""The product's texts."""
REPLACE_TIMED_OUT = "Timed out waiting for the previous download to be removed"

_DOC_STATUS = {"Pending": "downloading", "Downloading": "downloading", "Paused": "downloading"}
_PRODUCT_STATUS = {
    "Pending": "pending",
    "Downloading": "downloading",
    "Paused": "paused",
    "Completed": "completed",
    "Failed": "failed",
    "Cancelled": "cancelled",
    "Removing": "cancelled",
}


class NotDownloadable(ValueError):
    """A catalog entry whose files one ModelPull cannot fetch to where the catalog says."""


# -- the plan: a catalog entry as a ModelPull -------------------------------------------------------


def _safe_parts(relative: str) -> list[str]:
    parts = relative.strip().split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotDownloadable(f"unsafe path {relative!r}")
    return parts


def _destination(folder_parts: list[str]) -> JsonObject:
    if not folder_parts or folder_parts[0] not in TYPE_FOLDERS:
        folder = "/".join(folder_parts) or "(the models volume itself)"
        raise NotDownloadable(f"{folder} is not under a type folder of the models store")
    destination: JsonObject = {"modelType": folder_parts[0]}
    if len(folder_parts) > 1:
        destination["subdir"] = "/".join(folder_parts[1:])
    return destination


def plan(entry: CatalogModel) -> tuple[JsonObject, JsonObject]:
    """``(spec.source, spec.destination)`` of the entry's ModelPull; NotDownloadable with why."""
    repo = entry.huggingface.repo.strip()
    if not repo:
        raise NotDownloadable(NO_HUGGINGFACE)
    files = list(entry.files)
    if not files and entry.path.lower().endswith(WEIGHT_SUFFIXES):
        files = [entry.path]
    if not files:  # a folder: the whole repository lands in it
        return {"type": "HuggingFace", "huggingFace": {"repo": repo}}, _destination(_safe_parts(entry.path))
    folders = {tuple(_safe_parts(name)[:-1]) for name in files}
    if len(folders) > 1:
        raise NotDownloadable("the model's files lie in several folders; one download fetches into one")
    (folder,) = folders
    names = list(dict.fromkeys(posixpath.basename(name) for name in files))
    return {"type": "HuggingFace", "huggingFace": {"repo": repo, "files": names}}, _destination(list(folder))


def entry_label(model_id: str) -> str:
    """A label-safe, collision-free form of a model id: a readable slug and a hash of the id."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")[:30].strip("-")
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else digest


def pull_name(model_id: str) -> str:
    """The ModelPull of model ``model_id`` (≤ 48 characters, so the operator's child names fit)."""
    return f"sd-model-{entry_label(model_id)}"


def new_model_pull(entry: CatalogModel, *, credentials: tuple[str, str] | None = None) -> JsonObject:
    """The ModelPull that downloads ``entry``; ``credentials`` is the token's (Secret, key)."""
    source, destination = plan(entry)
    spec: JsonObject = {
        "source": source,
        "destination": destination,
        "displayName": entry.display_name,
        "catalogRef": {"catalog": CATALOG, "entry": entry.id},
        "deletePolicy": "Retain",
    }
    if credentials is not None:
        spec["credentialsSecretRef"] = {"name": credentials[0], "key": credentials[1]}
    labels = {**PULL_LABELS, LABEL_CATALOG_ENTRY: entry_label(entry.id)}
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelPull",
        "metadata": {"name": pull_name(entry.id), "labels": labels},
        "spec": spec,
    }


# -- reading a ModelPull ----------------------------------------------------------------------------


def _dict(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _int(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def epoch_ms(value: object) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def download_id(pull: JsonObject) -> str:
    return str(_dict(pull.get("metadata")).get("uid") or "")


def model_id(pull: JsonObject) -> str:
    """The catalog model a ModelPull downloads ('' when it is not one of ours)."""
    ref = _dict(_dict(pull.get("spec")).get("catalogRef"))
    return str(ref.get("entry") or "") if ref.get("catalog") == CATALOG else ""


def phase(pull: JsonObject) -> str:
    if _dict(pull.get("metadata")).get("deletionTimestamp"):
        return "Removing"
    return str(_dict(pull.get("status")).get("phase") or "Pending")


def running(pull: JsonObject) -> bool:
    return phase(pull) in RUNNING_PHASES


def pulled_files(pull: JsonObject) -> list[str]:
    files = _dict(pull.get("status")).get("files") or []
    return [str(f["path"]) for f in files if isinstance(f, dict) and f.get("path")]


def _bytes(pull: JsonObject) -> tuple[int, int]:
    """(bytes done, bytes total); total 0 while unknown, done = total once completed."""
    progress = _dict(_dict(pull.get("status")).get("progress"))
    done = _int(progress.get("bytesDone"))
    total = _int(progress.get("bytesTotal"), -1)
    if total < 0:
        total = _int(_dict(pull.get("spec")).get("expectedSizeBytes"), -1)
    total = max(total, 0)
    if phase(pull) == "Completed":
        installed = _int(_dict(pull.get("status")).get("installedSizeBytes"), -1)
        total = total or max(installed, done)
        done = max(done, total)
    return done, total


def fraction(pull: JsonObject) -> float:
    """Progress 0.0…1.0 (1.0 once completed)."""
    if phase(pull) == "Completed":
        return 1.0
    done, total = _bytes(pull)
    if total > 0:
        return round(min(done / total, 1.0), 4)
    percent = _int(_dict(_dict(pull.get("status")).get("progress")).get("percent"), -1)
    return percent / 100 if percent >= 0 else 0.0


def error_text(pull: JsonObject) -> str | None:
    current = phase(pull)
    if current in ("Cancelled", "Removing"):
        return "Download cancelled"
    if current != "Failed":
        return None
    status = _dict(pull.get("status"))
    message = _dict(status.get("error")).get("message")
    if not message:
        for condition in status.get("conditions") or []:
            if isinstance(condition, dict) and condition.get("type") == "Failed":
                message = condition.get("message")
    return str(message or "Download failed")


def status_word(pull: JsonObject, compat: Compat) -> str:
    current = phase(pull)
    if compat == "product":
        return _PRODUCT_STATUS.get(current, "pending")
    return _DOC_STATUS.get(current, "completed" if current == "Completed" else "failed")


def _format_bytes(count: int) -> str:
    number = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if number < 1024 or unit == "TB":
            return f"{number:.2f}".rstrip("0").rstrip(".") + f" {unit}"
        number /= 1024
    raise AssertionError("unreachable")


def _format_seconds(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def document_status(pull: JsonObject) -> JsonObject:
    """SD-30 as the document shows it."""
    done, total = _bytes(pull)
    return {
        "status": status_word(pull, "document"),
        "progress": fraction(pull),
        "bytes_downloaded": done,
        "total_bytes": total,
    }


def product_status(pull: JsonObject) -> JsonObject:
    """The product's download job object (its ``getDownloadStatus``)."""
    status = _dict(pull.get("status"))
    progress = _dict(status.get("progress"))
    done, total = _bytes(pull)
    speed = _int(progress.get("speedBytesPerSecond"))
    eta = _int(progress.get("etaSeconds"), -1)
    active = running(pull)
    files = []
    for item in status.get("files") or []:
        if not isinstance(item, dict):
            continue
        size = _int(item.get("sizeBytes"), -1)
        complete = item.get("state") == "Verified"
        files.append(
            {
                "path": str(item.get("path") or ""),
                "size": max(size, 0),
                "downloaded": max(size, 0) if complete else 0,
                "progress": 100 if complete else 0,
                "complete": complete,
                "error": "Download failed" if item.get("state") == "Failed" else None,
            }
        )
    current = str(progress.get("currentFile") or "") if active else ""
    names = [posixpath.basename(str(f["path"])) for f in files]
    base = posixpath.basename(current)
    current_index = names.index(base) if base and base in names else _int(progress.get("filesDone"))
    source = _dict(_dict(_dict(pull.get("spec")).get("source")).get("huggingFace"))
    finished = phase(pull) in FINISHED_PHASES
    return {
        "id": download_id(pull),
        "repo": str(source.get("repo") or ""),
        "status": status_word(pull, "product"),
        "method": "kubepilot",
        "progress": round(fraction(pull) * 100, 2),
        "bytesDownloaded": done,
        "totalBytes": total,
        "speed": f"{_format_bytes(speed)}/s" if active and speed > 0 else "--",
        "eta": _format_seconds(eta) if active and eta > 0 else "--",
        "currentFile": current or None,
        "currentFileIndex": current_index,
        "stderr": [],
        "files": files,
        "error": error_text(pull),
        "createdAt": epoch_ms(_dict(pull.get("metadata")).get("creationTimestamp")),
        "completedAt": epoch_ms(status.get("completedAt")) if finished else None,
    }


# -- the cluster side -------------------------------------------------------------------------------


def kube_failure(error: KubeError) -> HTTPException:
    detail = error.message if isinstance(error, ApiError) else str(error)
    return HTTPException(status_code=500, detail=detail)


class Downloads:
    """This profile's ModelPulls in the gateway's namespace: read from the cache, written through
    the store, waited on through the event bus."""

    def __init__(self, ctx: GatewayContext, settings: SdcppSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.namespace = ctx.settings.namespace

    def of_model(self, entry: CatalogModel) -> JsonObject | None:
        pull = self.ctx.cache.get(MODEL_PULLS, pull_name(entry.id), self.namespace)
        return pull if pull is not None and model_id(pull) == entry.id else None

    def find(self, download: str) -> JsonObject | None:
        """The ModelPull whose uid is ``download``."""
        for pull in self.ctx.cache.list(MODEL_PULLS, self.namespace, labels=PULL_LABELS):
            if download and download_id(pull) == download:
                return pull
        return None

    def require(self, download: str) -> JsonObject:
        pull = self.find(download)
        if pull is None:
            raise HTTPException(status_code=404, detail=NOT_FOUND)
        return pull

    async def _wait_gone(self, old: JsonObject) -> None:
        """Until the ModelPull ``old`` (by uid) no longer exists; subscribed before the first look."""
        name = str(_dict(old.get("metadata")).get("name"))
        uid = download_id(old)

        def gone() -> bool:
            current = self.ctx.cache.get(MODEL_PULLS, name, self.namespace)
            return current is None or download_id(current) != uid

        async with self.ctx.bus.subscribe(kinds=[MODEL_PULLS.kind], namespace=self.namespace) as events:
            if gone():
                return
            async with asyncio.timeout(self.settings.downloadReplaceTimeoutSeconds):
                async for item in events:
                    if isinstance(item, ResourceEvent) and item.name != name:
                        continue
                    if gone():
                        return
        raise TimeoutError

    async def _retire(self, pull: JsonObject) -> None:
        """Delete a finished ModelPull (its files stay: Retain) so the model can be pulled again."""
        name = str(_dict(pull.get("metadata")).get("name"))
        options: JsonObject = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
            "preconditions": {"uid": download_id(pull)},
        }
        try:
            if phase(pull) != "Removing":
                if _dict(pull.get("spec")).get("deletePolicy") != "Retain":
                    with contextlib.suppress(NotFound):
                        await self.ctx.store.patch(MODEL_PULLS, name, {"spec": {"deletePolicy": "Retain"}})
                # NotFound: gone already; Conflict: a concurrent start replaced it.
                with contextlib.suppress(NotFound, Conflict):
                    await self.ctx.client.request(
                        "DELETE", MODEL_PULLS.path(self.namespace, name), body=options
                    )
            await self._wait_gone(pull)
        except TimeoutError:
            raise HTTPException(status_code=500, detail=REPLACE_TIMED_OUT) from None
        except KubeError as error:
            raise kube_failure(error) from error

    async def start(
        self, entry: CatalogModel, files_present: Callable[[JsonObject], Awaitable[bool]]
    ) -> JsonObject:
        """The model's download: the running one, a completed one whose files are all there
        (``files_present``), else a new ModelPull (after removing the finished one)."""
        try:
            body = new_model_pull(entry, credentials=self._credentials())
        except NotDownloadable as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        pull = self.of_model(entry)
        if pull is not None:
            if running(pull) or (phase(pull) == "Completed" and await files_present(pull)):
                return pull
            await self._retire(pull)
        try:
            try:
                return await self.ctx.store.create(MODEL_PULLS, body)
            except AlreadyExists:  # a concurrent start won the race: its download is ours too
                return await self.ctx.store.get(MODEL_PULLS, pull_name(entry.id))
        except KubeError as error:
            raise kube_failure(error) from error

    async def cancel(self, pull: JsonObject, compat: Compat) -> JsonObject:
        """Cancel a running download (``spec.cancel``, one-way); 400 once it has finished."""
        if not running(pull):
            word = status_word(pull, "product")
            raise HTTPException(status_code=400, detail=f"Cannot cancel download with status: {word}")
        name = str(_dict(pull.get("metadata")).get("name"))
        try:
            return await self.ctx.store.patch(MODEL_PULLS, name, {"spec": {"cancel": True}})
        except NotFound:
            raise HTTPException(status_code=404, detail=NOT_FOUND) from None
        except KubeError as error:
            raise kube_failure(error) from error

    def _credentials(self) -> tuple[str, str] | None:
        secret = self.settings.hfTokenSecret.strip()
        return (secret, self.settings.hfTokenKey) if secret else None
