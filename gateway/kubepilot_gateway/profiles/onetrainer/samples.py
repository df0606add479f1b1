"""OT-15 … OT-17: the current session's sample images, read from its workspace on the outputs volume.

OneTrainer writes samples under ``<workspace>/samples``: one folder per default prompt (``<index> -
<prompt>``) and ``custom`` for custom samples, files named ``…-training-sample-<global step>-
<epoch>-<epoch step>.<ext>``. The adapter puts the workspace at ``<outputs>/<run output>/workspace``.
A sample's ``id`` is ``sample_`` and 12 hex digits of the sha256 of its path in the samples folder:
stable across gateway restarts and replicas, never a path a client can steer. ``timestamp`` is the
file's modification time as a naive ISO string (the seed's format); ``path`` the file as the
gateway sees it; ``metadata`` what the folder and file names say (kind, prompt, steps).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
DEFAULT_FOLDER = re.compile(r"^(?P<index>\d+) - (?P<prompt>.*)$")
PROGRESS = re.compile(r"-training-sample-(?P<step>\d+)-(?P<epoch>\d+)-(?P<epoch_step>\d+)$")
MAX_SAMPLES = 10_000


def samples_dir(outputs: str, run: JsonObject) -> Path | None:
    """The run's samples folder on the gateway's outputs volume (None when it is not mounted)."""
    if not outputs:
        return None
    output = str(
        (run.get("status") or {}).get("outputDir")
        or (run.get("spec") or {}).get("output", {}).get("name")
        or ""
    )
    if not output or ".." in output.split("/"):
        return None
    return Path(outputs) / output / "workspace" / "samples"


def sample_id(relative: str) -> str:
    return "sample_" + hashlib.sha256(relative.encode()).hexdigest()[:12]


def describe(root: Path, file: Path) -> JsonObject:
    relative = file.relative_to(root).as_posix()
    folder = file.parent.name
    metadata: JsonObject = {"kind": "custom" if folder == "custom" else "default", "file": file.name}
    if match := DEFAULT_FOLDER.match(folder):
        metadata["prompt"] = match["prompt"]
    if match := PROGRESS.search(file.stem):
        metadata |= {
            "global_step": int(match["step"]),
            "epoch": int(match["epoch"]),
            "epoch_step": int(match["epoch_step"]),
        }
    stamp = datetime.fromtimestamp(file.stat().st_mtime).replace(microsecond=0)
    return {
        "id": sample_id(relative),
        "timestamp": stamp.isoformat(),
        "path": str(file),
        "metadata": metadata,
    }


def scan(root: Path | None) -> list[JsonObject]:
    """Every sample under ``root``, newest first (symlinks leaving it are skipped)."""
    if root is None or not root.is_dir():
        return []
    resolved_root = root.resolve()
    found: list[JsonObject] = []
    for file in root.rglob("*"):
        if len(found) >= MAX_SAMPLES:
            break
        try:
            if file.suffix.lower() not in SUFFIXES or not file.is_file():
                continue
            if not file.resolve().is_relative_to(resolved_root):
                continue
            found.append(describe(root, file))
        except OSError:
            continue
    return sorted(found, key=lambda s: (s["timestamp"], s["path"]), reverse=True)
