"""Hostile archives sent to CP-18 (upload) and CP-22 (TagPilot save), and ``safezip`` itself.

Every archive here is a real zip built with ``zipfile`` (bytes patched where a header must lie)
and sent as a real multipart request. Each must be refused with a 400 and leave every byte under
the test's folder as it was: the previous dataset, its stored zip, the folder beside the volume,
and no staging folder left behind.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from kubernetes import client as kube_client

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import KubeClient
from kubepilot_gateway.profiles.controlpilot import safezip
from kubepilot_gateway.profiles.controlpilot.routes_datasets import DatasetsSettings, create_router
from kubepilot_gateway.settings import Settings, Volumes

KIB = 1024
MIB = 1024 * KIB
SETTINGS = DatasetsSettings(
    maxUploadBytes=16 * MIB,
    maxExtractedBytes=2 * MIB,
    maxEntries=20,
    maxEntryBytes=1536 * KIB,
    maxCompressionRatio=50,
    ratioCheckMinBytes=64 * KIB,
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
Build = Callable[[Path], bytes]


def archive(*entries: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as out:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate entries we build on purpose
        for name, data in entries:
            out.writestr(name, data)
    return buffer.getvalue()


def special(name: str, mode: int, data: bytes = b"") -> tuple[zipfile.ZipInfo, bytes]:
    """An entry whose Unix mode (external attributes) marks it a symlink, a device, ..."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the high 16 bits of external_attr are st_mode
    info.external_attr = mode << 16
    return info, data


def understated(real: bytes, declared: int) -> bytes:
    """One deflated entry whose local and central headers both claim ``declared`` bytes."""
    data = bytearray(archive(("big.png", real)))
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, declared)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)
    return bytes(data)


def corrupted() -> bytes:
    data = bytearray(archive(("a.png", os.urandom(4 * KIB))))
    data[40] ^= 0xFF  # inside the compressed data of the only entry
    return bytes(data)


def patched_header(local_offset: int, central_offset: int, value: int) -> bytes:
    """One stored entry whose two headers carry ``value`` in a 16-bit field (method or flags)."""
    data = bytearray(archive(("a.png", PNG)))
    struct.pack_into("<H", data, data.find(b"PK\x03\x04") + local_offset, value)
    struct.pack_into("<H", data, data.find(b"PK\x01\x02") + central_offset, value)
    return bytes(data)


def truncated() -> bytes:
    data = archive(("a.png", os.urandom(8 * KIB)), ("b.png", os.urandom(8 * KIB)))
    return data[: len(data) // 2]


UNSAFE: dict[str, tuple[Build, str]] = {
    "zip-slip": (lambda out: archive(("ok.png", PNG), ("../evil.txt", b"x")), "parent step"),
    "zip-slip-nested": (lambda out: archive(("a/../../evil.txt", b"x")), "parent step"),
    "zip-slip-backslash": (lambda out: archive(("..\\..\\evil.txt", b"x")), "parent step"),
    "absolute-path": (lambda out: archive((str(out / "evil.txt"), b"x")), "absolute path"),
    "drive-prefix": (lambda out: archive(("C:/evil.txt", b"x")), "drive"),
    "stream-name": (lambda out: archive(("a.png:evil", b"x")), "drive"),
    "control-character": (lambda out: archive(("a\x01.png", b"x")), "control character"),
    "symlink-entry": (
        lambda out: archive(
            special("link", stat.S_IFLNK | 0o777, str(out).encode()), ("link/evil.txt", b"x")
        ),
        "symlink",
    ),
    "device-entry": (lambda out: archive(special("tty", stat.S_IFCHR | 0o666)), "special file"),
    "fifo-entry": (lambda out: archive(special("pipe", stat.S_IFIFO | 0o644)), "special file"),
    "duplicate-entry": (lambda out: archive(("a.png", PNG), ("a.png", b"other")), "twice"),
    "file-and-folder": (lambda out: archive(("a", b"file"), ("a/b.png", PNG)), "both as a file"),
    "bomb-ratio": (lambda out: archive(("zeros.png", bytes(MIB))), "compression ratio"),
    "bomb-count": (lambda out: archive(*((f"{i}.txt", b"x") for i in range(21))), "too many entries"),
    "bomb-total": (
        lambda out: archive(*((f"{i}.png", os.urandom(800 * KIB)) for i in range(3))),
        "too much data",
    ),
    "bomb-entry": (lambda out: archive(("huge.png", os.urandom(1600 * KIB))), "too large"),
    "bomb-understated-header": (lambda out: understated(bytes(MIB), 10), "Invalid zip file"),
    "truncated": (lambda out: truncated(), "Invalid zip file"),
    "corrupt": (lambda out: corrupted(), "Invalid zip file"),
    "not-a-zip": (lambda out: b"this is not a zip at all", "Invalid zip file"),
    # Compression method 99 (AES): zipfile cannot read it (NotImplementedError).
    "unknown-compression": (lambda out: patched_header(8, 10, 99), "Unsupported zip file"),
    # General-purpose flag bit 0: an encrypted entry, refused before any byte is read.
    "encrypted-entry": (lambda out: patched_header(6, 8, 0x1), "is encrypted"),
}


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path below ``root``: file contents, symlink targets, ``dir`` for folders."""
    found: dict[str, bytes | str] = {}
    for here, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(here) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[key] = f"-> {path.readlink()}"
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = path.read_bytes()
    return found


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """The datasets volume with a dataset ``1_cats`` and its stored zip, before the attack."""
    root = tmp_path / "datasets"
    (root / "1_cats").mkdir(parents=True)
    (root / "1_cats" / "a.png").write_bytes(PNG)
    (root / "1_cats" / "a.txt").write_bytes(b"cat")
    (root / "ZIPs").mkdir()
    (root / "ZIPs" / "cats.zip").write_bytes(b"the previous archive")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "keep.txt").write_bytes(b"keep")
    return path


@pytest.fixture
async def http(volume: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The dataset routes over the volume; the context's cluster layer is never started or used."""
    client = KubeClient(kube_client.Configuration(host="http://127.0.0.1:9"))
    ctx = GatewayContext.build(Settings(volumes=Volumes(datasets=str(volume))), client)
    app = FastAPI()
    app.include_router(create_router(ctx, SETTINGS))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session
    await client.aclose()


async def send(http: httpx.AsyncClient, endpoint: str, data: bytes) -> httpx.Response:
    files = {"file": ("cats.zip", data, "application/zip")}
    if endpoint == "upload":
        return await http.post("/api/datasets/upload", files=files)
    return await http.post("/api/tagpilot/save", params={"name": "cats"}, files=files)


@pytest.mark.parametrize("endpoint", ["upload", "save"])
@pytest.mark.parametrize("case", list(UNSAFE))
async def test_an_unsafe_zip_is_refused_and_changes_nothing(
    http: httpx.AsyncClient, tmp_path: Path, outside: Path, endpoint: str, case: str
) -> None:
    build, reason = UNSAFE[case]
    data = build(outside)
    before = snapshot(tmp_path)

    response = await send(http, endpoint, data)

    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("endpoint", ["upload", "save"])
async def test_a_safe_zip_after_a_refused_one_still_replaces_the_dataset(
    http: httpx.AsyncClient, volume: Path, endpoint: str
) -> None:
    assert (await send(http, endpoint, archive(("../evil.txt", b"x")))).status_code == 400
    good = archive(("new.png", PNG), ("deep/new.txt", b"new"))
    response = await send(http, endpoint, good)
    assert response.status_code == 200
    assert snapshot(volume / "1_cats") == {"new.png": PNG, "deep": "dir", "deep/new.txt": b"new"}
    assert (volume / "ZIPs" / "cats.zip").read_bytes() == good


async def test_a_dataset_folder_leading_out_of_the_volume_is_never_replaced(
    http: httpx.AsyncClient, volume: Path, outside: Path, tmp_path: Path
) -> None:
    (volume / "1_dogs").symlink_to(outside, target_is_directory=True)
    before = snapshot(tmp_path)
    response = await http.post(
        "/api/datasets/upload", files={"file": ("dogs.zip", archive(("x.png", PNG)), "application/zip")}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid dataset name"}
    assert snapshot(tmp_path) == before


async def test_compressible_small_files_are_not_mistaken_for_a_bomb(
    http: httpx.AsyncClient, volume: Path
) -> None:
    """Below ``ratioCheckMinBytes`` a thousandfold ratio is normal (tag files, blank images)."""
    data = archive(*((f"{i}.txt", b"tag " * 3 * KIB) for i in range(4)))  # 12 KiB each, ~500:1
    response = await send(http, "upload", data)
    assert response.status_code == 200
    assert len(list((volume / "1_cats").iterdir())) == 4


# -- safezip on its own ----------------------------------------------------------------------------


LIMITS = SETTINGS.zip_limits()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_extract_writes_files_and_folders_and_reports_them(tmp_path: Path) -> None:
    source = write(tmp_path / "in.zip", archive(("a.png", PNG), ("d/", b""), ("d/e/f.txt", b"tag")))
    dest = tmp_path / "dest"
    dest.mkdir()
    assert safezip.extract(source, dest, LIMITS) == safezip.Extracted(files=2, bytes=len(PNG) + 3)
    assert snapshot(dest) == {"a.png": PNG, "d": "dir", "d/e": "dir", "d/e/f.txt": b"tag"}


def test_extract_never_goes_through_a_symlink_already_in_the_destination(
    tmp_path: Path, outside: Path
) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    (dest / "file.png").symlink_to(outside / "keep.txt")
    before = snapshot(outside)

    through_dir = write(tmp_path / "a.zip", archive(("link/evil.txt", b"x")))
    with pytest.raises(safezip.ZipRejected, match="symlink"):
        safezip.extract(through_dir, dest, LIMITS)
    deeper = write(tmp_path / "b.zip", archive(("link/sub/evil.txt", b"x")))
    with pytest.raises(safezip.ZipRejected, match="symlink"):
        safezip.extract(deeper, dest, LIMITS)
    onto_link = write(tmp_path / "c.zip", archive(("file.png", b"x")))
    with pytest.raises(safezip.ZipRejected, match="existing path"):
        safezip.extract(onto_link, dest, LIMITS)

    assert snapshot(outside) == before


def test_a_destination_reached_through_a_symlink_is_still_contained(tmp_path: Path) -> None:
    """The real path of the destination is the boundary, not its spelling."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    source = write(tmp_path / "in.zip", archive(("sub/a.png", PNG)))
    safezip.extract(source, tmp_path / "alias", LIMITS)
    assert (real / "sub" / "a.png").read_bytes() == PNG


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("a/b.png", ("a", "b.png")),
        ("./a//b/", ("a", "b")),
        ("a\\b.png", ("a", "b.png")),
        ("a..b.png", ("a..b.png",)),
    ],
)
def test_member_parts_of_safe_names(name: str, parts: tuple[str, ...]) -> None:
    assert safezip.member_parts(name) == parts


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "\\\\server\\share", "a/../../b", "..", "C:x", "a\x00b", "x" * 300]
)
def test_member_parts_of_unsafe_names(name: str) -> None:
    with pytest.raises(safezip.ZipRejected):
        safezip.member_parts(name)


def test_write_zip_replaces_the_archive_whole(tmp_path: Path) -> None:
    target = write(tmp_path / "out.zip", b"old")
    first = write(tmp_path / "a.png", PNG)
    safezip.write_zip([("x/a.png", first)], target)
    with zipfile.ZipFile(target) as result:
        assert result.namelist() == ["x/a.png"]
        assert result.read("x/a.png") == PNG
    assert listing(tmp_path) == ["a.png", "out.zip"]
