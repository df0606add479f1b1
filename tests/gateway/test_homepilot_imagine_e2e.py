"""HomePilot's image paths end to end, through the real operator and generator pods (local processes):

- ``POST /chat`` (mode imagine) → a txt2img GenerationJob on the tiny Stable Diffusion model → the
  image served at the URL the answer gives; then ``/v1/outpaint`` on that image → an inpaint
  GenerationJob on the canvas and mask the profile built → a wider image; and ``/v1/background``
  replace on it → an inpaint GenerationJob on the background mask the profile built;
- an image uploaded to an edit session → ``/v1/upscale`` 2x and 4x and ``/v1/enhance`` 2x with a
  tiny upscaler file in ``upscale_models/`` (upscale GenerationJobs; the size doubles, quadruples)
  → two edit-session messages and a ``/chat`` edit-mode message, each an img2img GenerationJob
  on the previous one's result;
- a Civitai model version installed with ``/models/install`` → a Civitai ModelPull → the
  operator's downloader against the local Civitai fake (``hub``), authenticated with the key
  stored through ``/settings/api-keys`` (the fake refuses every other request) → the file in
  ``checkpoints/`` and listed by ``/models``.

Nothing is mocked: the devcluster, the operator (this module's own process: the shared one with
Civitai's API pointed at the fake too), the generator and downloader workers and the tiny models
(``tiny_sd``, a tiny RealESRGAN-Compact upscaler) are real and run on the CPU. No HomePilot
application runs: these endpoints do not need it (``/story/scene/image``, which does, is proven in
``test_homepilot_proxy`` with the test finishing its job; its generation is this imagine path).
The tests share the module's operator process.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.homepilot import create_app
from kubepilot_gateway.profiles.homepilot.generation import LABEL_FEATURE
from tests.gateway.conftest import stack_settings
from tests.operator.harness import TINY_MODEL, OperatorProcess, Storage
from tests.workers.hubfake import CivitaiFile, FakeFile, HubFake

pytestmark = pytest.mark.slow

GJ = resource_for("GenerationJob")
MODEL_PULLS = resource_for("ModelPull")
SERVICES = resource_for("ServiceInstance")


@pytest.fixture(scope="module")
def operator(
    devcluster: DevCluster,
    crds: None,
    storage: Storage,
    tmp_path_factory: pytest.TempPathFactory,
    hub: HubFake,
) -> Iterator[OperatorProcess]:
    """The shared stack's operator (``tests.operator.stack_fixtures``), with Civitai's API on the
    local fake as well as the Hub's."""
    extra = {"huggingFaceEndpoint": hub.base_url, "civitaiApiBase": hub.civitai_api}
    process = OperatorProcess(devcluster, storage, tmp_path_factory.mktemp("operator"), extra=extra).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> GatewayContext:
    images = {"model": TINY_MODEL, "width": 64, "height": 64, "steps": 4, "waitSeconds": 240}
    settings = stack_settings(namespace, storage, profileSettings={"homepilot": {"images": images}})
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ctx)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://homepilot.test") as session:
            yield session


async def test_imagine_then_outpaint_through_generation_jobs(
    operator: OperatorProcess, tiny_sd: object, http: httpx.AsyncClient, ctx: GatewayContext
) -> None:
    answer = await http.post(
        "/chat",
        json={
            "message": "a red cat",
            "mode": "imagine",
            "conversation_id": "conv-1",
            "imgModel": "sdxl",  # a HomePilot workflow name: falls back to the configured model
            "imgWidth": 70,  # rounded down to a multiple of 8
            "imgHeight": 64,
            "imgSeed": 7,
        },
        timeout=300,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["conversation_id"] == "conv-1" and body["text"] == "Here you go.", body
    urls = body["media"]["images"]
    assert len(urls) == 1 and urls[0].startswith("http://homepilot.test/files/kubepilot/generations/")
    # What made it, as HomePilot's orchestrator reports it (the seed is the generator's record).
    made = {k: body["media"][k] for k in ("final_prompt", "seed", "seeds", "width", "height", "model")}
    assert made == {
        "final_prompt": "a red cat",
        "seed": 7,
        "seeds": [7],
        "width": 64,
        "height": 64,
        "model": TINY_MODEL,
    }

    (job,) = ctx.cache.list(GJ, ctx.store.namespace)  # the only job so far
    assert job["metadata"]["labels"][LABEL_PROFILE] == "homepilot"
    assert job["metadata"]["labels"][LABEL_FEATURE] == "imagine"
    spec = job["spec"]
    assert (spec["type"], spec["model"], spec["prompt"]) == ("txt2img", TINY_MODEL, "a red cat")
    assert (spec["width"], spec["height"], spec["seed"]) == (64, 64, 7)
    assert job["status"]["phase"] == "Completed"

    image = await http.get(urls[0].removeprefix("http://homepilot.test"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(image.content)) as png:
        assert png.size == (64, 64)

    extended = await http.post(
        "/v1/outpaint",
        json={"image_url": urls[0], "direction": "right", "extend_pixels": 64, "prompt": "more cats"},
        timeout=300,
    )
    assert extended.status_code == 200, extended.text
    result = extended.json()
    assert result["direction_used"] == "right" and result["extend_pixels"] == 64
    assert (result["original_size"], result["new_size"]) == ([64, 64], [128, 64])
    (outpainted,) = result["media"]["images"]
    job = next(j for j in ctx.cache.list(GJ, ctx.store.namespace) if j["spec"]["type"] == "inpaint")
    assert job["metadata"]["labels"][LABEL_FEATURE] == "outpaint"
    assert (job["spec"]["width"], job["spec"]["height"]) == (128, 64)
    image = await http.get(outpainted.removeprefix("http://homepilot.test"))
    with Image.open(io.BytesIO(image.content)) as png:
        assert png.size == (128, 64)

    # Every other direction, at once: each canvas grows on its own side(s) only. A warm generator
    # service takes the six jobs (one model load instead of six one-shot pods).
    warm = {
        "metadata": {"name": "warm"},
        "spec": {"serviceType": "kubepilot-generator", "models": [TINY_MODEL]},
    }
    await ctx.store.create(SERVICES, warm)
    for _ in range(600):
        service = ctx.cache.get(SERVICES, "warm", ctx.store.namespace)
        if (
            service
            and (service.get("status") or {}).get("phase") == "Running"
            and service["status"].get("ready")
        ):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the generator service did not run")

    async def outpaint(direction: str, pixels: int) -> tuple[list[int], tuple[int, int]]:
        body = {"image_url": urls[0], "direction": direction, "extend_pixels": pixels}
        answer = await http.post("/v1/outpaint", json=body, timeout=300)
        assert answer.status_code == 200, answer.text
        (made,) = answer.json()["media"]["images"]
        return answer.json()["new_size"], await image_size(http, made)

    directions = {
        "left": (64, (128, 64)),
        "up": (64, (64, 128)),
        "down": (72, (64, 136)),
        "horizontal": (64, (192, 64)),
        "vertical": (64, (64, 192)),
        "all": (64, (192, 192)),
    }
    results = await asyncio.gather(*(outpaint(d, pixels) for d, (pixels, _size) in directions.items()))
    for (direction, (_pixels, size)), (new_size, made_size) in zip(directions.items(), results, strict=True):
        assert (tuple(new_size), made_size) == (size, size), direction
    warm_jobs = [
        j
        for j in ctx.cache.list(GJ, ctx.store.namespace)
        if (j.get("status") or {}).get("assignedService") == "warm"
    ]
    assert len(warm_jobs) == len(directions)

    # Background replace: inpainting the mask the profile built from the image.
    replaced = await http.post(
        "/v1/background",
        json={"image_url": urls[0], "action": "replace", "prompt": "a beach at dusk"},
        timeout=300,
    )
    assert replaced.status_code == 200, replaced.text
    answer_body = replaced.json()
    assert (answer_body["action_used"], answer_body["original_size"]) == ("replace", [64, 64])
    (background,) = answer_body["media"]["images"]
    job = next(
        j
        for j in ctx.cache.list(GJ, ctx.store.namespace)
        if j["metadata"]["labels"][LABEL_FEATURE] == "background"
    )
    assert (job["spec"]["type"], job["status"]["phase"]) == ("inpaint", "Completed")
    assert job["spec"]["inputs"]["mask"].startswith("homepilot/results/")
    assert await image_size(http, background) == (64, 64)


@pytest.fixture(scope="module")
def tiny_upscaler(storage: Storage) -> Path:
    """A tiny 4x upscaler at ``upscale_models/tiny-x4.safetensors`` (built in a child process, as
    ``tiny_sd`` is, so torch's import stays out of the test process)."""
    target = storage.models / "upscale_models" / "tiny-x4.safetensors"
    command = [sys.executable, "-m", "kubepilot_workers.tinymodels", "upscaler", str(target), "--scale", "4"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return target


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


async def image_size(http: httpx.AsyncClient, url: str) -> tuple[int, int]:
    answer = await http.get(url.removeprefix("http://homepilot.test"))
    assert answer.status_code == 200, url
    with Image.open(io.BytesIO(answer.content)) as picture:
        return picture.size


async def test_upscale_2x_and_an_edit_session_chain(
    operator: OperatorProcess,
    tiny_sd: object,
    tiny_upscaler: Path,
    http: httpx.AsyncClient,
    ctx: GatewayContext,
) -> None:
    # An upload starts the session; the image is staged on the outputs volume under our own name.
    started = await http.post(
        "/v1/edit-sessions/conv-e2e/image",
        files={"file": ("../../etc/cat.png", png((80, 64), (200, 40, 40)), "image/png")},
    )
    assert started.status_code == 200, started.text
    uploaded = started.json()["active_image_url"]
    assert "/files/kubepilot/homepilot/inputs/" in uploaded and "etc" not in uploaded

    upscaled = await http.post("/v1/upscale", json={"image_url": uploaded, "scale": 2}, timeout=300)
    assert upscaled.status_code == 200, upscaled.text
    assert upscaled.json()["model_used"] == "tiny-x4.safetensors"
    (bigger,) = upscaled.json()["media"]["images"]
    assert await image_size(http, bigger) == (160, 128)  # the size doubles
    (job,) = [j for j in ctx.cache.list(GJ, ctx.store.namespace) if j["spec"]["type"] == "upscale"]
    assert job["spec"]["upscale"] == {"upscaler": "tiny-x4.safetensors", "factor": 2.0}
    quadrupled = await http.post("/v1/upscale", json={"image_url": uploaded, "scale": 4}, timeout=300)
    assert quadrupled.status_code == 200, quadrupled.text
    assert await image_size(http, quadrupled.json()["media"]["images"][0]) == (320, 256)  # 4x
    enhanced = await http.post(
        "/v1/enhance", json={"image_url": uploaded, "mode": "photo", "scale": 2}, timeout=300
    )
    assert enhanced.status_code == 200, enhanced.text
    assert (enhanced.json()["original_size"], enhanced.json()["enhanced_size"]) == ([80, 64], [160, 128])
    assert await image_size(http, enhanced.json()["media"]["images"][0]) == (160, 128)

    first = await http.post(
        "/v1/edit-sessions/conv-e2e/message", json={"message": "make it blue"}, timeout=300
    )
    assert first.status_code == 200, first.text
    (first_url,) = first.json()["raw"]["media"]["images"]
    second = await http.post(
        "/v1/edit-sessions/conv-e2e/message",
        json={"message": "add a hat", "extra": {"strength": 0.5}},
        timeout=300,
    )
    assert second.status_code == 200, second.text
    assert second.json()["raw"]["text"] == "Here you go."
    (second_url,) = second.json()["raw"]["media"]["images"]
    assert await image_size(http, second_url) == (80, 64)

    edits = sorted(
        (j for j in ctx.cache.list(GJ, ctx.store.namespace) if j["spec"]["type"] == "img2img"),
        key=lambda j: str(j["metadata"]["creationTimestamp"]) + j["metadata"]["name"],
    )
    assert len(edits) == 2 and all(j["status"]["phase"] == "Completed" for j in edits)
    by_prompt = {j["spec"]["prompt"]: j["spec"] for j in edits}
    assert by_prompt["make it blue"]["inputs"]["image"] == uploaded.split("/files/kubepilot/")[1]
    # The second message edits the first one's result.
    assert by_prompt["add a hat"]["inputs"]["image"] == first_url.split("/files/kubepilot/")[1]
    assert by_prompt["add a hat"]["strength"] == 0.5

    session = (await http.get("/v1/edit-sessions/conv-e2e")).json()
    assert session["active_image_url"] == second_url and session["original_image_url"] == uploaded
    assert session["history"] == [second_url, first_url, uploaded]
    assert [v["instruction"] for v in session["versions"]] == [
        "add a hat",
        "make it blue",
        "[Original Upload]",
    ]
    assert session["versions"][0]["parent_url"] == first_url

    # HomePilot's /chat in edit mode on the same session: a third img2img, on the active image.
    chat = await http.post(
        "/chat",
        json={"message": "make it green", "mode": "edit", "conversation_id": "conv-e2e", "imgSteps": 2},
        timeout=300,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["conversation_id"] == "conv-e2e" and chat.json()["text"] == "Here you go."
    (third_url,) = chat.json()["media"]["images"]
    assert await image_size(http, third_url) == (80, 64)
    green = next(j for j in ctx.cache.list(GJ, ctx.store.namespace) if j["spec"]["prompt"] == "make it green")
    assert green["spec"]["inputs"]["image"] == second_url.split("/files/kubepilot/")[1]
    assert (await http.get("/v1/edit-sessions/conv-e2e")).json()["active_image_url"] == third_url


async def test_civitai_install_is_a_model_pull_with_the_stored_key(
    operator: OperatorProcess, hub: HubFake, storage: Storage, http: httpx.AsyncClient, ctx: GatewayContext
) -> None:
    weights = bytes(range(256)) * 64
    name = "tinyCivitai_v1.safetensors"
    hub.add_civitai_version(4242, [CivitaiFile(file_id=77, name=name, file=FakeFile(data=weights))])
    key = "civitai-key-0123456789abcdef"
    saved = await http.post("/settings/api-keys", json={"provider": "civitai", "key": key})
    assert saved.status_code == 200 and key not in saved.text
    install = {
        "provider": "civitai",
        "model_type": "image",
        "model_id": "Tiny Civitai",
        "civitai_version_id": "4242",
    }
    hub.required_token = key  # without the stored key, Civitai (the fake) answers 401
    try:
        answer = await http.post("/models/install", json=install, timeout=300)
    finally:
        hub.required_token = None
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True and body["provider"] == "civitai" and body["model_id"] == "Tiny Civitai"
    assert (storage.models / "checkpoints" / name).read_bytes() == weights

    (pull,) = [
        p
        for p in ctx.cache.list(MODEL_PULLS, ctx.store.namespace)
        if p["spec"]["source"]["type"] == "Civitai"
    ]
    assert pull["spec"]["source"]["civitai"]["versionId"] == 4242
    assert pull["spec"]["credentialsSecretRef"] == {"name": "homepilot-provider-keys", "key": "civitai"}
    assert pull["status"]["phase"] == "Completed"
    assert name in body["output"]
    listed = (await http.get("/models", params={"provider": "comfyui", "model_type": "image"})).json()
    assert name in listed["models"]
