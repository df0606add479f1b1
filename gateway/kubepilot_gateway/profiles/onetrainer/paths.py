"""Where a OneTrainer config's files are: the gateway's view of the three volumes. Pure but for stat.

OneTrainer's clients send paths as their machine sees them. Here a path is accepted when it lies,
symlinks resolved, inside one of the volumes the gateway mounts (``settings.volumes``): a config
file (``config_path``) on the datasets or outputs volume, the base model (``base_model_name``)
on the models volume, each concept folder on the datasets volume. A relative path is taken
relative to the first volume it may be on (for ``config_path``: the datasets volume). Anything
else is refused with a 400 that names it: it is a folder no trainer pod can see, and reading it
in the gateway would expose the gateway's own files.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from kubepilot_gateway.profiles.onetrainer.session import StartRefused

JsonObject = dict[str, Any]
MAX_PATH_CHARS = 4096
NAME_MAX_BYTES = 255
"""Linux's PATH_MAX and NAME_MAX: a longer path or name is refused before any file call (which would
raise ``ENAMETOOLONG``)."""


def contained(raw: str, roots: dict[str, str], what: str) -> tuple[str, str]:
    """(volume name, path relative to it) for ``raw``; StartRefused when it is on none of ``roots``.

    ``roots`` maps a volume's name to the gateway's folder of it (empty: not mounted)."""
    text = raw.strip() if isinstance(raw, str) else ""
    where = " or ".join(f"the {name} volume" for name in roots)
    if not text or "\x00" in text:
        raise StartRefused(f"{what} must be a path on {where}")
    if ".." in text.replace("\\", "/").split("/"):
        raise StartRefused(f"{what} must not contain '..': {raw}")
    if len(text) > MAX_PATH_CHARS or any(len(part.encode()) > NAME_MAX_BYTES for part in text.split("/")):
        raise StartRefused(f"{what} is too long to be a path")
    for name, root in roots.items():
        if not root:
            continue
        try:
            base = Path(root).resolve()
            candidate = Path(text) if text.startswith("/") else base / text
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop, a folder we may not read
            raise StartRefused(f"{what} cannot be read: {raw}") from error
        if resolved == base or resolved.is_relative_to(base):
            relative = resolved.relative_to(base).as_posix()
            return name, "" if relative == "." else relative
    raise StartRefused(f"{what} must be a path on {where}: {raw}")


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the file system refuses to say (permissions, odd names)."""
    try:
        return path.is_file()
    except OSError:
        return False


def is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where the file system refuses to say."""
    try:
        return path.is_dir()
    except OSError:
        return False


def exists(path: Path) -> bool:
    """``path.exists()``, False where the file system refuses to say."""
    try:
        return path.exists()
    except OSError:
        return False


def common_folder(relatives: list[str]) -> str:
    """The deepest folder every one of ``relatives`` is in ('' for the volume's root)."""
    if not relatives:
        return ""
    common = posixpath.commonpath(relatives) if len(relatives) > 1 else relatives[0]
    return "" if common == "." else common


def enabled_concepts(config: JsonObject) -> list[tuple[int, JsonObject, str]]:
    """(index, entry, folder) of the config's enabled inline concepts that name a folder."""
    concepts = config.get("concepts")
    if not isinstance(concepts, list):
        return []
    found = []
    for index, concept in enumerate(concepts):
        if isinstance(concept, dict) and concept.get("enabled", True) is not False:
            path = concept.get("path")
            if isinstance(path, str) and path.strip():
                found.append((index, concept, path.strip()))
    return found
