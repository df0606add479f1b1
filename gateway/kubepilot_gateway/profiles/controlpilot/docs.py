"""ControlPilot's docs endpoints (CP-46 … CP-49): the project's own markdown, safe paths only.

The docs root holds ``README.md``, ``CHANGELOG.md`` and ``docs/``, as the repository does. Which
root: the ``docsRoot`` setting; else the source checkout this package runs from (an editable
install, the dev stack); else ``<prefix>/share/kubepilot/docs`` of the installed environment, where
the gateway image is to copy them (``/opt/kubepilot/share/kubepilot/docs``). A requested path is
checked as text first (relative, no ``..``, no drive or ``:``, ``.md`` only; backslashes count as
``/``, as ControlPilot reads them) and then on the resolved real path, so a symbolic link that
leads out of ``docs/`` is refused as well.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

INVALID_PATH = "Invalid docs path"
FILE_NOT_FOUND = "Requested docs file not found"
README_NOT_FOUND = "README not found"
CHANGELOG_NOT_FOUND = "CHANGELOG not found"
"""ControlPilot's texts (seed-api-inventory §6.1)."""

README = "README.md"
CHANGELOG_NAMES = ("CHANGELOG.md", "CHANGELOG")
DOCS_DIR = "docs"
SITEMAP = "README.md"
INSTALLED_ROOT = Path(sys.prefix) / "share" / "kubepilot" / "docs"


class DocsError(Exception):
    """A request answered with ``status`` and ControlPilot's ``detail`` text."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def source_checkout() -> Path | None:
    """The repository this module runs from (it has ``pyproject.toml`` and ``README.md``), if any."""
    for folder in Path(__file__).resolve().parents:
        if (folder / "pyproject.toml").is_file() and (folder / README).is_file():
            return folder
    return None


def default_root(setting: str) -> Path:
    """The docs root for the ``docsRoot`` setting (empty: the checkout, else the installed copy)."""
    if setting:
        return Path(setting)
    return source_checkout() or INSTALLED_ROOT


def safe_relative(path: str) -> PurePosixPath:
    """``path`` as a relative ``.md`` path, or ``DocsError`` 400 (checked as text only)."""
    text = path.replace("\\", "/").strip()
    candidate = PurePosixPath(text)
    if (
        not text
        or candidate.is_absolute()
        or any(part in ("..", "") or ":" in part for part in text.split("/"))
        or candidate.suffix.lower() != ".md"
    ):
        raise DocsError(400, INVALID_PATH)
    return candidate


@dataclass(frozen=True)
class Docs:
    """The markdown under one root."""

    root: Path

    @property
    def docs_dir(self) -> Path:
        return self.root / DOCS_DIR

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
        except OSError:
            return None

    def readme(self) -> dict[str, str]:
        """CP-46: the top-level README."""
        content = self._read(self.root / README)
        if content is None:
            raise DocsError(404, README_NOT_FOUND)
        return {"content": content, "source": README}

    def changelog(self) -> dict[str, str]:
        """CP-47: ``CHANGELOG.md`` (or a bare ``CHANGELOG``); the source is named as ControlPilot names it."""
        for name in CHANGELOG_NAMES:
            content = self._read(self.root / name)
            if content is not None:
                return {"content": content, "source": "CHANGELOG"}
        raise DocsError(404, CHANGELOG_NOT_FOUND)

    def markdown_files(self) -> list[str]:
        """Every ``.md`` under ``docs/`` (relative, sorted), links not followed out of it."""
        base = self.docs_dir
        try:
            real_base = base.resolve(strict=True)
        except OSError:
            return []
        found = []
        for path in base.rglob("*.md"):
            try:
                if path.is_file() and path.resolve().is_relative_to(real_base):
                    found.append(path.relative_to(base).as_posix())
            except OSError:
                continue
        return sorted(found)

    def sitemap(self) -> dict[str, str]:
        """CP-48: ``docs/README.md``, or an index of ``docs/`` generated in its place (never a 404)."""
        content = self._read(self.docs_dir / SITEMAP)
        if content is None:
            content = fallback_sitemap([name for name in self.markdown_files() if name != SITEMAP])
        return {"content": content, "source": f"{DOCS_DIR}/{SITEMAP}"}

    def file(self, path: str) -> dict[str, str]:
        """CP-49: one ``.md`` under ``docs/``."""
        relative = safe_relative(path)
        try:
            base = self.docs_dir.resolve(strict=True)
        except OSError:
            raise DocsError(404, FILE_NOT_FOUND) from None
        target = (base / relative).resolve()
        if not target.is_relative_to(base):
            raise DocsError(400, INVALID_PATH)  # a link inside docs/ that leads out of it
        content = self._read(target)
        if content is None:
            raise DocsError(404, FILE_NOT_FOUND)
        return {"content": content, "source": f"{DOCS_DIR}/{relative.as_posix()}"}


def fallback_sitemap(names: list[str]) -> str:
    """A markdown index linking ``names`` (paths relative to ``docs/``)."""
    lines = ["# Documentation", ""]
    if names:
        lines += [f"- [{name.removesuffix('.md')}]({name})" for name in names]
    else:
        lines.append("No documentation pages were found.")
    return "\n".join(lines) + "\n"
