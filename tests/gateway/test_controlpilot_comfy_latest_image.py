"""ControlPilot CP-38: the newest image in ComfyUI's output folder on the outputs volume.

Real files in a temporary outputs volume, read through the ControlPilot app over ASGI; the index
that keeps the scan bounded is also tested on its own (a spy on ``os.scandir`` counts listings).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.routing import Mount

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.controlpilot import comfy_images, create_app
from kubepilot_gateway.profiles.controlpilot.comfy_images import OutputIndex
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]


def write_image(path: Path, size: tuple[int, int], fmt: str, *, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path, format=fmt)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


def make_ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, outputs: Path, **comfy: Any
) -> GatewayContext:
    settings = Settings(
        namespace=namespace,
        volumes=Volumes(outputs=str(outputs)),
        profileSettings={"controlpilot": {"comfy": comfy}} if comfy else {},
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, outputs: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_ctx(kube, cache, store, namespace, outputs))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


async def latest(http: httpx.AsyncClient, path: str = "/api/comfy/latest-image") -> JsonObject:
    response = await http.get(path)
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict)
    return body


async def test_no_output_folder(http: httpx.AsyncClient) -> None:
    assert await latest(http) == {"image": None, "message": "No output directory found"}


async def test_an_empty_output_folder(http: httpx.AsyncClient, outputs: Path) -> None:
    (outputs / "comfy").mkdir(parents=True)
    (outputs / "comfy" / "notes.txt").write_text("not an image")
    assert await latest(http) == {"image": None, "message": "No images found", "image_count": 0}


async def test_the_newest_image_with_its_metadata_and_the_count(
    http: httpx.AsyncClient, outputs: Path
) -> None:
    comfy = outputs / "comfy"
    write_image(comfy / "ComfyUI_00001_.png", (64, 32), "PNG", mtime=1_700_000_000)
    newest = write_image(comfy / "2026-01-02" / "my shot_00002_.JPG", (48, 16), "JPEG", mtime=1_700_000_500)
    write_image(comfy / "old" / "x.webp", (8, 8), "WEBP", mtime=1_600_000_000)
    (comfy / "ComfyUI_00003_.txt").write_text("caption")

    body = await latest(http)
    assert body == {
        "image": {
            "url": "/proxy/comfy/view?filename=my%20shot_00002_.JPG&subfolder=2026-01-02",
            "filename": "my shot_00002_.JPG",
            "subfolder": "2026-01-02",
            "dimensions": "48x16",
            "size": newest.stat().st_size,
            "generated_at": datetime.fromtimestamp(1_700_000_500).isoformat(),
        },
        "image_count": 3,
    }
    assert "T" in body["image"]["generated_at"] and "+" not in body["image"]["generated_at"]  # naive ISO


async def test_an_image_in_the_root_has_no_subfolder_and_unreadable_dimensions_are_unknown(
    http: httpx.AsyncClient, outputs: Path
) -> None:
    broken = outputs / "comfy" / "broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    image = (await latest(http))["image"]
    assert image["url"] == "/proxy/comfy/view?filename=broken.png"
    assert (image["subfolder"], image["dimensions"]) == ("", "Unknown")


async def test_new_and_removed_images_are_seen_on_the_next_request(
    http: httpx.AsyncClient, outputs: Path
) -> None:
    comfy = outputs / "comfy"
    write_image(comfy / "a" / "first.png", (4, 4), "PNG", mtime=1_700_000_000)
    assert (await latest(http))["image"]["filename"] == "first.png"
    second = write_image(comfy / "a" / "second.png", (4, 4), "PNG", mtime=1_700_000_100)
    body = await latest(http)
    assert (body["image"]["filename"], body["image_count"]) == ("second.png", 2)
    second.unlink()
    body = await latest(http)
    assert (body["image"]["filename"], body["image_count"]) == ("first.png", 1)


async def test_symbolic_links_are_not_followed(
    http: httpx.AsyncClient, outputs: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "secret.png", (4, 4), "PNG", mtime=1_800_000_000)
    comfy = outputs / "comfy"
    write_image(comfy / "mine.png", (4, 4), "PNG", mtime=1_700_000_000)
    (comfy / "linked-dir").symlink_to(elsewhere, target_is_directory=True)
    (comfy / "linked.png").symlink_to(elsewhere / "secret.png")
    body = await latest(http)
    assert (body["image"]["filename"], body["image_count"]) == ("mine.png", 1)


async def test_the_url_carries_the_mount_prefix_under_the_combined_listener(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, outputs: Path
) -> None:
    write_image(outputs / "comfy" / "a.png", (4, 4), "PNG", mtime=1_700_000_000)
    app = Starlette(
        routes=[Mount("/p/controlpilot", app=create_app(make_ctx(kube, cache, store, namespace, outputs)))]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as session:
        body = await latest(session, "/p/controlpilot/api/comfy/latest-image")
    assert body["image"]["url"] == "/p/controlpilot/proxy/comfy/view?filename=a.png"


async def test_the_scan_is_bounded_by_the_setting(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, outputs: Path
) -> None:
    for number in range(10):
        write_image(outputs / "comfy" / f"{number}.png", (2, 2), "PNG", mtime=1_700_000_000 + number)
    app = create_app(make_ctx(kube, cache, store, namespace, outputs, maxScanEntries=3))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        body = await latest(session)
    assert body["image"] is not None and body["image_count"] == 3  # partial, never a long request


def test_the_index_lists_only_folders_whose_mtime_changed(tmp_path: Path) -> None:
    root = tmp_path / "comfy"
    for folder in ("a", "b", "c"):
        write_image(root / folder / "x.png", (2, 2), "PNG", mtime=1_700_000_000)
        os.utime(root / folder, (1_700_000_000, 1_700_000_000))
    os.utime(root, (1_700_000_000, 1_700_000_000))  # settled folders (fresh ones are re-listed)
    index = OutputIndex(root, max_entries=1000)
    real_scandir = os.scandir
    with mock.patch(f"{comfy_images.__name__}.os.scandir", side_effect=real_scandir) as spy:
        first = index.scan()
        assert first is not None and len(first) == 3 and spy.call_count == 4  # root + a, b, c
        spy.reset_mock()
        assert index.scan() == first and spy.call_count == 0  # nothing changed: nothing listed
        write_image(root / "b" / "y.png", (2, 2), "PNG", mtime=1_700_000_100)
        spy.reset_mock()
        again = index.scan()
        assert again is not None and len(again) == 4 and spy.call_count == 1  # only "b"


def test_view_url_quotes_names() -> None:
    assert (
        comfy_images.view_url("a&b=c.png", "x y/z")
        == "/proxy/comfy/view?filename=a%26b%3Dc.png&subfolder=x%20y/z"
    )
