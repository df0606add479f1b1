"""The HomePilot profile's editing, background, edit-model and preset endpoints without the operator:
validation, uploads, errors, the session state kept in a ConfigMap, and what is answered locally.

Real pieces: the devcluster (ConfigMaps, GenerationJobs), the gateway app over real HTTP (httpx's
ASGI transport), Pillow images on a temporary volume. No operator runs, so nothing here waits for
a GenerationJob to finish: where a route would run one, the test checks what happens before it
(refusals) or stops with a short ``waitSeconds`` and reads the job it created. The work itself is
proven end to end in ``test_homepilot_imagine_e2e``.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, NotFound, resource_for
from kubepilot_gateway.profiles.homepilot import create_app
from kubepilot_gateway.profiles.homepilot.background import background_mask
from kubepilot_gateway.profiles.homepilot.sessions import configmap_name
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.test_homepilot_api import volumes

__all__ = ["volumes"]  # the fixture shared with test_homepilot_api

JsonObject = dict[str, Any]
GJ = resource_for("GenerationJob")


def png(size: tuple[int, int] = (80, 64), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def context(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> GatewayContext:
    settings = Settings(
        namespace=namespace,
        volumes=volumes,
        profileSettings={
            "homepilot": {
                "images": {"waitSeconds": 0.2, "model": "diffusers/tiny-sd"},
                "editSessions": {"maxUploadBytes": 64 * 1024},
            }
        },
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> GatewayContext:
    return context(kube, cache, store, namespace, volumes)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://homepilot.test") as session:
            yield session


async def upload(http: httpx.AsyncClient, session: str, data: bytes, **extra: Any) -> httpx.Response:
    name = extra.pop("name", "cat.png")
    mime = extra.pop("mime", "image/png")
    return await http.post(
        f"/v1/edit-sessions/{session}/image", files={"file": (name, data, mime)}, data=extra
    )


async def test_edit_session_uploads_are_checked_and_kept_in_a_configmap(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str, volumes: Volumes
) -> None:
    outputs = Path(volumes.outputs)
    assert (await upload(http, "s1", b"not an image")).json()["detail"].startswith("Cannot read image")
    assert (await upload(http, "s1", b"")).status_code == 400
    wrong = await upload(http, "s1", png(), mime="text/plain")
    assert wrong.status_code == 400 and "Unsupported content type" in wrong.json()["detail"]
    big = Image.frombytes("RGB", (200, 200), bytes(range(256)) * 468 + bytes(192))
    buffer = io.BytesIO()
    big.save(buffer, format="BMP")  # 120 KB, over the 64 KiB limit of this test
    too_large = await upload(http, "s1", buffer.getvalue())
    assert too_large.status_code == 413 and "Upload too large" in too_large.json()["detail"]
    # A chunked upload (no Content-Length) is cut off as soon as the limit is passed.
    boundary = b"kubepilot"

    async def chunked() -> AsyncIterator[bytes]:
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(20):
            yield bytes(8192)
        yield b"\r\n--" + boundary + b"--\r\n"

    streamed = await http.post(
        "/v1/edit-sessions/s1/image",
        content=chunked(),
        headers={"Content-Type": "multipart/form-data; boundary=kubepilot"},
    )
    assert streamed.status_code == 413
    missing = await http.post("/v1/edit-sessions/s1/image", data={"instruction": "x"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "file"]
    assert not (outputs / "homepilot").exists()  # nothing refused reached the volume

    # A path in the file name never reaches the filesystem: the profile names the file.
    exif = io.BytesIO()
    Image.new("RGB", (80, 64), (1, 2, 3)).save(exif, format="JPEG", exif=b"Exif\x00\x00secret-camera")
    good = await upload(http, "s1", exif.getvalue(), name="../../../../etc/passwd", mime="image/jpeg")
    assert good.status_code == 200, good.text
    state = good.json()
    active = state["active_image_url"]
    assert (
        active.startswith("http://homepilot.test/files/kubepilot/homepilot/inputs/")
        and "passwd" not in active
    )
    assert state["original_image_url"] == active and state["history"] == [active]
    assert state["versions"][0]["instruction"] == "[Original Upload]"
    stored = outputs / active.split("/files/kubepilot/")[1]
    assert b"secret-camera" not in stored.read_bytes()  # EXIF stripped (strip_metadata defaults on)
    assert (await http.get(active.removeprefix("http://homepilot.test"))).status_code == 200

    configmap = await kube.request("GET", CONFIGMAPS.path(namespace, configmap_name("s1")))
    assert configmap["metadata"]["labels"]["kubepilot.io/homepilot-feature"] == "edit-session"
    assert json.loads(configmap["data"]["session.json"])["active"] == stored.relative_to(outputs).as_posix()
    assert (await http.get("/v1/edit-sessions/s1")).json() == state  # read back from the ConfigMap

    # Selecting: only images of ours or of the application; no other host, no path tricks.
    for bad in (
        "http://evil.example/x.png",
        "/files/kubepilot/../secret.png",
        "/files/kubepilot/homepilot/none.png",
    ):
        assert (await http.post("/v1/edit-sessions/s1/select", json={"image_url": bad})).status_code == 400, (
            bad
        )
    assert (await http.post("/v1/edit-sessions/s1/select", json={})).status_code == 422
    second = await upload(http, "s1", png(colour=(0, 0, 255)))
    assert second.json()["history"][1] == active
    # HomePilot's backend also takes JSON {"image_url"} naming an image it already serves.
    by_url = await http.post("/v1/edit-sessions/s1/image", json={"image_url": active})
    assert by_url.status_code == 200 and by_url.json()["active_image_url"] == active
    assert by_url.json()["history"][1] == second.json()["active_image_url"]
    refused = await http.post("/v1/edit-sessions/s1/image", json={"image_url": "file:///etc/passwd"})
    assert refused.status_code == 400
    assert (await http.post("/v1/edit-sessions/s1/image", json={"url": active})).status_code == 422
    reverted = await http.post("/v1/edit-sessions/s1/revert", params={"index": 1})
    assert reverted.json()["active_image_url"] == second.json()["active_image_url"]
    assert reverted.json()["versions"][0]["instruction"] == "[Reverted to: [Original Upload]]"
    assert reverted.json()["original_image_url"] == active
    bad_index = await http.post("/v1/edit-sessions/s1/revert", params={"index": 5})
    assert bad_index.status_code == 400 and bad_index.json()["detail"].startswith("Invalid history index")
    history = (await http.get("/v1/edit-sessions/s1/history")).json()
    assert history["count"] == 2 and history["conversation_id"] == "s1"

    assert (await http.delete("/v1/edit-sessions/s1")).json() == {"ok": True}
    with pytest.raises(NotFound):
        await kube.request("GET", CONFIGMAPS.path(namespace, configmap_name("s1")))
    empty = (await http.get("/v1/edit-sessions/s1")).json()
    assert empty["active_image_url"] is None and empty["versions"] == []
    assert (await http.post("/v1/edit-sessions/s1/revert")).json()["detail"] == "No history available"
    long_id = await http.get("/v1/edit-sessions/" + "x" * 300)
    assert long_id.status_code == 422


async def test_edit_messages_need_an_image_and_a_model_and_run_img2img(
    http: httpx.AsyncClient, ctx: GatewayContext, volumes: Volumes
) -> None:
    no_image = await http.post("/v1/edit-sessions/s2/message", json={"message": "make it blue"})
    assert (
        no_image.status_code == 400 and no_image.json()["detail"] == "No active image. Upload an image first."
    )
    assert (await http.post("/v1/edit-sessions/s2/message", json={})).status_code == 422
    bad_extra = await http.post(
        "/v1/edit-sessions/s2/message", json={"message": "x", "extra": {"strength": 3}}
    )
    assert bad_extra.status_code == 422 and bad_extra.json()["detail"][0]["loc"] == [
        "body",
        "extra",
        "strength",
    ]
    chat = await http.post("/chat", json={"message": "make it blue", "mode": "edit"})
    assert chat.status_code == 400 and chat.json()["detail"] == "No active image. Upload an image first."

    await upload(http, "s2", png((100, 60)))
    # The configured model (the operator would run it) and a short wait: the job stays Pending here.
    answer = await http.post(
        "/v1/edit-sessions/s2/message", json={"message": "make it blue", "model": "sdxl"}
    )
    assert answer.status_code == 200
    raw = answer.json()["raw"]
    assert raw["media"] is None and raw["text"].startswith("Image generation error: still Pending")
    (job,) = ctx.cache.list(GJ, ctx.store.namespace)
    spec = job["spec"]
    assert (spec["type"], spec["prompt"], spec["model"]) == ("img2img", "make it blue", "diffusers/tiny-sd")
    assert (spec["width"], spec["height"], spec["strength"]) == (104, 64, 0.6)  # rounded to 8; editStrength
    assert spec["inputs"]["image"].startswith("homepilot/inputs/")
    assert job["metadata"]["labels"]["kubepilot.io/homepilot-edit-session"] == configmap_name("s2")[-24:]
    # HomePilot's "edit <url> <instruction>" form in /chat.
    url = (await http.get("/v1/edit-sessions/s2")).json()["active_image_url"]
    chat = await http.post("/chat", json={"message": f"edit {url} add a hat", "mode": "edit", "imgSteps": 3})
    assert chat.status_code == 200 and chat.json()["text"].startswith("Image generation error")
    prompts = {j["spec"]["prompt"]: j["spec"] for j in ctx.cache.list(GJ, ctx.store.namespace)}
    assert prompts["add a hat"]["steps"] == 3
    # An upload with an instruction runs the first edit at once on the new image.
    with_instruction = await upload(http, "s2", png((64, 64)), instruction="paint it")
    first = with_instruction.json()
    assert first["result"]["media"] is None and first["result"]["conversation_id"] == "s2"
    painted = next(
        j["spec"] for j in ctx.cache.list(GJ, ctx.store.namespace) if j["spec"]["prompt"] == "paint it"
    )
    assert painted["inputs"]["image"] == first["active_image_url"].split("/files/kubepilot/")[1]
    # Deleting the session deletes its jobs (their images, none yet, would stay).
    assert (await http.delete("/v1/edit-sessions/s2")).json() == {"ok": True}
    remaining = [
        j for j in ctx.cache.list(GJ, ctx.store.namespace) if not j["metadata"].get("deletionTimestamp")
    ]
    assert [j["spec"]["prompt"] for j in remaining] == [
        "add a hat"
    ]  # /chat without a session id keeps its job


async def test_edit_and_background_refuse_what_cannot_run(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, volumes: Volumes
) -> None:
    ctx = context(kube, cache, store, namespace, volumes)
    ctx.settings.profileSettings["homepilot"]["images"] = {"waitSeconds": 0.2}  # no model configured
    app = create_app(ctx)
    outputs = Path(volumes.outputs)
    (outputs / "generations").mkdir()
    (outputs / "generations" / "a.png").write_bytes(png((96, 64)))
    image_url = "http://hp.test/files/kubepilot/generations/a.png"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hp.test") as http:
        no_model = await http.post("/v1/edit", json={"image_url": image_url, "prompt": "a dog"})
        assert no_model.status_code == 503 and "no image model is installed" in no_model.json()["detail"]
        assert (await http.post("/v1/edit", json={"image_url": image_url})).status_code == 422
        assert (
            await http.post("/v1/edit", json={"image_url": image_url, "prompt": "x", "strength": 2})
        ).status_code == 422

        removal = await http.post("/v1/background", json={"image_url": image_url, "action": "remove"})
        assert removal.status_code == 503
        assert removal.json()["detail"].startswith("Background removal is not available")
        no_prompt = await http.post("/v1/background", json={"image_url": image_url, "action": "replace"})
        assert (
            no_prompt.status_code == 400
            and no_prompt.json()["detail"] == "prompt is required for replace action"
        )
        unknown = await http.post("/v1/background", json={"image_url": image_url, "action": "erase"})
        assert unknown.status_code == 422
        weak = await http.post(
            "/v1/background", json={"image_url": image_url, "action": "blur", "blur_strength": 1}
        )
        assert weak.status_code == 422
        gone = await http.post("/v1/background", json={"image_url": "/files/kubepilot/generations/none.png"})
        assert gone.status_code == 400 and "not found" in gone.json()["detail"]

        blurred = await http.post("/v1/background", json={"image_url": image_url, "action": "blur"})
        assert blurred.status_code == 200, blurred.text
        body = blurred.json()
        assert (body["action_used"], body["has_alpha"], body["original_size"]) == ("blur", False, [96, 64])
        result = await http.get(body["media"]["images"][0].removeprefix("http://hp.test"))
        with Image.open(io.BytesIO(result.content)) as picture:
            assert picture.size == (96, 64)
        assert ctx.cache.list(GJ, ctx.store.namespace) == []  # blur runs here, refusals create nothing

        capabilities = (await http.get("/v1/capabilities")).json()["capabilities"]
        assert capabilities["background_replace"]["available"] is False
        assert capabilities["inpaint"]["reason"].startswith("No image model is installed")


async def test_background_replace_and_edit_inpaint_create_inpaint_jobs(
    http: httpx.AsyncClient, ctx: GatewayContext, volumes: Volumes
) -> None:
    outputs = Path(volumes.outputs)
    (outputs / "generations").mkdir()
    subject = Image.new("RGB", (128, 96), (30, 160, 30))
    ImageDraw.Draw(subject).ellipse((44, 24, 84, 72), fill=(220, 30, 30))
    subject.save(outputs / "generations" / "subject.png")
    url = "http://homepilot.test/files/kubepilot/generations/subject.png"
    replaced = await http.post(
        "/v1/background", json={"image_url": url, "action": "replace", "prompt": "a beach"}
    )
    assert (
        replaced.status_code == 500 and "Background replacement workflow failed" in replaced.json()["detail"]
    )
    (job,) = ctx.cache.list(GJ, ctx.store.namespace)
    spec = job["spec"]
    assert (spec["type"], spec["prompt"], spec["strength"]) == ("inpaint", "a beach", 1.0)
    assert spec["params"]["homepilot"]["mask"] == "border-fill"
    with Image.open(outputs / spec["inputs"]["mask"]) as mask:
        assert mask.size == (128, 96)
        assert (
            mask.getpixel((2, 2)) == 255 and mask.getpixel((64, 48)) == 0
        )  # backdrop repainted, subject kept

    (outputs / "generations" / "mask.png").write_bytes(png((128, 96), (255, 255, 255)))
    mask_url = "http://homepilot.test/files/kubepilot/generations/mask.png"
    await http.post("/v1/edit", json={"image_url": url, "prompt": "a cat", "mask_url": mask_url, "seed": 5})
    inpaint = next(
        j["spec"] for j in ctx.cache.list(GJ, ctx.store.namespace) if j["spec"]["prompt"] == "a cat"
    )
    assert inpaint["inputs"] == {"image": "generations/subject.png", "mask": "generations/mask.png"}
    assert (inpaint["seed"], inpaint["strength"]) == (5, 1.0)


def test_background_mask_falls_back_to_a_central_ellipse() -> None:
    noisy = Image.effect_noise((120, 80), 120).convert("RGB")  # no uniform backdrop to fill from
    mask, rule = background_mask(noisy)
    assert rule == "center-ellipse" and mask.size == (120, 80)
    assert mask.getpixel((0, 0)) == 255 and mask.getpixel((60, 40)) == 0


async def test_edit_models_preferences_presets_and_model_health(
    http: httpx.AsyncClient, volumes: Volumes, kube: KubeClient, namespace: str
) -> None:
    models = Path(volumes.models)
    (models / "upscale_models").mkdir()
    (models / "upscale_models" / "RealESRGAN_x4plus.pth").write_bytes(b"weights")
    (models / "upscale_models" / "tiny-x4.safetensors").write_bytes(b"weights")
    (models / "checkpoints").mkdir()
    (models / "checkpoints" / "sd_xl_base_1.0.safetensors").write_bytes(b"weights")

    status = (await http.get("/v1/edit-models")).json()
    assert status["upscale"]["installed"] == ["RealESRGAN_x4plus", "tiny-x4"]
    assert (
        status["upscale"]["default"] == "4x-UltraSharp" and status["upscale"]["selected"] == "4x-UltraSharp"
    )
    ids = [entry["id"] for entry in status["upscale"]["available"]]
    assert ids[:4] == ["4x-UltraSharp", "RealESRGAN_x4plus", "realesr-general-x4v3", "SwinIR_4x"]
    assert status["enhance"]["photo"]["installed"] == status["upscale"]["installed"]
    assert status["enhance"]["faces"]["comfyui_ready"] is False

    async def prefer(mode: str, model_id: str) -> JsonObject:
        answer = await http.post("/v1/edit-models/preference", params={"mode": mode, "model_id": model_id})
        assert answer.status_code == 200
        result: JsonObject = answer.json()
        return result

    assert (await prefer("upscale", "SwinIR_4x"))[
        "error"
    ] == "Model SwinIR 4x is not installed. Please install it first."
    assert (await prefer("upscale", "nope"))["error"] == "Unknown model: nope"
    assert (await prefer("zoom", "tiny-x4"))["error"] == "Unknown mode: zoom"
    assert "not compatible" in (await prefer("faces", "tiny-x4"))["error"]
    assert await prefer("photo", "tiny-x4") == {"success": True, "mode": "photo", "model": "tiny-x4"}
    assert (await http.get("/v1/edit-models")).json()["enhance"]["photo"]["selected"] == "tiny-x4"
    assert (await http.post("/v1/edit-models/preference", params={"mode": "photo"})).status_code == 422
    stored = await kube.request("GET", CONFIGMAPS.path(namespace, "homepilot-edit-model-preferences"))
    assert json.loads(stored["data"]["preferences.json"])["photo"] == "tiny-x4"
    # The preference picks the upscaler an enhance job names (before its input is even read).
    enhance = await http.post("/v1/enhance", json={"image_url": "/files/kubepilot/generations/none.png"})
    assert enhance.status_code == 400

    image = (
        await http.get("/image-presets", params={"model": "sdxl", "preset": "high", "aspect_ratio": "16:9"})
    ).json()
    assert image["ok"] is True and image["preset"] == "high"
    assert (image["values"]["width"], image["values"]["height"], image["values"]["cfg"]) == (1216, 832, 6.0)
    assert (
        image["available_presets"] == ["low", "med", "high", "ultra"]
        and "16:9" in image["preset_resolutions"]
    )
    default = (await http.get("/image-presets")).json()
    assert default["preset"] == "med" and default["default_aspect_ratio"] == "1:1"
    bad = await http.get("/image-presets", params={"preset": "extreme"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_preset"
    video = (await http.get("/video-presets", params={"preset": "med", "aspect_ratio": "9:16"})).json()
    assert video["preset"] == "medium" and (video["values"]["width"], video["values"]["height"]) == (432, 768)
    assert (await http.get("/video-presets", params={"preset": "x"})).status_code == 400

    health = (await http.get("/models/health")).json()
    by_id = {r["id"]: r for r in health["results"]}
    assert by_id["sd_xl_base_1.0.safetensors"]["status"] == "healthy"
    assert by_id["v1-5-pruned-emaonly.safetensors"]["status"] == "unchecked"
    assert health["summary"]["total"] == len(health["results"]) == 3
    only_enhance = (await http.get("/models/health", params={"model_type": "enhance"})).json()
    assert [r["id"] for r in only_enhance["results"]] == ["RealESRGAN_x4plus.pth"]


async def test_docs_list_the_new_endpoints(http: httpx.AsyncClient) -> None:
    paths = set((await http.get("/openapi.json")).json()["paths"])
    assert {
        "/v1/edit",
        "/v1/background",
        "/v1/edit-sessions/{conversation_id}/image",
        "/v1/edit-sessions/{conversation_id}/message",
        "/v1/edit-models",
        "/v1/edit-models/preference",
        "/image-presets",
        "/video-presets",
        "/models/health",
    } <= paths
