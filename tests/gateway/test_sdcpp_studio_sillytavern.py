"""The request sequence a SillyTavern-style A1111 client sends, against sd.cpp Studio over the
devcluster (real HTTP through ASGI, real CRs, image files on the outputs volume), in both
``compat`` modes: the preflights, the ping (``GET /sdapi/v1/options``), the lists it fills its
menus from, waiting for an idle queue before it sets the model, ``POST /sdapi/v1/options``,
txt2img without a model (its body as SillyTavern writes it), progress polling while the job runs,
and an interrupt of a second generation; then the REST view of the same jobs, whose shapes differ
between the modes.

No operator runs here: the test writes the job's status the way the operator does (``Processing``
with progress, then ``Completed`` with a written PNG, or ``Cancelled`` after the interrupt). The
operator path with a real generator is ``test_sdcpp_studio_e2e.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.sdcpp_studio import create_app
from tests.gateway.conftest import stack_settings
from tests.gateway.test_sdcpp_studio_inputs import finish
from tests.operator.harness import Storage

GJ = resource_for("GenerationJob")
JsonObject = dict[str, Any]
MODELS = [{"id": "tiny-sd", "path": "diffusers/tiny-sd"}, {"id": "other", "path": "diffusers/other"}]
NOW = "2026-01-01T00:00:00Z"
ORIGIN = "http://127.0.0.1:8000"  # SillyTavern's own page


def sillytavern_txt2img(prompt: str, seed: int) -> JsonObject:
    """The body SillyTavern's A1111 source posts (no model: it was set through the options)."""
    return {
        "prompt": prompt,
        "negative_prompt": "lowres, bad anatomy",
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "steps": 6,
        "cfg_scale": 6.5,
        "width": 64,
        "height": 96,
        "restore_faces": False,
        "enable_hr": False,
        "hr_upscaler": "Latent",
        "hr_scale": 1.0,
        "hr_second_pass_steps": 0,
        "denoising_strength": 0.7,
        "seed": seed,
        "clip_skip": 1,
        "override_settings": {"CLIP_stop_at_last_layers": 1},
        "override_settings_restore_afterwards": True,
        "save_images": True,
        "send_images": True,
        "do_not_save_grid": False,
        "do_not_save_samples": False,
    }


@pytest.fixture(params=["document", "product"])
async def tavern(
    request: pytest.FixtureRequest,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    compat = str(request.param)
    profile = {"models": MODELS, "compat": compat, "syncTimeoutSeconds": 30}
    settings = stack_settings(namespace, storage, profileSettings={"sdcpp-studio": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    headers = {"Origin": ORIGIN}
    async with httpx.AsyncClient(transport=transport, base_url="http://sd.test", headers=headers) as http:
        yield compat, http


async def the_new_job(cache: ClusterCache, namespace: str, known: set[str]) -> JsonObject:
    async with asyncio.timeout(30):
        while True:
            fresh = [cr for cr in cache.list(GJ, namespace) if cr["metadata"]["name"] not in known]
            if fresh:
                return fresh[0]
            await asyncio.sleep(0.02)


async def test_a_sillytavern_session_sets_the_model_generates_polls_progress_and_interrupts(
    tavern: tuple[str, httpx.AsyncClient],
    cache: ClusterCache,
    store: CrStore,
    storage: Storage,
    namespace: str,
) -> None:
    compat, http = tavern
    # Its sd.cpp source pings the OpenAI-style route; the browser preflights the A1111 ones.
    ping = await http.options("/v1/images/generations")
    assert ping.status_code == 204 and ping.headers["access-control-allow-origin"] == "*"
    preflight = await http.options(
        "/sdapi/v1/txt2img",
        headers={
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-headers"] == "content-type,authorization"

    options = await http.get("/sdapi/v1/options")  # the connect button's ping
    assert options.status_code == 200 and options.headers["access-control-allow-origin"] == "*"
    assert options.json()["sd_model_checkpoint"] == "tiny-sd"
    samplers = [s["name"] for s in (await http.get("/sdapi/v1/samplers")).json()]
    assert "DPM++ 2M" in samplers and "Euler a" in samplers
    assert [s["name"] for s in (await http.get("/sdapi/v1/schedulers")).json()] == ["automatic", "karras"]
    models = (await http.get("/sdapi/v1/sd-models")).json()
    assert [(m["title"], m["model_name"]) for m in models] == [("tiny-sd", "tiny-sd"), ("other", "other")]
    assert [u["name"] for u in (await http.get("/sdapi/v1/upscalers")).json()] == ["RealESRGAN 4x+"]
    assert (await http.get("/sdapi/v1/latent-upscale-modes")).json() == []
    assert (await http.get("/sdapi/v1/sd-vae")).json() == []

    # Set-model: wait for an idle queue, set it, read it back.
    assert (await http.get("/sdapi/v1/progress")).json()["state"]["job_count"] == 0
    chosen = await http.post("/sdapi/v1/options", json={"sd_model_checkpoint": "other"})
    assert chosen.json() == {"updated": [{"sd_model_checkpoint": True}]}
    assert (await http.get("/sdapi/v1/options")).json()["sd_model_checkpoint"] == "other"

    # Generate, polling the progress while the job runs.
    generating = asyncio.create_task(http.post("/sdapi/v1/txt2img", json=sillytavern_txt2img("a fox", 42)))
    cr = await the_new_job(cache, namespace, set())
    name = cr["metadata"]["name"]
    spec = cr["spec"]
    assert (spec["model"], spec["width"], spec["height"], spec["steps"], spec["seed"]) == (
        "diffusers/other",
        64,
        96,
        6,
        42,
    )
    assert (spec["sampler"], spec["cfgScale"], spec["count"]) == ("DPM++ 2M Karras", 6.5, 1)
    queued = (await http.get("/sdapi/v1/progress")).json()
    assert (queued["progress"], queued["state"]["job_count"]) == (0.0, 1)
    report = {
        "step": 3,
        "totalSteps": 6,
        "imagesDone": 0,
        "percent": 50,
        "etaSeconds": 2,
        "lastUpdatedTime": NOW,
    }
    await store.patch_status(GJ, name, {"phase": "Processing", "progress": report})
    running = (await http.get("/sdapi/v1/progress")).json()
    assert running["progress"] == 0.5 and running["eta_relative"] == 2.0
    assert (
        running["state"]["job"],
        running["state"]["sampling_step"],
        running["state"]["sampling_steps"],
    ) == (
        name,
        3,
        6,
    )
    assert not generating.done()
    (written,) = await finish(store, storage, cr, [(64, 96)])
    answer = await asyncio.wait_for(generating, 30)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert [base64.b64decode(image) for image in result["images"]] == [written]
    assert result["parameters"]["sampler_name"] == "DPM++ 2M" and result["parameters"]["seed"] == 42
    info = json.loads(result["info"])
    assert (info["sd_model_name"], info["width"], info["height"], info["steps"]) == ("other", 64, 96, 6)
    assert info["infotexts"][0].startswith("a fox\nNegative prompt: lowres, bad anatomy\nSteps: 6")
    assert (await http.get("/sdapi/v1/progress")).json()["state"]["job_count"] == 0

    # A second generation, interrupted while it runs (SillyTavern's abort button).
    interrupted = asyncio.create_task(http.post("/sdapi/v1/txt2img", json=sillytavern_txt2img("a owl", -1)))
    second = await the_new_job(cache, namespace, {name})
    other = second["metadata"]["name"]
    await store.patch_status(
        GJ, other, {"phase": "Processing", "progress": {"step": 1, "lastUpdatedTime": NOW}}
    )
    assert (await http.post("/sdapi/v1/interrupt")).json() == {"success": True}
    cancelled = cache.get(GJ, other, namespace)
    assert cancelled is not None and cancelled["spec"]["cancel"] is True
    assert cancelled["spec"]["cancelReason"] == "Interrupted"
    await store.patch_status(GJ, other, {"phase": "Cancelled"})  # what the operator then writes
    refused = await asyncio.wait_for(interrupted, 30)
    assert (refused.status_code, refused.json()) == (500, {"error": "Generation cancelled"})

    # The REST view of the same two jobs, in each mode's shape.
    job = (await http.get(f"/api/queue/{other}")).json()
    assert job["status"] == "cancelled" and job["type"] == "generate"
    listing = (await http.get("/api/generations")).json()
    if compat == "document":
        assert [row["id"] for row in listing] == [name] and listing[0]["image_count"] == 1
        assert listing[0]["created_at"] < 10**11  # epoch seconds
    else:
        assert {row["id"]: row["status"] for row in listing["generations"]} == {
            name: "completed",
            other: "cancelled",
        }
        assert listing["pagination"]["total"] == 2
        assert listing["generations"][0]["created_at"] > 10**12  # epoch milliseconds
    (image,) = (await http.get(f"/api/generations/{name}/images")).json()
    assert (await http.get(f"/api/images/{image['id']}")).content == written
