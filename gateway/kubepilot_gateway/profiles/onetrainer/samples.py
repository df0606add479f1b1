"""OT-15 … OT-17: the current session's sample images, read from its workspace on the outputs volume.

OneTrainer writes samples under ``<workspace>/samples``: one folder per default prompt (``<index> -
<prompt>``) and ``custom`` for custom samples, files named ``…-training-sample-<global step>-
<epoch>-<epoch step>.<ext>``. The adapter puts the workspace at ``<outputs>/<run output>/workspace``.
A sample's ``id`` is ``sample_`` and 12 hex digits of the sha256 of its path in the samples folder:
stable across gateway restarts and replicas, never a path a client can steer. ``timestamp`` is the
file's modification time as a naive ISO string (the seed's format); ``path`` the file as the
gateway sees it; ``metadata`` what the folder and file names say (kind, prompt, steps).

A session on the built-in trainer writes ``<outputs>/<run output>/samples/step<8 digits>-<index>-
<prompt slug>.png``, each with a ``.json`` of its parameters beside it: ``metadata`` then has the
``global_step`` from the name, the ``prompt`` (and negative prompt, seed, steps, CFG, size, in
OT-14's names) from that file, and
``kind`` ``default`` when the prompt is one of the run's sample prompts, else ``custom`` (the
built-in trainer writes both into one folder).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
DEFAULT_FOLDER = re.compile(r"^(?P<index>\d+) - (?P<prompt>.*)$")
PROGRESS = re.compile(r"-training-sample-(?P<step>\d+)-(?P<epoch>\d+)-(?P<epoch_step>\d+)$")
BUILTIN_NAME = re.compile(r"^step(?P<step>\d{8})-(?P<index>\d{2})-")
BUILTIN_TRAINER = "kubepilot-lora"
BUILTIN_PARAMETERS = {
    "prompt": "prompt",
    "negativePrompt": "negative_prompt",
    "seed": "seed",
    "steps": "steps",
    "cfgScale": "cfg_scale",
    "width": "width",
    "height": "height",
}
"""The sample's parameters file (the generator's camelCase) → metadata keys (OT-14's names)."""
MAX_SIDECAR_BYTES = 1 << 16
MAX_SAMPLES = 10_000


def is_builtin(run: JsonObject) -> bool:
    return bool((run.get("spec") or {}).get("trainer") == BUILTIN_TRAINER)


def default_prompts(run: JsonObject) -> list[str]:
    """A built-in run's sample prompts (``spec.hyperparameters.samplePrompts``)."""
    prompts = ((run.get("spec") or {}).get("hyperparameters") or {}).get("samplePrompts")
    return [str(p) for p in prompts] if isinstance(prompts, list) else []


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
    if is_builtin(run):
        return Path(outputs) / output / "samples"
    return Path(outputs) / output / "workspace" / "samples"


def sample_id(relative: str) -> str:
    return "sample_" + hashlib.sha256(relative.encode()).hexdigest()[:12]


def builtin_metadata(file: Path, prompts: list[str]) -> JsonObject:
    """A built-in trainer sample's metadata: its name's step, its parameters file's settings."""
    metadata: JsonObject = {"kind": "custom", "file": file.name}
    if match := BUILTIN_NAME.match(file.name):
        metadata["global_step"] = int(match["step"])
    sidecar = file.with_suffix(".json")
    document: Any = None
    try:
        if sidecar.is_file() and sidecar.stat().st_size <= MAX_SIDECAR_BYTES:
            document = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        document = None
    if isinstance(document, dict):
        metadata |= {name: document[key] for key, name in BUILTIN_PARAMETERS.items() if key in document}
    if metadata.get("prompt") in prompts:
        metadata["kind"] = "default"
    return metadata


def describe(root: Path, file: Path, prompts: list[str] | None = None) -> JsonObject:
    """``prompts``: None for OneTrainer's layout, else a built-in run's sample prompts."""
    relative = file.relative_to(root).as_posix()
    stamp = datetime.fromtimestamp(file.stat().st_mtime).replace(microsecond=0)
    if prompts is not None:
        return {
            "id": sample_id(relative),
            "timestamp": stamp.isoformat(),
            "path": str(file),
            "metadata": builtin_metadata(file, prompts),
        }
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
    return {
        "id": sample_id(relative),
        "timestamp": stamp.isoformat(),
        "path": str(file),
        "metadata": metadata,
    }


def scan(root: Path | None, prompts: list[str] | None = None) -> list[JsonObject]:
    """Every sample under ``root``, newest first (symlinks leaving it are skipped); ``prompts`` as
    for ``describe``."""
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
            found.append(describe(root, file, prompts))
        except OSError:
            continue
    return sorted(found, key=lambda s: (s["timestamp"], s["path"]), reverse=True)
