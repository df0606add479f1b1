"""sd.cpp Studio's image-input endpoints over the devcluster (real HTTP through ASGI, real CRs, real
files): edit / variation / upscale uploads (multipart and base64), their checks (size, type, pixels,
path tricks) and the A1111 upscale and img2img routes.

No operator runs here, so a synchronous call's job is finished the way the operator does it
(``patch_status`` with outputs whose files the test writes); the operator path is in
``test_sdcpp_studio_e2e.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from kubepilot_gateway.profiles.sdcpp_studio import uploads as up
from kubepilot_gateway.profiles.sdcpp_studio.jobs import BadRequest
from tests.gateway.conftest import stack_settings
from tests.gateway.helpers import eventually
from tests.operator.harness import Storage

GJ = resource_for("GenerationJob")
JsonObject = dict[str, Any]
MODELS = [{"id": "tiny-sd", "path": "diffusers/tiny-sd"}, {"id": "other", "path": "diffusers/other"}]
UPSCALERS = [
    {"name": "RealESRGAN 4x+", "upscaler": "RealESRGAN_x4plus.pth", "scale": 4},
    {"name": "Tiny 4x", "upscaler": "tiny-x4.safetensors", "scale": 4},
    {"name": "Named", "upscaler": "operator-name", "scale": 2},
]
LIMITS = up.Limits(max_bytes=20_000, max_pixels=300 * 300, max_request_bytes=200_000)


def png(width: int = 100, height: int = 60, color: str = "red", fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Fixture:
    def __init__(self, http: httpx.AsyncClient, storage: Storage, inputs: str, cache: ClusterCache, ns: str):
        self.http = http
        self.inputs_dir = storage.outputs / inputs
        self.inputs = inputs
        self.cache = cache
        self.namespace = ns

    def staged(self) -> list[Path]:
        return sorted(self.inputs_dir.glob("*")) if self.inputs_dir.exists() else []

    def job(self, name: str) -> JsonObject:
        cr = self.cache.get(GJ, name, self.namespace)
        assert cr is not None
        return cr


@pytest.fixture
async def sd(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[Fixture]:
    inputs = f"sdcpp-studio/{namespace}/inputs"
    profile = {
        "models": MODELS,
        "upscalers": UPSCALERS,
        "inputsDir": inputs,
        "maxUploadBytes": LIMITS.max_bytes,
        "maxUploadPixels": LIMITS.max_pixels,
        "maxRequestBytes": LIMITS.max_request_bytes,
    }
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://sd.test") as http:
        yield Fixture(http, storage, inputs, cache, namespace)


async def test_a_queued_edit_stages_image_and_mask_under_gateway_names(sd: Fixture, storage: Storage) -> None:
    files = {
        "image": ("../../../etc/passwd", png(100, 84), "image/png"),
        "mask": ("/abs/mask.png", png(100, 84, "white"), "image/png"),
    }
    data = {"prompt": "a dog", "n": "2", "seed": "5", "strength": "0.4", "sample_steps": "3"}
    answer = await sd.http.post("/api/queue/edit", files=files, data=data)
    assert answer.status_code == 200, answer.text
    cr = sd.job(answer.json()["job_id"])
    spec = cr["spec"]
    assert (spec["type"], spec["model"], spec["count"], spec["seed"], spec["steps"]) == (
        "inpaint",
        "diffusers/tiny-sd",  # no model sent: the default
        2,
        5,
        3,
    )
    assert (spec["width"], spec["height"], spec["strength"]) == (96, 80, 0.4)  # the image's size, fitted
    image, mask = spec["inputs"]["image"], spec["inputs"]["mask"]
    for staged in (image, mask):
        assert staged.startswith(f"{sd.inputs}/") and staged.endswith(".png") and ".." not in staged
    assert [p.name for p in sd.staged()] == sorted([Path(image).name, Path(mask).name])
    assert Image.open(storage.outputs / image).size == (100, 84)
    job = (await sd.http.get(f"/api/queue/{cr['metadata']['name']}")).json()
    assert (job["type"], job["size"], job["input_image_path"]) == (
        "edit",
        "96x80",
        f"{storage.outputs}/{image}",
    )


async def test_a_variation_from_base64_json_and_a_jpeg_upload(sd: Fixture, storage: Storage) -> None:
    body = {"image": "data:image/png;base64," + b64(png(64, 64)), "model": "other", "size": "128x64"}
    answer = await sd.http.post("/api/queue/variation", json=body)
    assert answer.status_code == 200, answer.text
    spec = sd.job(answer.json()["job_id"])["spec"]
    assert (spec["type"], spec["model"], spec["width"], spec["height"], spec["strength"]) == (
        "variation",
        "diffusers/other",
        128,
        64,
        0.75,
    )
    jpeg = await sd.http.post(
        "/api/queue/edit",
        files={"image": ("x.jpg", png(80, 80, fmt="JPEG"), "image/jpeg")},
        data={"prompt": "p"},
    )
    spec = sd.job(jpeg.json()["job_id"])["spec"]
    assert spec["type"] == "img2img" and not spec["inputs"]["mask"]
    with Image.open(storage.outputs / spec["inputs"]["image"]) as staged:
        assert staged.format == "PNG"  # re-encoded, as the product does


async def test_queued_upscales_map_the_products_upscaler_names(sd: Fixture) -> None:
    by_factor = await sd.http.post(
        "/api/queue/upscale",
        files={"image": ("i.png", png(40, 20), "image/png")},
        data={"upscaler": "Tiny 4x", "upscale_factor": "2"},
    )
    cr = sd.job(by_factor.json()["job_id"])
    assert cr["spec"]["type"] == "upscale"
    assert cr["spec"]["upscale"] == {"upscaler": "tiny-x4.safetensors", "factor": 2.0}
    job = (await sd.http.get(f"/api/queue/{cr['metadata']['name']}")).json()
    assert (job["type"], job["size"], job["status"]) == ("upscale", "80x40", "pending")

    to_size = await sd.http.post(
        "/api/queue/upscale",
        files={"image": ("i.png", png(40, 20), "image/png")},
        data={"resize_mode": "1", "target_width": "120", "target_height": "60"},
    )
    spec = sd.job(to_size.json()["job_id"])["spec"]
    assert spec["upscale"] == {"upscaler": "RealESRGAN_x4plus.pth", "factor": 3.0}  # the default upscaler


async def test_a1111_upscalers_list_the_configured_names(sd: Fixture, storage: Storage) -> None:
    listed = (await sd.http.get("/sdapi/v1/upscalers")).json()
    assert [(u["name"], u["model_name"], u["scale"]) for u in listed] == [
        ("RealESRGAN 4x+", "RealESRGAN_x4plus.pth", 4),
        ("Tiny 4x", "tiny-x4.safetensors", 4),
        ("Named", "operator-name", 2),
    ]
    assert listed[1]["model_path"] == f"{storage.models}/upscale_models/tiny-x4.safetensors"
    assert listed[2]["model_path"] is None


async def finish(
    store: CrStore, storage: Storage, cr: JsonObject, sizes: list[tuple[int, int]]
) -> list[bytes]:
    """Complete ``cr`` as the operator would, with one written PNG per size; their bytes."""
    name = cr["metadata"]["name"]
    folder = storage.outputs / "generations" / cr["metadata"]["namespace"] / name
    folder.mkdir(parents=True, exist_ok=True)
    outputs, written = [], []
    for index, (width, height) in enumerate(sizes):
        data = png(width, height, "blue")
        (folder / f"{index}.png").write_bytes(data)
        written.append(data)
        relative = f"generations/{cr['metadata']['namespace']}/{name}/{index}.png"
        outputs.append({"index": index, "path": relative, "width": width, "height": height})
    await store.patch_status(GJ, name, {"phase": "Completed", "outputs": outputs})
    return written


async def one_new_job(sd: Fixture, before: set[str]) -> JsonObject:
    def appeared() -> bool:
        return bool({cr["metadata"]["name"] for cr in sd.cache.list(GJ, sd.namespace)} - before)

    await eventually(appeared, what="the job")
    (cr,) = [cr for cr in sd.cache.list(GJ, sd.namespace) if cr["metadata"]["name"] not in before]
    return cr


async def test_a1111_extras_and_img2img_wait_for_their_jobs(
    sd: Fixture, store: CrStore, storage: Storage
) -> None:
    single = asyncio.create_task(
        sd.http.post(
            "/sdapi/v1/extra-single-image",
            json={"image": b64(png(30, 20)), "upscaler_1": "Tiny 4x", "upscaling_resize": 2},
        )
    )
    cr = await one_new_job(sd, set())
    assert cr["spec"]["upscale"]["factor"] == 2.0
    (written,) = await finish(store, storage, cr, [(60, 40)])
    answer = await asyncio.wait_for(single, 10)
    assert answer.json() == {"html_info": "<div>Upscaled with Tiny 4x</div>", "image": b64(written)}

    seen = {c["metadata"]["name"] for c in sd.cache.list(GJ, sd.namespace)}
    multipart = asyncio.create_task(  # the product's multipart field names
        sd.http.post(
            "/sdapi/v1/extra-single-image",
            files={"image": ("x.webp", png(30, 20, fmt="WEBP"), "image/webp")},
            data={"upscaler": "Tiny 4x", "resize_mode": "1", "target_width": "90", "target_height": "60"},
        )
    )
    cr = await one_new_job(sd, seen)
    assert cr["spec"]["upscale"] == {"upscaler": "tiny-x4.safetensors", "factor": 3.0}
    (written,) = await finish(store, storage, cr, [(90, 60)])
    assert (await asyncio.wait_for(multipart, 10)).json()["image"] == b64(written)

    seen |= {c["metadata"]["name"] for c in sd.cache.list(GJ, sd.namespace)}
    batch = asyncio.create_task(
        sd.http.post(
            "/sdapi/v1/extra-batch-images",
            json={
                "imageList": [
                    {"data": b64(png(10, 10)), "name": "a"},
                    {"data": b64(png(12, 8)), "name": "b"},
                ],
                "upscaler_1": "Tiny 4x",
            },
        )
    )
    cr = await one_new_job(sd, seen)
    inputs = cr["spec"]["inputs"]
    assert inputs["image"] and len(inputs["images"]) == 1  # one job, the images in order
    written_batch = await finish(store, storage, cr, [(20, 20), (24, 16)])
    answer = await asyncio.wait_for(batch, 10)
    assert answer.json() == {
        "html_info": "<div>Upscaled 2 images with Tiny 4x</div>",
        "images": [b64(data) for data in written_batch],
    }

    seen |= {c["metadata"]["name"] for c in sd.cache.list(GJ, sd.namespace)}
    body = {
        "prompt": "p",
        "init_images": [b64(png(64, 64))],
        "mask": b64(png(64, 64, "white")),
        "denoising_strength": 0.3,
        "width": 64,
        "height": 64,
        "seed": 3,
        "override_settings": {"sd_model_checkpoint": "other"},
    }
    img2img = asyncio.create_task(sd.http.post("/sdapi/v1/img2img", json=body))
    cr = await one_new_job(sd, seen)
    spec = cr["spec"]
    assert (spec["type"], spec["strength"], spec["model"]) == ("inpaint", 0.3, "diffusers/other")
    (written,) = await finish(store, storage, cr, [(64, 64)])
    result = (await asyncio.wait_for(img2img, 10)).json()
    assert result["images"] == [b64(written)]
    assert result["parameters"]["init_images"] is None and result["parameters"]["mask"] is None
    assert json.loads(result["info"])["denoising_strength"] == 0.3


async def test_the_synchronous_variation_waits_and_answers_its_image_ids(
    sd: Fixture, store: CrStore, storage: Storage
) -> None:
    waiting = asyncio.create_task(
        sd.http.post("/api/variation", files={"image": ("a.png", png(64, 64), "image/png")}, data={"n": "2"})
    )
    cr = await one_new_job(sd, set())
    assert (cr["spec"]["type"], cr["spec"]["count"], cr["spec"]["prompt"]) == ("variation", 2, "")
    assert not waiting.done()
    await finish(store, storage, cr, [(64, 64), (64, 64)])
    answer = (await asyncio.wait_for(waiting, 10)).json()
    name = cr["metadata"]["name"]
    assert answer["id"] == name and [image["id"] for image in answer["data"]] == [f"{name}-0", f"{name}-1"]


@pytest.mark.parametrize(
    ("path", "kwargs", "error"),
    [
        ("/api/queue/edit", {"data": {"prompt": "p"}}, "Image file is required"),
        (
            "/api/edit",
            {"files": {"image": ("a.png", b"", "image/png")}, "data": {"prompt": "p"}},
            "Image file is required",
        ),
        (
            "/api/queue/edit",
            {"files": {"image": ("a.png", png(), "image/png")}},
            "Missing required field: prompt",
        ),
        (
            "/api/queue/variation",
            {"files": {"image": ("a.png", b"#!/bin/sh\necho pwned\n", "image/png")}},
            "Only image files are allowed",
        ),
        (
            "/api/queue/variation",
            {"files": {"image": ("a.gif", png(fmt="GIF"), "image/gif")}},
            "Only image files are allowed",
        ),
        (
            "/api/queue/variation",
            {"files": {"image": ("a.png", png()[:60], "image/png")}},
            "Only image files are allowed",
        ),
        (
            "/api/queue/variation",
            {"files": {"image": ("a.png", png(400, 300), "image/png")}},
            "File too large",
        ),
        (
            "/api/queue/variation",
            {"files": {"image": ("big.bmp", b"\x89PNG" + bytes(30_000), "image/png")}},
            "File too large",
        ),
        (
            "/api/queue/variation",
            {"content": b"x" * 250_000, "headers": {"content-type": "application/json"}},
            "File too large",
        ),
        (
            "/api/queue/edit",
            {"files": {"image": ("a.png", png(), "image/png")}, "data": {"prompt": "p", "model": "nope"}},
            "Invalid model: nope",
        ),
        (
            "/api/queue/edit",
            {"files": {"image": ("a.png", png(), "image/png")}, "data": {"prompt": "p", "n": "11"}},
            "Invalid n: '11'",
        ),
        (
            "/api/queue/edit",
            {
                "files": {
                    "image": ("a.png", png(), "image/png"),
                    "mask": ("m.png", b"not an image", "image/png"),
                },
                "data": {"prompt": "p"},
            },
            "Only image files are allowed",
        ),
        ("/api/queue/variation", {"json": {"image": "not base64!"}}, "Invalid image data"),
        (
            "/api/queue/upscale",
            {
                "files": {"image": ("a.png", png(), "image/png")},
                "data": {"resize_mode": "1", "target_width": "200"},
            },
            "Missing required field: target_height",
        ),
        (
            "/api/queue/upscale",
            {"files": {"image": ("a.png", png(), "image/png")}, "data": {"upscaler": "Lanczos 9x"}},
            "Upscaler not found: Lanczos 9x",
        ),
        (
            "/api/queue/upscale",
            {"files": {"image": ("a.png", png(), "image/png")}, "data": {"upscale_factor": "9"}},
            "Invalid upscale_factor: '9'",
        ),
        (
            "/api/queue/upscale",
            {
                "files": {"image": ("a.png", png(100, 60), "image/png")},
                "data": {"resize_mode": "1", "target_width": "50", "target_height": "30"},
            },
            "Invalid target size",
        ),
        (
            "/sdapi/v1/extra-single-image",
            {"json": {"upscaler_1": "Tiny 4x"}},
            "Missing required field: image",
        ),
        (
            "/sdapi/v1/extra-batch-images",
            {"json": {"imageList": []}},
            "Missing required field: imageList (array)",
        ),
        ("/sdapi/v1/extra-batch-images", {"json": {"imageList": [{"name": "a"}]}}, "Image file is required"),
        ("/sdapi/v1/img2img", {"json": {"prompt": "p"}}, "Missing required field: init_images"),
        (
            "/sdapi/v1/img2img",
            {"json": {"init_images": [b64(png())], "denoising_strength": 2}},
            "Invalid denoising_strength: 2",
        ),
    ],
)
async def test_bad_uploads_are_refused_with_the_products_400_and_leave_no_file(
    sd: Fixture, path: str, kwargs: dict[str, Any], error: str
) -> None:
    answer = await sd.http.post(path, **kwargs)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error
    assert sd.staged() == [] and sd.cache.list(GJ, sd.namespace) == []


async def test_deleting_a_generation_removes_its_staged_inputs(sd: Fixture) -> None:
    answer = await sd.http.post(
        "/api/queue/variation", files={"image": ("a.png", png(), "image/png")}, data={"prompt": "p"}
    )
    job_id = answer.json()["job_id"]
    assert len(sd.staged()) == 1
    assert (await sd.http.delete(f"/api/generations/{job_id}")).json() == {"success": True}
    assert sd.staged() == []


def test_check_image_reencodes_and_bounds_pixels_before_decoding() -> None:
    checked = up.check_image(png(20, 10, fmt="WEBP"), LIMITS)
    assert (checked.width, checked.height) == (20, 10) and checked.png.startswith(b"\x89PNG")
    palette = io.BytesIO()
    Image.new("P", (8, 8)).save(palette, format="PNG")
    assert Image.open(io.BytesIO(up.check_image(palette.getvalue(), LIMITS).png)).mode == "RGB"
    with pytest.raises(BadRequest, match="File too large"):
        up.check_image(png(301, 300), up.Limits(10**9, LIMITS.max_pixels, 10**9))
    with pytest.raises(BadRequest, match="File too large"):
        up.decode_base64(b64(bytes(LIMITS.max_bytes + 10)), LIMITS)
    with pytest.raises(BadRequest, match="File too large"):  # a 57-byte PNG that claims 10^10 pixels
        up.check_image(bomb_header(100_000, 100_000), up.Limits(10**9, 10**12, 10**9))


def bomb_header(width: int, height: int) -> bytes:
    """A PNG signature and header chunk claiming ``width`` x ``height``, with no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


async def test_a_streamed_body_without_a_length_is_cut_off_at_the_request_limit(sd: Fixture) -> None:
    boundary = "b0undary"

    async def chunks() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(30):  # 300 kB, past the 200 kB request limit
            yield bytes(10_000)

    answer = await sd.http.post(
        "/api/queue/upscale",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "File too large")
    assert "content-length" not in answer.request.headers
    assert sd.staged() == [] and sd.cache.list(GJ, sd.namespace) == []
