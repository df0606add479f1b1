"""One file to fetch, whatever its source, and the checks on the paths sources give us."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath

from kubepilot_workers.downloader.errors import DownloadError, ErrorCode


class Transport(StrEnum):
    """How the bytes are fetched."""

    HUGGING_FACE = "huggingface"
    """``huggingface_hub``'s metadata call and transfer (Hub auth, redirects, its own retries)."""
    HTTP = "http"
    """Plain HTTP(S) with Range resume (Civitai and URL sources)."""


@dataclass(frozen=True)
class FileTask:
    """A file of the pull: where it comes from, what it must hash to, where it lands."""

    relative_path: str
    """Path under the target folder (already checked by :func:`safe_relative_path`)."""
    url: str
    transport: Transport
    identity: str
    """Stable name of the source bytes (URL, repo@commit:path): names the partial file if no sha."""
    size: int | None = None
    """Exact size when the source states it; None when unknown."""
    size_hint: int | None = None
    """Approximate size for progress before the transfer says (Civitai rounds to KB)."""
    sha256: str | None = None
    """Expected sha256 (hex, lower case); None when the source gives none."""
    git_sha1: str | None = None
    """Expected git blob id (Hugging Face files not stored in LFS)."""
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Request headers (may hold credentials: never logged, hence ``repr=False``)."""

    @property
    def partial_key(self) -> str:
        """Name of the ``.part`` file: the content hash when known (any source of those bytes resumes it)."""
        if self.sha256:
            return f"sha256-{self.sha256}"
        return "id-" + hashlib.sha256(self.identity.encode()).hexdigest()[:40]


def safe_relative_path(path: str, what: str) -> str:
    """``path`` as a normalised relative POSIX path, refusing absolute paths and ``..`` escapes."""
    cleaned = path.replace("\\", "/").strip()
    parts = [p for p in PurePosixPath(cleaned).parts if p not in ("", ".")]
    if not cleaned or cleaned.startswith("/") or not parts or any(p == ".." for p in parts):
        raise DownloadError(ErrorCode.INVALID_CONFIG, f"{what}: unsafe file path {path!r}")
    return "/".join(parts)


def git_blob_sha1(data_size: int, chunks: list[bytes] | None = None) -> hashlib._Hash:
    """A sha1 primed with git's blob header; feed it the file's bytes to get its git object id."""
    digest = hashlib.sha1(f"blob {data_size}\0".encode(), usedforsecurity=False)
    for chunk in chunks or []:
        digest.update(chunk)
    return digest
