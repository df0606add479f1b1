"""The content-addressed blob store and the type folder that links into it.

Layout under ``storeDir``::

    blobs/<sha256>        verified content, read-only, one inode per distinct content
    partial/<key>.part    downloads in progress (resumed by the next run)
    refs/<key>            sha256 of sources that publish no hash (plain URLs), recorded once verified

A file in the type folder (``targetDir/<repo-relative path>``) is a **hard link** to its blob:
tools that refuse symlinks (or resolve them to the blob name) still see a plain file, the bytes
exist once however many pulls share them, and deleting one pull's file leaves the others'. When
the models volume cannot hard-link (another filesystem, a link-count limit) the blob is **copied**
instead. Both go through a temporary name and ``os.replace``, so a reader never sees a partial file.

A blob only ever gets its name after its sha256 was verified, which makes "the type folder file is
the same inode as ``blobs/<sha>``" the proof that it is complete and verified: re-runs skip such
files without reading them. A copy (or a file of unknown origin) is re-hashed instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

LINK_FALLBACK_ERRNOS = {errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP, errno.EACCES}


class BlobStore:
    """Blobs by sha256, partial files and source refs under one folder of the models volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.partials = root / "partial"
        self.refs = root / "refs"

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def partial_path(self, key: str) -> Path:
        return self.partials / f"{key}.part"

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def promote(self, part: Path, sha256: str, *, replace: bool = False) -> Path:
        """Move a verified partial file to its blob name (atomic; an existing blob wins unless replace)."""
        blob = self.blob_path(sha256)
        blob.parent.mkdir(parents=True, exist_ok=True)
        if blob.is_file() and not replace:
            part.unlink(missing_ok=True)
            return blob
        part.chmod(0o444)  # hard links share the inode: keep tools from editing the verified bytes in place
        part.replace(blob)
        return blob

    def adopt(self, existing: Path, sha256: str) -> Path:
        """Make a verified file found in the type folder the blob for its hash (hard link, else copy)."""
        blob = self.blob_path(sha256)
        if not blob.is_file():
            blob.parent.mkdir(parents=True, exist_ok=True)
            self._link_or_copy(existing, blob)
        return blob

    def place(self, blob: Path, destination: Path) -> str:
        """Make ``destination`` the blob's content atomically; returns ``hardlink`` or ``copy``."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if destination.samefile(blob):
                return "hardlink"
        return self._link_or_copy(blob, destination)

    def is_placed(self, destination: Path, sha256: str) -> bool:
        """True when ``destination`` is the very inode of the verified blob ``sha256``."""
        try:
            return destination.samefile(self.blob_path(sha256))
        except OSError:
            return False

    def read_ref(self, key: str) -> str | None:
        """The sha256 recorded for a source without a published hash."""
        try:
            value = (self.refs / key).read_text().strip()
        except OSError:
            return None
        return value if len(value) == 64 else None

    def write_ref(self, key: str, sha256: str) -> None:
        self.refs.mkdir(parents=True, exist_ok=True)
        temporary = self.refs / f".{key}.{os.getpid()}.tmp"
        temporary.write_text(sha256)
        temporary.replace(self.refs / key)

    def _link_or_copy(self, source: Path, destination: Path) -> str:
        temporary = destination.with_name(f".{destination.name}.{os.getpid()}.kubepilot-tmp")
        temporary.unlink(missing_ok=True)
        try:
            try:
                os.link(source, temporary)
                how = "hardlink"
            except OSError as error:
                if error.errno not in LINK_FALLBACK_ERRNOS:
                    raise
                log.info("hard link into %s not possible (%s); copying", destination.parent, error.strerror)
                shutil.copyfile(source, temporary)
                how = "copy"
            temporary.replace(destination)
        finally:
            temporary.unlink(missing_ok=True)
        return how
