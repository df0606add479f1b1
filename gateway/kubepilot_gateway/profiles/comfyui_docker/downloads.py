"""Presets as ModelPulls and ModelPulls as the dashboard's downloads, pure.

Installing a preset is ONE ModelPull named after the preset (``pull_name``: the API server is the
lock against two concurrent installs), of URL source type with every file of the preset, labelled
with the profile and carrying the download id as a label (``dl_`` and six digits, chosen at
creation and never changed: it resolves for as long as the ModelPull lives). Its destination is
the type folder the files share, or ``mixed`` when they span folders (checkpoint + VAE + text
encoder): each file's path then keeps its type folder. Files under a folder that is no model type
(the product's ``audio``, ``audio_encoders``, ``TTS``) cannot be pulled: the install is refused.

The seed's number formats live here: ``progress`` a percent with one decimal (45.2),
``speed_mbps`` MB/s (decimal megabytes) as a float, the WebSocket's ``speed`` ``"125 MB/s"`` and
``eta`` ``"2m 30s"`` strings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from typing import Any

from kubepilot_api.constants import GROUP, LABEL_PROFILE
from kubepilot_api.modelpull import TYPE_FOLDERS as _TYPE_FOLDERS
from kubepilot_api.modelpull import ModelType
from kubepilot_gateway.profiles.comfyui_docker.catalog import Preset

JsonObject = dict[str, Any]

PROFILE_NAME = "comfyui-docker"
CATALOG_NAME = "comfyui-presets"
LABEL_DOWNLOAD_ID = f"{GROUP}/download-id"
ANNOTATION_PRESET_ID = f"{GROUP}/preset-id"

TERMINAL = frozenset({"Completed", "Failed", "Cancelled"})
ACTIVE = frozenset({"Pending", "Downloading", "Paused"})

DOWNLOAD_STATUS = {
    "Pending": "queued",
    "Downloading": "downloading",
    "Paused": "paused",
    "Completed": "completed",
    "Failed": "failed",
    "Cancelled": "cancelled",
    "Removing": "removing",
}
PRESET_STATUS = {
    "Pending": "installing",
    "Downloading": "installing",
    "Paused": "paused",
    "Completed": "installed",
    "Failed": "failed",
    "Cancelled": "cancelled",
    "Removing": "uninstalling",
}
PRIORITIES = {"low": "Low", "normal": "Normal", "high": "High"}
MIXED = ModelType.MIXED.value
TYPE_FOLDERS = frozenset(_TYPE_FOLDERS)
"""The type folders a preset's files may live in (every ModelPull destination but ``mixed``)."""


def pull_name(preset_id: str) -> str:
    """The preset's ModelPull: a DNS name from the id, with a hash suffix so distinct ids never collide."""
    slug = re.sub(r"[^a-z0-9]+", "-", preset_id.lower()).strip("-")[:40] or "preset"
    digest = hashlib.sha256(preset_id.encode()).hexdigest()[:8]
    return f"cd-preset-{slug}-{digest}"


def new_download_id() -> str:
    return f"dl_{secrets.randbelow(1_000_000):06d}"


def install_folder(preset: Preset) -> str | None:
    """The one type folder every file of ``preset`` lives in, else None (the files span folders)."""
    folders = {f.folder for f in preset.files}
    if len(folders) != 1:
        return None
    (folder,) = folders
    return folder


def unsupported_folders(preset: Preset) -> list[str]:
    """The type folders of ``preset``'s files that a ModelPull cannot write to (the product's catalog
    has ``audio``, ``audio_encoders`` and ``TTS``, which the models volume has no type for)."""
    return sorted({f.folder for f in preset.files} - TYPE_FOLDERS)


def new_model_pull(preset: Preset, *, download_id: str, force: bool, priority: str) -> JsonObject:
    """The ONE ModelPull that installs ``preset``: destination its type folder when every file shares
    one, else ``mixed`` (each file's path keeps its type folder: ``checkpoints/x``, ``vae/y``)."""
    if not preset.files or unsupported_folders(preset):
        raise ValueError(f"preset {preset.id} has no files or files outside the models volume's type folders")
    folder = install_folder(preset)
    strip = len(folder) + 1 if folder is not None else 0
    urls: list[JsonObject] = []
    for item in preset.files:
        url: JsonObject = {"url": item.url, "path": item.path[strip:]}
        if item.size_bytes >= 0:
            url["sizeBytes"] = item.size_bytes
        if item.sha256:
            url["sha256"] = item.sha256
        urls.append(url)
    total = preset.size_bytes if all(f.size_bytes >= 0 for f in preset.files) else -1
    return {
        "metadata": {
            "name": pull_name(preset.id),
            "labels": {LABEL_PROFILE: PROFILE_NAME, LABEL_DOWNLOAD_ID: download_id},
            "annotations": {ANNOTATION_PRESET_ID: preset.id},
        },
        "spec": {
            "source": {"type": "URL", "urls": urls},
            "destination": {"modelType": folder if folder is not None else MIXED},
            "displayName": preset.name[:253],
            "category": preset.category[:253],
            "catalogRef": {"catalog": CATALOG_NAME, "entry": preset.id},
            "expectedSizeBytes": total,
            "force": force,
            "priority": PRIORITIES[priority],
        },
    }


def listed_paths(pull: JsonObject) -> list[str]:
    """The model paths (relative to the models volume) of the URL files ``pull``'s spec lists: under
    its type folder (and subdir), or as written for a ``mixed`` pull."""
    spec = pull.get("spec") or {}
    destination = spec.get("destination") or {}
    folder = str(destination.get("modelType") or "")
    subdir = str(destination.get("subdir") or "")
    base = "" if folder == MIXED else (f"{folder}/{subdir}" if subdir else folder)
    paths = []
    for item in (spec.get("source") or {}).get("urls") or []:
        path = str(item.get("path") or "")
        paths.append(f"{base}/{path}" if base else path)
    return paths


# -- reading a ModelPull -------------------------------------------------------------------------


def meta(pull: JsonObject) -> JsonObject:
    return pull.get("metadata") or {}


def status(pull: JsonObject) -> JsonObject:
    return pull.get("status") or {}


def progress(pull: JsonObject) -> JsonObject:
    return status(pull).get("progress") or {}


def download_id(pull: JsonObject) -> str:
    return str((meta(pull).get("labels") or {}).get(LABEL_DOWNLOAD_ID) or "")


def preset_id(pull: JsonObject) -> str:
    annotations = meta(pull).get("annotations") or {}
    ref = (pull.get("spec") or {}).get("catalogRef") or {}
    return str(annotations.get(ANNOTATION_PRESET_ID) or ref.get("entry") or "")


def phase(pull: JsonObject) -> str:
    """The phase, with a requested cancel or pause already showing (the operator confirms it)."""
    found = str(status(pull).get("phase") or "Pending")
    spec = pull.get("spec") or {}
    if meta(pull).get("deletionTimestamp"):
        return "Removing"
    if found in TERMINAL:
        return found
    if spec.get("cancel"):
        return "Cancelled"
    return "Paused" if spec.get("paused") else found


def percent(pull: JsonObject) -> float:
    """Progress in percent with one decimal; 100 once completed, 0 while unknown."""
    if phase(pull) == "Completed":
        return 100.0
    done, total = int(progress(pull).get("bytesDone") or 0), int(progress(pull).get("bytesTotal") or -1)
    if total <= 0:
        whole = int(progress(pull).get("percent", -1))
        return float(max(whole, 0))
    return min(round(done * 100.0 / total, 1), 100.0)


def speed_mbps(pull: JsonObject) -> float:
    """Recent speed in MB/s (the seed's ``mbps`` is megabytes), one decimal; 0 unless downloading."""
    if phase(pull) != "Downloading":
        return 0.0
    return round(int(progress(pull).get("speedBytesPerSecond") or 0) / 1e6, 1)


def eta_seconds(pull: JsonObject) -> int:
    if phase(pull) == "Completed":
        return 0
    return max(int(progress(pull).get("etaSeconds", -1)), 0) if phase(pull) == "Downloading" else 0


def format_speed(bytes_per_second: int) -> str:
    """``"125 MB/s"`` (the seed's WebSocket format): whole units, KB/s below one MB/s."""
    if bytes_per_second >= 1e6:
        return f"{bytes_per_second / 1e6:.0f} MB/s"
    if bytes_per_second >= 1e3:
        return f"{bytes_per_second / 1e3:.0f} KB/s"
    return f"{bytes_per_second} B/s"


def format_eta(seconds: int) -> str:
    """``"2m 30s"``, ``"1h 5m"``, ``"45s"``; ``"unknown"`` when not known."""
    if seconds < 0:
        return "unknown"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def files_counts(pull: JsonObject, total_files: int = -1) -> JsonObject:
    """Files total / completed / failed; the total is the pull's own list until the worker counts."""
    if total_files < 0:
        total_files = len(((pull.get("spec") or {}).get("source") or {}).get("urls") or [])
    prog = progress(pull)
    total = int(prog.get("filesTotal", -1))
    done = int(prog.get("filesDone") or 0)
    if phase(pull) == "Completed":
        done = max(done, total if total >= 0 else total_files)
    return {
        "total": total if total >= 0 else total_files,
        "completed": done,
        "failed": int(prog.get("filesFailed") or 0),
    }


def current_file(pull: JsonObject) -> str | None:
    return str(progress(pull).get("currentFile") or "") or None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def time_taken_seconds(pull: JsonObject) -> int:
    """From creation to completion (whole seconds)."""
    begin = _parse_time(meta(pull).get("creationTimestamp"))
    end = _parse_time(status(pull).get("completedAt"))
    if begin is None or end is None:
        return 0
    return max(int((end - begin).total_seconds()), 0)


def finished_at(pull: JsonObject) -> datetime | None:
    return _parse_time(status(pull).get("completedAt"))


def install_date(pull: JsonObject | None) -> str | None:
    when = finished_at(pull) if pull is not None and phase(pull) == "Completed" else None
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


# -- renderings ----------------------------------------------------------------------------------


def download_row(pull: JsonObject) -> JsonObject:
    """GET /api/downloads row."""
    return {
        "id": download_id(pull),
        "preset_id": preset_id(pull),
        "status": DOWNLOAD_STATUS.get(phase(pull), phase(pull).lower()),
        "progress": percent(pull),
        "speed_mbps": speed_mbps(pull),
        "eta_seconds": eta_seconds(pull),
        "current_file": current_file(pull),
    }


def preset_status(preset: Preset, pull: JsonObject | None, *, installed: bool) -> JsonObject:
    """GET /api/presets/{id}/status."""
    if pull is None:
        state = "installed" if installed else "not_installed"
        counts = {"total": len(preset.files), "completed": len(preset.files) if installed else 0, "failed": 0}
        return {
            "preset_id": preset.id,
            "status": state,
            "progress": 100.0 if installed else 0.0,
            "current_file": None,
            "download_speed_mbps": 0.0,
            "eta_seconds": 0,
            "files": counts,
        }
    state = PRESET_STATUS.get(phase(pull), phase(pull).lower())
    if state == "installed" and not installed:
        state = "not_installed"  # completed once, but files were deleted since
    return {
        "preset_id": preset.id,
        "status": state,
        "progress": percent(pull),
        "current_file": current_file(pull),
        "download_speed_mbps": speed_mbps(pull),
        "eta_seconds": eta_seconds(pull),
        "files": files_counts(pull, len(preset.files)),
    }


def progress_message(pull: JsonObject) -> JsonObject:
    """The WebSocket's ``download_progress``."""
    counts = files_counts(pull)
    speed = int(progress(pull).get("speedBytesPerSecond") or 0) if phase(pull) == "Downloading" else 0
    eta = int(progress(pull).get("etaSeconds", -1)) if phase(pull) == "Downloading" else -1
    return {
        "type": "download_progress",
        "data": {
            "download_id": download_id(pull),
            "preset_id": preset_id(pull),
            "progress": percent(pull),
            "current_file": current_file(pull),
            "speed": format_speed(speed),
            "eta": format_eta(eta),
            "files": {"total": counts["total"], "completed": counts["completed"]},
        },
    }


def complete_message(pull: JsonObject) -> JsonObject:
    """The WebSocket's ``download_complete``."""
    return {
        "type": "download_complete",
        "data": {
            "download_id": download_id(pull),
            "preset_id": preset_id(pull),
            "status": "success",
            "time_taken_seconds": time_taken_seconds(pull),
        },
    }


def failure_message(pull: JsonObject) -> JsonObject:
    """A failed download as the WebSocket's ``error`` (``DOWNLOAD_FAILED``)."""
    error = status(pull).get("error") or {}
    return {
        "type": "error",
        "data": {
            "code": "DOWNLOAD_FAILED",
            "message": str(error.get("message") or "Model download failed"),
            "details": {
                "download_id": download_id(pull),
                "preset_id": preset_id(pull),
                "file": current_file(pull),
                "error": str(error.get("reason") or error.get("code") or ""),
            },
        },
    }


def events_for(old: JsonObject | None, new: JsonObject) -> list[JsonObject]:
    """The downloads channel's messages for one change of a ModelPull (old → new)."""
    before = phase(old) if old is not None else None
    now = phase(new)
    if old is None and now not in ACTIVE:
        # A finished pull seen for the first time (the cache's first listing, a relist): nothing happened.
        return []
    if now == "Completed" and before != "Completed":
        return [complete_message(new)]
    if now == "Failed" and before != "Failed":
        return [failure_message(new)]
    if now in ACTIVE and (old is None or progress(old) != progress(new) or before != now):
        return [progress_message(new)]
    return []
