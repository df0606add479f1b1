"""HomePilot's main image path end to end: ``POST /chat`` (mode imagine) → a txt2img GenerationJob →
the real operator → a one-shot generator pod (a local process) on the tiny Stable Diffusion model →
the answer once it finished → the image served at the URL the answer gives; then ``/v1/outpaint``
on that image → an inpaint GenerationJob on the canvas and mask the profile built → a wider image.

Nothing is mocked: the devcluster, the operator fixture, the generator worker and the tiny model
(``tiny_sd``) are real and run on the CPU. No HomePilot application runs: imagine does not need it.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.homepilot import create_app
from kubepilot_gateway.profiles.homepilot.generation import LABEL_FEATURE
from tests.gateway.conftest import stack_settings
from tests.operator.harness import TINY_MODEL, OperatorProcess, Storage

pytestmark = pytest.mark.slow

GJ = resource_for("GenerationJob")


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
