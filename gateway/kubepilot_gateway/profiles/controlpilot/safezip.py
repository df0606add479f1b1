"""Safe extraction of client-sent zip archives, and writing a folder back into a zip.

A dataset zip comes from a browser, so every entry is hostile until checked. ``extract`` refuses
the whole archive (``ZipRejected``, a client error) when any entry

- names an absolute path, a drive (``C:``), a ``..`` step, a NUL or control character, a ``:``
  (NTFS streams, drives), or a name longer than the filesystem takes;
- is a symbolic link, a device, a FIFO or a socket (the Unix mode in the external attributes);
- is encrypted, or uses a compression method this Python cannot read;
- appears twice, or is both a file and the folder of another entry;
- would land outside the destination: each parent is created one step at a time and a step that
  already exists as a symlink is refused, the resolved real path of the parent must lie under the
  resolved destination, and files are opened with ``O_NOFOLLOW | O_EXCL``;
- or makes the archive a bomb: more entries than ``max_entries``, an entry larger than
  ``max_entry_bytes``, more than ``max_total_bytes`` in all, or an expansion beyond
  ``max_ratio`` times its compressed size (checked for entries, and for the archive against its
  file size, once more than ``ratio_min_bytes`` came out: small files of zeros legitimately
  compress a thousandfold). The declared sizes are checked before anything is written, and the
  bytes actually inflated are counted again while streaming, so a header that lies gains nothing.

A truncated or corrupt archive (bad central directory, CRC mismatch, inflate error) is a
``ZipRejected`` too. Extraction writes only below ``dest``; the caller extracts into a fresh
staging folder and throws it away on any error, so a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 1024 * 1024
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4000
FILE_MODE = 0o644
STAGING_PREFIX = ".kubepilot-tmp-"
"""Names of work in progress on the volume (hidden; removed on error, swept when stale)."""
DIR_MODE = 0o755


class ZipRejected(ValueError):
    """The archive was refused; the message says why, for the client."""


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what one archive may expand into."""

    max_total_bytes: int
    max_entries: int
    max_entry_bytes: int
    max_ratio: float
    ratio_min_bytes: int


@dataclass(frozen=True)
class Extracted:
    """What an extraction wrote."""

    files: int
    bytes: int


def _mode_kind(info: zipfile.ZipInfo) -> str:
    """``file``, ``dir`` or the name of a refused kind, from the Unix mode when the archive has one."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == 0:
        # No Unix mode (a DOS/Windows archive): the trailing slash decides.
        return "dir" if info.is_dir() else "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "dir" if info.is_dir() else "file"
    return "special file"


def member_parts(name: str) -> tuple[str, ...]:
    """The path steps of entry ``name`` below the destination; ``ZipRejected`` when unsafe.

    Backslashes count as separators (archives made on Windows); ``.`` steps and empty steps are
    dropped; anything that could leave the destination or name something odd is refused.
    """
    text = name.replace("\\", "/")
    if text.startswith("/"):
        raise ZipRejected(f"Unsafe zip: absolute path {name!r}")
    parts = tuple(part for part in PurePosixPath(text).parts if part not in ("", "."))
    for part in parts:
        if part == "..":
            raise ZipRejected(f"Unsafe zip: parent step in {name!r}")
        if ":" in part:
            raise ZipRejected(f"Unsafe zip: drive or stream name in {name!r}")
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in part):
            raise ZipRejected(f"Unsafe zip: control character in {name!r}")
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES:
            raise ZipRejected(f"Unsafe zip: name too long in {name[:80]!r}...")
    if len(text.encode("utf-8", "surrogateescape")) > PATH_MAX_BYTES:
        raise ZipRejected(f"Unsafe zip: path too long: {name[:80]!r}...")
    return parts


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool


def _check_bomb(info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    if info.file_size > limits.max_entry_bytes:
        raise ZipRejected(
            f"Zip entry {info.filename!r} is too large ({info.file_size} bytes > {limits.max_entry_bytes})"
        )
    if info.file_size > limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(
        info.compress_size, 1
    ):
        raise ZipRejected(
            f"Zip entry {info.filename!r} expands too much (compression ratio over {limits.max_ratio:g})"
        )


def _plan(archive: zipfile.ZipFile, limits: ZipLimits) -> list[_Entry]:
    """Every entry checked from the central directory, before anything is written."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ZipRejected(f"Zip has too many entries ({len(infos)} > {limits.max_entries})")
    entries: list[_Entry] = []
    files: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    declared = 0
    for info in infos:
        kind = _mode_kind(info)
        if kind not in ("file", "dir"):
            raise ZipRejected(f"Unsafe zip: {info.filename!r} is a {kind}")
        if info.flag_bits & 0x1:
            raise ZipRejected(f"Zip entry {info.filename!r} is encrypted")
        parts = member_parts(info.filename)
        if not parts:
            continue
        is_dir = kind == "dir"
        if not is_dir:
            _check_bomb(info, limits)
            declared += info.file_size
            if parts in files or parts in dirs:
                raise ZipRejected(f"Zip has {info.filename!r} twice")
            files.add(parts)
        else:
            dirs.add(parts)
        entries.append(_Entry(info, parts, is_dir))
    if declared > limits.max_total_bytes:
        raise ZipRejected(f"Zip expands to too much data ({declared} bytes > {limits.max_total_bytes})")
    for parts in files:
        for depth in range(1, len(parts)):
            if parts[:depth] in files:
                raise ZipRejected(f"Zip has {'/'.join(parts[:depth])!r} both as a file and as a folder")
    return entries


def _inside(root_real: str, path: str) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([root_real, real]) == root_real


def _make_parents(dest: Path, root_real: str, parts: Iterable[str]) -> Path:
    """Create the folders ``parts`` below ``dest`` one step at a time, never through a symlink."""
    current = dest
    for part in parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            current.mkdir(DIR_MODE)
            continue
        if stat.S_ISLNK(info.st_mode):
            raise ZipRejected(f"Unsafe zip: {current.relative_to(dest).as_posix()!r} goes through a symlink")
        if not stat.S_ISDIR(info.st_mode):
            raise ZipRejected(
                f"Zip has {current.relative_to(dest).as_posix()!r} both as a file and as a folder"
            )
    if not _inside(root_real, str(current)):
        raise ZipRejected(f"Unsafe zip: {current.relative_to(dest).as_posix()!r} escapes the destination")
    return current


class _Budget:
    """Bytes actually inflated, against the limits (the headers may lie)."""

    def __init__(self, limits: ZipLimits, archive_bytes: int) -> None:
        self.limits = limits
        self.archive_bytes = max(archive_bytes, 1)
        self.total = 0

    def take(self, info: zipfile.ZipInfo, entry_bytes: int, chunk: int) -> None:
        limits = self.limits
        self.total += chunk
        if entry_bytes > limits.max_entry_bytes:
            raise ZipRejected(f"Zip entry {info.filename!r} is larger than {limits.max_entry_bytes} bytes")
        if self.total > limits.max_total_bytes:
            raise ZipRejected(f"Zip expands to more than {limits.max_total_bytes} bytes")
        if entry_bytes > limits.ratio_min_bytes and entry_bytes > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise ZipRejected(
                f"Zip entry {info.filename!r} expands too much (compression ratio over {limits.max_ratio:g})"
            )
        if self.total > limits.ratio_min_bytes and self.total > limits.max_ratio * self.archive_bytes:
            raise ZipRejected(f"Zip expands too much (compression ratio over {limits.max_ratio:g})")


def _write_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: _Budget) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, FILE_MODE)
    except FileExistsError:
        raise ZipRejected(f"Zip entry {info.filename!r} collides with an existing path") from None
    written = 0
    with os.fdopen(fd, "wb") as out, archive.open(info) as source:
        while chunk := source.read(CHUNK_BYTES):
            written += len(chunk)
            budget.take(info, written, len(chunk))
            out.write(chunk)
    return written


def extract(zip_path: Path, dest: Path, limits: ZipLimits) -> Extracted:
    """Extract the archive at ``zip_path`` below the existing folder ``dest``, or refuse it.

    ``ZipRejected`` for a bad or unsafe archive (part of it may already be written: extract
    into a staging folder and discard it on error); ``OSError`` for a failure of the disk.
    """
    root_real = os.path.realpath(dest)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            entries = _plan(archive, limits)
            budget = _Budget(limits, zip_path.stat().st_size)
            files = 0
            for entry in entries:
                if entry.is_dir:
                    _make_parents(dest, root_real, entry.parts)
                    continue
                parent = _make_parents(dest, root_real, entry.parts[:-1])
                _write_entry(archive, entry.info, parent / entry.parts[-1], budget)
                files += 1
            return Extracted(files=files, bytes=budget.total)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ZipRejected(f"Invalid zip file: {error or type(error).__name__}") from error
    except NotImplementedError as error:
        # zipfile's answer to a compression method it cannot read (AES, ...): the client's archive.
        raise ZipRejected(f"Unsupported zip file: {error}") from error
    except RuntimeError as error:
        # zipfile's answer to an encrypted entry it was not warned about.
        raise ZipRejected(f"Unsupported zip file: {error}") from error


def write_zip(files: Iterable[tuple[str, Path]], zip_path: Path) -> None:
    """Zip ``files`` (``(name in the archive, path)``) into ``zip_path``, replacing it atomically."""
    fd, staging = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=".part", dir=zip_path.parent)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            for relative, path in files:
                archive.write(path, relative)
        Path(staging).chmod(FILE_MODE)
        Path(staging).replace(zip_path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
