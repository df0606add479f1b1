"""Files the repository commits but a program writes (CRDs, RBAC rules): write one when it changed,
or describe how the committed copy drifted from what the program would write."""

from __future__ import annotations

import difflib
from pathlib import Path


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` (folders made) unless it is there already; whether it wrote."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def drift(path: Path, text: str, max_lines: int = 60) -> str:
    """A short unified diff from the committed ``path`` to ``text``; '' when they are equal."""
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current == text:
        return ""
    diff = difflib.unified_diff(
        current.splitlines(keepends=True), text.splitlines(keepends=True), str(path), "generated", n=1
    )
    return "".join(list(diff)[:max_lines]) or f"{path}: missing"
