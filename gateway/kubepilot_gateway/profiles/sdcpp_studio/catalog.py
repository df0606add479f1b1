"""Pure: the model catalog's answers (SD-22…26, SD-32) from a catalog entry, the files found on
the models volume and the model's ServiceInstance (if any)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from kubepilot_api.constants import LABEL_PREFIX
from kubepilot_gateway.profiles.sdcpp_studio.config import CatalogModel

JsonObject = dict[str, Any]
LABEL_MODEL = f"{LABEL_PREFIX}sdcpp-model"
"""Names the catalog model a ServiceInstance serves."""
STATUS_OF_PHASE = {
    "Stopped": "stopped",
    "Starting": "starting",
    "Running": "running",
    "Stopping": "stopping",
    "Error": "error",
}
RESERVED_IDS = frozenset({"running", "downloaded", "download"})


def files_of(entry: CatalogModel) -> list[str]:
    return list(entry.files) or [entry.path]


def file_status(entry: CatalogModel, models_root: str, found: Mapping[str, bool]) -> JsonObject:
    """``{allFilesExist, files: [{fileName, exists, filePath}]}``; ``found`` says which exist."""
    files = [
        {
            "fileName": posixpath.basename(name.rstrip("/")),
            "exists": bool(found.get(name)),
            "filePath": posixpath.join(models_root, name),
        }
        for name in files_of(entry)
    ]
    return {"allFilesExist": all(f["exists"] for f in files), "files": files}


def model_status(service: JsonObject | None) -> str:
    """A model's process status: its ServiceInstance's phase (``stopped`` without one), except that
    a service asked to run that has no phase yet reads ``starting``, and one asked to stop that
    still runs ``stopping``."""
    if service is None:
        return "stopped"
    phase = (service.get("status") or {}).get("phase")
    wanted = bool((service.get("spec") or {}).get("running", True))
    if wanted and not phase:
        return "starting"
    status = STATUS_OF_PHASE.get(str(phase or "Stopped"), "stopped")
    return "stopping" if not wanted and status in ("starting", "running") else status


def model_object(
    entry: CatalogModel, models_root: str, found: Mapping[str, bool], service: JsonObject | None
) -> JsonObject:
    return {
        "id": entry.id,
        "name": entry.display_name,
        "description": entry.description,
        "capabilities": list(entry.capabilities),
        "exec_mode": entry.exec_mode,
        "mode": entry.mode,
        "port": entry.port,
        "status": model_status(service),
        "fileStatus": file_status(entry, models_root, found),
        "huggingface": {"repo": entry.huggingface.repo} if entry.huggingface.repo else None,
    }
