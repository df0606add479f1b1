"""ControlPilot's dataset and TagPilot endpoints (CP-16 … CP-23) on a real folder, over real HTTP.

No cluster is involved in these endpoints, so the gateway context's client and cache are built
but never started or called; the datasets volume is a folder of the test's own. Requests are
real multipart / JSON requests through httpx into the ASGI app, archives real zip files.
"""

from __future__ import annotations

import base64
import io
import os
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from kubernetes import client as kube_client

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import KubeClient
from kubepilot_gateway.profiles.controlpilot import NO_CACHE_HEADERS, create_app
from kubepilot_gateway.profiles.controlpilot import datasets as ds
from kubepilot_gateway.profiles.controlpilot.routes_datasets import DatasetsSettings, create_router
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPG = b"\xff\xd8\xff\xe0" + b"\x01" * 20


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def context(datasets: str, **profile: Any) -> GatewayContext:
    """A context whose cluster layer is never started: these endpoints only touch the volume."""
    settings = Settings(volumes=Volumes(datasets=datasets), profileSettings=profile)
    client = KubeClient(kube_client.Configuration(host="http://127.0.0.1:9"))
    return GatewayContext.build(settings, client)


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    return tmp_path / "datasets"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the volume that no request may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.png").write_bytes(PNG)
    return path


async def serve(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://controlpilot.test")


@pytest.fixture
async def http(volume: Path) -> AsyncIterator[httpx.AsyncClient]:
    ctx = context(str(volume))
    app = FastAPI()
    app.include_router(create_router(ctx, DatasetsSettings(maxUploadBytes=256 * 1024)))
    async with await serve(app) as session:
        yield session
    await ctx.client.aclose()


def make_dataset(volume: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = volume / name
    for relative, data in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def listing(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def tree(root: Path) -> dict[str, bytes | str]:
    """Every path below ``root`` with its content (files), its link (symlinks) or ``dir``."""
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


# -- naming ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("My Set!", "1_My_Set"),
        ("  cats & dogs  ", "1_cats_dogs"),
        ("--__", "1_dataset"),
        ("", "1_dataset"),
        ("1_kept as is", "1_kept as is"),
        ("2_other", "1_2_other"),
        ("../escape", "1_escape"),
    ],
)
def test_names_normalise_as_controlpilot_does(name: str, folder: str) -> None:
    assert ds.dataset_dirname(name) == folder


@pytest.mark.parametrize("name", ["1_../escape", "1_a/b", "1_a\\b", "1_\x00", "1_" + "x" * 300])
def test_a_prefixed_name_that_is_not_one_folder_name_is_refused(name: str) -> None:
    with pytest.raises(ds.InvalidName):
        ds.dataset_dirname(name)


# -- CP-16 -----------------------------------------------------------------------------------------


async def test_list_is_empty_when_the_volume_has_no_folder_yet(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/datasets")
    assert response.status_code == 200
    assert response.json() == []


async def test_list_shows_every_1_folder_with_images_and_size(
    http: httpx.AsyncClient, volume: Path, outside: Path
) -> None:
    make_dataset(volume, "1_zeta_set", {"a.png": PNG})
    make_dataset(volume, "1_alpha", {"a.png": PNG, "b.JPG": JPG, "b.txt": b"tag", "sub/c.webp": b"w"})
    make_dataset(volume, "other", {"a.png": PNG})
    make_dataset(volume, "ZIPs", {"1_alpha.zip": b"zip"})
    (volume / "1_file").write_bytes(b"not a folder")
    (volume / "1_escape").symlink_to(outside, target_is_directory=True)
    (volume / "1_zeta_set" / "link.png").symlink_to(outside / "secret.png")

    response = await http.get("/api/datasets")

    assert response.status_code == 200
    assert response.json() == [
        {"name": "1_alpha", "display": "Alpha", "images": 3, "size_bytes": len(PNG) + len(JPG) + 3 + 1},
        {"name": "1_zeta_set", "display": "Zeta Set", "images": 1, "size_bytes": len(PNG)},
    ]


async def test_every_endpoint_answers_503_without_a_datasets_volume(tmp_path: Path) -> None:
    ctx = context("")
    app = FastAPI()
    app.include_router(create_router(ctx, DatasetsSettings()))
    async with await serve(app) as http:
        response = await http.get("/api/datasets")
        assert response.status_code == 503
        assert response.json() == {"detail": "The datasets volume is not mounted on this gateway"}
        response = await http.post("/api/datasets/create", json={"name": "x"})
        assert response.status_code == 503
    await ctx.client.aclose()


# -- CP-17 -----------------------------------------------------------------------------------------


async def test_create_makes_an_empty_1_folder(http: httpx.AsyncClient, volume: Path) -> None:
    response = await http.post("/api/datasets/create", json={"name": "My Set!"})
    assert response.status_code == 200
    assert response.json() == {"status": "created", "path": str(volume / "1_My_Set")}
    assert (volume / "1_My_Set").is_dir()
    listed = (await http.get("/api/datasets")).json()
    assert listed == [{"name": "1_My_Set", "display": "My Set", "images": 0, "size_bytes": 0}]


async def test_create_refuses_an_existing_dataset(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG})
    response = await http.post("/api/datasets/create", json={"name": "cats"})
    assert response.status_code == 400
    assert response.json() == {"detail": "dataset already exists"}
    assert (volume / "1_cats" / "a.png").read_bytes() == PNG


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "   "}, {}])
async def test_create_requires_a_name(http: httpx.AsyncClient, body: JsonObject) -> None:
    response = await http.post("/api/datasets/create", json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "name is required"}


async def test_create_with_a_body_that_is_not_an_object_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/datasets/create", json=["x"])
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_create_refuses_a_name_leading_out_of_the_volume(
    http: httpx.AsyncClient, volume: Path, tmp_path: Path
) -> None:
    response = await http.post("/api/datasets/create", json={"name": "1_../escaped"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid dataset name"}
    assert not (tmp_path / "escaped").exists()


# -- CP-18 -----------------------------------------------------------------------------------------


async def test_upload_extracts_to_1_stem_and_keeps_the_zip(http: httpx.AsyncClient, volume: Path) -> None:
    archive = zip_bytes({"a.png": PNG, "a.txt": b"cat", "nested/b.jpg": JPG, "emptydir/": b""})
    response = await http.post(
        "/api/datasets/upload", files={"file": ("My Photos.zip", archive, "application/zip")}
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "uploaded",
        "zip": str(volume / "ZIPs" / "My_Photos.zip"),
        "extracted_to": str(volume / "1_My_Photos"),
    }
    assert tree(volume / "1_My_Photos") == {
        "a.png": PNG,
        "a.txt": b"cat",
        "nested": "dir",
        "nested/b.jpg": JPG,
        "emptydir": "dir",
    }
    assert (volume / "ZIPs" / "My_Photos.zip").read_bytes() == archive
    assert oct((volume / "1_My_Photos").stat().st_mode & 0o777) == oct(0o755)
    assert listing(volume) == ["1_My_Photos", "ZIPs"]  # no staging left


async def test_upload_replaces_the_existing_dataset(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"old.png": PNG, "old.txt": b"old"})
    response = await http.post(
        "/api/datasets/upload", files={"file": ("cats.zip", zip_bytes({"new.png": PNG}), "application/zip")}
    )
    assert response.status_code == 200
    assert tree(volume / "1_cats") == {"new.png": PNG}
    assert listing(volume) == ["1_cats", "ZIPs"]


async def test_upload_without_a_file_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/datasets/upload", data={"other": "x"})
    assert response.status_code == 422


async def test_upload_over_the_size_limit_is_413_and_writes_nothing(
    http: httpx.AsyncClient, volume: Path
) -> None:
    big = zip_bytes({"noise.png": os.urandom(300 * 1024)})
    response = await http.post("/api/datasets/upload", files={"file": ("big.zip", big, "application/zip")})
    assert response.status_code == 413
    assert response.json() == {"detail": "Upload too large (limit 262144 bytes)"}
    assert tree(volume) == {}


async def test_a_chunked_upload_is_cut_off_at_the_size_limit(http: httpx.AsyncClient, volume: Path) -> None:
    """No Content-Length: the limit is enforced on the bytes as they arrive."""
    boundary = "kubepilotboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    chunks_sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield head
        for _ in range(64):  # 4 MiB offered; the limit is 256 KiB
            chunks_sent += 1
            yield os.urandom(64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await http.post(
        "/api/datasets/upload",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert chunks_sent < 64
    assert tree(volume) == {}


# -- CP-19 -----------------------------------------------------------------------------------------


async def test_delete_removes_the_folder_and_its_zips(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG, "sub/b.png": PNG})
    make_dataset(volume, "1_dogs", {"a.png": PNG})
    make_dataset(volume, "ZIPs", {"cats.zip": b"1", "1_cats.zip": b"2", "dogs.zip": b"3"})
    response = await http.delete("/api/datasets/1_cats")
    assert response.status_code == 200
    assert response.json() == {"status": "deleted", "path": str(volume / "1_cats")}
    assert listing(volume) == ["1_dogs", "ZIPs"]
    assert listing(volume / "ZIPs") == ["dogs.zip"]


async def test_delete_by_plain_name_finds_the_1_folder(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG})
    response = await http.delete("/api/datasets/cats")
    assert response.status_code == 200
    assert not (volume / "1_cats").exists()


async def test_delete_of_a_missing_dataset_is_404(http: httpx.AsyncClient, volume: Path) -> None:
    response = await http.delete("/api/datasets/1_nothing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Dataset not found"}


async def test_delete_of_a_symlinked_dataset_never_touches_what_it_points_to(
    http: httpx.AsyncClient, volume: Path, outside: Path
) -> None:
    make_dataset(volume, "1_real", {"a.png": PNG})
    (volume / "1_alias").symlink_to(volume / "1_real", target_is_directory=True)
    (volume / "1_out").symlink_to(outside, target_is_directory=True)

    assert (await http.delete("/api/datasets/1_alias")).status_code == 200
    assert (volume / "1_real" / "a.png").read_bytes() == PNG
    assert not (volume / "1_alias").is_symlink()

    response = await http.delete("/api/datasets/1_out")
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid dataset name"}
    assert (outside / "secret.png").read_bytes() == PNG


# -- CP-20 -----------------------------------------------------------------------------------------


async def test_rename_moves_the_folder_and_its_zip(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG})
    make_dataset(volume, "ZIPs", {"1_cats.zip": b"zip"})
    response = await http.patch("/api/datasets/1_cats", json={"name": "Kittens 2"})
    assert response.status_code == 200
    assert response.json() == {
        "status": "renamed",
        "old_path": str(volume / "1_cats"),
        "new_path": str(volume / "1_Kittens_2"),
    }
    assert tree(volume / "1_Kittens_2") == {"a.png": PNG}
    assert not (volume / "1_cats").exists()
    assert listing(volume / "ZIPs") == ["Kittens_2.zip"]


async def test_rename_to_the_same_folder_is_a_no_op(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG})
    response = await http.patch("/api/datasets/1_cats", json={"name": "cats"})
    assert response.status_code == 200
    assert tree(volume / "1_cats") == {"a.png": PNG}


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "  "}, {}])
async def test_rename_requires_a_new_name(http: httpx.AsyncClient, volume: Path, body: JsonObject) -> None:
    make_dataset(volume, "1_cats", {})
    response = await http.patch("/api/datasets/1_cats", json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "new name is required"}


async def test_rename_of_a_missing_dataset_is_404(http: httpx.AsyncClient) -> None:
    response = await http.patch("/api/datasets/1_nothing", json={"name": "x"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Dataset not found"}


async def test_rename_onto_an_existing_dataset_is_refused(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG})
    make_dataset(volume, "1_dogs", {"b.png": JPG})
    response = await http.patch("/api/datasets/1_cats", json={"name": "dogs"})
    assert response.status_code == 400
    assert response.json() == {"detail": "Dataset with new name already exists"}
    assert tree(volume / "1_cats") == {"a.png": PNG}
    assert tree(volume / "1_dogs") == {"b.png": JPG}


async def test_rename_out_of_the_volume_is_refused(
    http: httpx.AsyncClient, volume: Path, tmp_path: Path
) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG})
    response = await http.patch("/api/datasets/1_cats", json={"name": "1_../../moved"})
    assert response.status_code == 400
    assert (volume / "1_cats" / "a.png").exists()
    assert not (tmp_path / "moved").exists()


# -- CP-21 -----------------------------------------------------------------------------------------


async def test_load_returns_images_and_tags_base64(
    http: httpx.AsyncClient, volume: Path, outside: Path
) -> None:
    make_dataset(volume, "1_cats", {"b.png": PNG, "b.txt": b"cat, cute", "a/c.jpg": JPG, "notes.md": b"x"})
    (volume / "1_cats" / "leak.png").symlink_to(outside / "secret.png")
    (volume / "1_cats" / "leakdir").symlink_to(outside, target_is_directory=True)

    response = await http.get("/api/tagpilot/load", params={"name": "cats"})

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "1_cats"
    assert [(f["name"], f["mime"]) for f in body["files"]] == [
        ("a/c.jpg", "image/jpeg"),
        ("b.png", "image/png"),
        ("b.txt", "text/plain"),
    ]
    assert [base64.b64decode(f["b64"]) for f in body["files"]] == [JPG, PNG, b"cat, cute"]


async def test_load_of_a_missing_dataset_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/tagpilot/load", params={"name": "nothing"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Dataset not found"}


async def test_load_without_a_name_is_422(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/tagpilot/load")).status_code == 422


# -- CP-22 -----------------------------------------------------------------------------------------


async def test_save_replaces_the_dataset_with_the_zip(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"old.png": PNG})
    archive = zip_bytes({"x.png": PNG, "x.txt": b"tags"})
    response = await http.post(
        "/api/tagpilot/save",
        params={"name": "cats"},
        files={"file": ("cats.zip", archive, "application/zip")},
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "saved",
        "path": str(volume / "1_cats"),
        "zip": str(volume / "ZIPs" / "cats.zip"),
    }
    assert tree(volume / "1_cats") == {"x.png": PNG, "x.txt": b"tags"}
    assert (volume / "ZIPs" / "cats.zip").read_bytes() == archive


async def test_save_creates_a_new_dataset(http: httpx.AsyncClient, volume: Path) -> None:
    response = await http.post(
        "/api/tagpilot/save",
        params={"name": "1_new"},
        files={"file": ("x.zip", zip_bytes({"x.png": PNG}), "application/zip")},
    )
    assert response.status_code == 200
    assert tree(volume / "1_new") == {"x.png": PNG}
    assert (volume / "ZIPs" / "1_new.zip").is_file()


async def test_save_without_name_or_file_is_422(http: httpx.AsyncClient) -> None:
    files = {"file": ("x.zip", zip_bytes({"x.png": PNG}), "application/zip")}
    assert (await http.post("/api/tagpilot/save", files=files)).status_code == 422
    assert (await http.post("/api/tagpilot/save", params={"name": "x"}, data={"a": "b"})).status_code == 422


# -- CP-23 -----------------------------------------------------------------------------------------


async def save_item(
    http: httpx.AsyncClient, name: str, filename: str, data: bytes, **form: str
) -> httpx.Response:
    return await http.post(
        "/api/tagpilot/save-item",
        params={"name": name},
        files={"file": (filename, data, "image/png")},
        data=form,
    )


async def test_save_item_writes_the_image_and_its_tags(http: httpx.AsyncClient, volume: Path) -> None:
    response = await save_item(http, "cats", "one.png", PNG, tags="cat, orange")
    assert response.status_code == 200
    assert response.json() == {
        "status": "saved-item",
        "path": str(volume / "1_cats"),
        "file": "one.png",
        "done": False,
    }
    assert tree(volume / "1_cats") == {"one.png": PNG, "one.txt": b"cat, orange"}


async def test_save_item_never_overwrites_an_image(http: httpx.AsyncClient, volume: Path) -> None:
    await save_item(http, "cats", "one.png", PNG, tags="first")
    response = await save_item(http, "cats", "one.png", JPG, tags="second")
    assert response.json()["file"] == "one_1.png"
    assert tree(volume / "1_cats") == {
        "one.png": PNG,
        "one.txt": b"first",
        "one_1.png": JPG,
        "one_1.txt": b"second",
    }


async def test_save_item_reset_empties_the_dataset_first(http: httpx.AsyncClient, volume: Path) -> None:
    make_dataset(volume, "1_cats", {"old.png": PNG, "old.txt": b"old"})
    response = await save_item(http, "cats", "new.png", JPG, tags="new", reset="true")
    assert response.status_code == 200
    assert tree(volume / "1_cats") == {"new.png": JPG, "new.txt": b"new"}
    assert listing(volume) == ["1_cats", "ZIPs"]


async def test_save_item_done_zips_the_dataset(http: httpx.AsyncClient, volume: Path) -> None:
    await save_item(http, "cats", "a.png", PNG, tags="a")
    response = await save_item(http, "cats", "b.png", JPG, tags="b", done="true")
    assert response.status_code == 200
    assert response.json() == {
        "status": "saved-item",
        "path": str(volume / "1_cats"),
        "file": "b.png",
        "done": True,
        "zip": str(volume / "ZIPs" / "cats.zip"),
    }
    with zipfile.ZipFile(volume / "ZIPs" / "cats.zip") as archive:
        assert sorted(archive.namelist()) == ["a.png", "a.txt", "b.png", "b.txt"]
        assert archive.read("b.png") == JPG
        assert archive.read("a.txt") == b"a"


async def test_save_item_keeps_only_the_last_step_of_the_file_name(
    http: httpx.AsyncClient, volume: Path, tmp_path: Path
) -> None:
    response = await save_item(http, "cats", "../../evil.png", PNG)
    assert response.status_code == 200
    assert response.json()["file"] == "evil.png"
    assert tree(volume / "1_cats") == {"evil.png": PNG, "evil.txt": b""}
    assert not (tmp_path / "evil.png").exists()
    response = await save_item(http, "cats", "..", PNG)
    assert response.json()["file"] == "image.bin"


async def test_save_item_never_writes_through_a_symlink(
    http: httpx.AsyncClient, volume: Path, outside: Path
) -> None:
    folder = make_dataset(volume, "1_cats", {})
    (folder / "one.png").symlink_to(outside / "secret.png")
    (folder / "one.txt").symlink_to(outside / "tags.txt")
    response = await save_item(http, "cats", "one.png", JPG, tags="mine")
    assert response.status_code == 200
    assert response.json()["file"] == "one_1.png"
    assert (outside / "secret.png").read_bytes() == PNG
    assert not (outside / "tags.txt").exists()


async def test_save_item_into_a_dataset_leading_out_of_the_volume_is_refused(
    http: httpx.AsyncClient, volume: Path, outside: Path
) -> None:
    make_dataset(volume, "ZIPs", {})
    (volume / "1_cats").symlink_to(outside, target_is_directory=True)
    response = await save_item(http, "cats", "x.png", JPG)
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid dataset name"}
    assert listing(outside) == ["secret.png"]


async def test_save_item_validates_its_fields(http: httpx.AsyncClient) -> None:
    files = {"file": ("a.png", PNG, "image/png")}
    assert (await http.post("/api/tagpilot/save-item", files=files)).status_code == 422  # no name
    response = await http.post(
        "/api/tagpilot/save-item", params={"name": "x"}, files=files, data={"done": "maybe"}
    )
    assert response.status_code == 422
    response = await http.post("/api/tagpilot/save-item", params={"name": "x"}, data={"tags": "t"})
    assert response.status_code == 422  # no file


# -- staging leftovers ------------------------------------------------------------------------------


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


async def test_staging_left_by_a_dead_request_is_never_shown_and_is_swept_when_stale(
    http: httpx.AsyncClient, volume: Path
) -> None:
    make_dataset(volume, "1_cats", {"a.png": PNG, ".kubepilot-tmp-0123.txt": b"half-written tags"})
    stale = make_dataset(volume, ".kubepilot-tmp-dead", {"x.png": PNG})
    busy = make_dataset(volume, ".kubepilot-tmp-busy", {"y.png": PNG})
    make_dataset(volume, "ZIPs", {".kubepilot-tmp-dead.zip.part": b"x"})
    age(stale, 7 * 3600)
    age(volume / "ZIPs" / ".kubepilot-tmp-dead.zip.part", 7 * 3600)

    listed = (await http.get("/api/datasets")).json()
    assert listed == [{"name": "1_cats", "display": "Cats", "images": 1, "size_bytes": len(PNG)}]
    loaded = (await http.get("/api/tagpilot/load", params={"name": "cats"})).json()
    assert [f["name"] for f in loaded["files"]] == ["a.png"]

    response = await http.post(
        "/api/datasets/upload", files={"file": ("dogs.zip", zip_bytes({"d.png": PNG}), "application/zip")}
    )
    assert response.status_code == 200
    assert listing(volume) == [".kubepilot-tmp-busy", "1_cats", "1_dogs", "ZIPs"]
    assert listing(volume / "ZIPs") == ["dogs.zip"]
    assert tree(busy) == {"y.png": PNG}


# -- the profile app -------------------------------------------------------------------------------


@pytest.fixture
async def profile_ctx(volume: Path) -> AsyncIterator[GatewayContext]:
    """The gateway settings as a settings file gives them: this area's under ``profileSettings``."""
    ctx = context(str(volume), controlpilot={"datasets": {"maxUploadBytes": 1000}})
    yield ctx
    await ctx.client.aclose()


async def test_the_profile_serves_these_routes_with_its_settings_and_headers(
    profile_ctx: GatewayContext, volume: Path
) -> None:
    async with await serve(create_app(profile_ctx)) as http:
        response = await http.post("/api/datasets/create", json={"name": "cats"})
        assert response.status_code == 200
        for header, value in NO_CACHE_HEADERS.items():
            assert response.headers[header] == value
        big = zip_bytes({"noise.png": os.urandom(2000)})
        response = await http.post(
            "/api/datasets/upload", files={"file": ("cats.zip", big, "application/zip")}
        )
        assert response.status_code == 413
        assert response.json() == {"detail": "Upload too large (limit 1000 bytes)"}
        assert tree(volume) == {"1_cats": "dir"}
