"""ControlPilot's model pull end to end: gateway request → ModelPull → the real operator → the real
downloader as a pod → progress → pull status → installed → delete removes the files.

Everything is real but the Hugging Face Hub, which is the local Hub fake (real HTTP on 127.0.0.1)
because the network is not reachable here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import models as mdl
from kubepilot_gateway.settings import Settings, Volumes
from tests.operator.harness import OperatorProcess, Storage
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")
SIZE = 3_000_000
TOKEN = "hf_e2e_token"


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> AsyncIterator[httpx.AsyncClient]:
    volumes = Volumes(
        models=str(storage.models), datasets=str(storage.datasets), outputs=str(storage.outputs)
    )
    settings = Settings(namespace=namespace, volumes=volumes)
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


async def poll_status(http: httpx.AsyncClient, name: str, within: float) -> list[JsonObject]:
    """Every pull/status answer until the job is done or failed (a poll with a deadline, as the
    ControlPilot web UI polls)."""
    seen: list[JsonObject] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job = (await http.get(f"/api/models/{name}/pull/status")).json()
        seen.append(job)
        if job["state"] in ("done", "error"):
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"no final state within {within}s; last: {seen[-1] if seen else None}")


async def test_a_model_is_pulled_shown_installed_and_deleted_through_controlpilot(
    operator: OperatorProcess,
    hub: HubFake,
    http: httpx.AsyncClient,
    kube: KubeClient,
    namespace: str,
    storage: Storage,
    cache: ClusterCache,
) -> None:
    repo = f"org/{namespace}"
    hub.add_repo(repo, {"model.safetensors": FakeFile(data=bytes_of(namespace, SIZE))})
    manifest = f"tiny|hf_file|{repo}:model.safetensors|checkpoints/{namespace}||{SIZE}\n"
    configmap = {"metadata": {"name": "controlpilot-models"}, "data": {"manifest": manifest}}
    await kube.request(
        "POST", CONFIGMAPS.path(namespace), body={"apiVersion": "v1", "kind": "ConfigMap", **configmap}
    )
    assert (await http.post("/api/hf-token", json={"token": TOKEN})).json() == {"status": "ok"}
    target = storage.models / "checkpoints" / namespace / "model.safetensors"

    hub.required_token = TOKEN  # the token must travel Secret → pod → Hub
    hub.throttle_bytes_per_second = 2_000_000  # slow enough to see progress between 0 and 100
    try:
        started = await http.post("/api/models/tiny/pull/start")
        assert started.status_code == 200 and started.json()["state"] == "running"
        seen = await poll_status(http, "tiny", within=90)
    finally:
        hub.required_token = None
        hub.throttle_bytes_per_second = 0

    final = seen[-1]
    assert final["state"] == "done", final
    assert (final["progress_pct"], final["error"], final["pid"]) == (100, None, None)
    assert any(
        j["state"] == "running" and isinstance(j["progress_pct"], int) and 0 <= j["progress_pct"] < 100
        for j in seen
    )
    assert f"Verified checkpoints/{namespace}/model.safetensors" in " ".join(final["output_tail"])
    assert target.read_bytes() == bytes_of(namespace, SIZE)
    pull = cache.get(MP, mdl.pull_name("tiny"))
    assert pull is not None and pull["spec"]["credentialsSecretRef"] == {
        "name": "hf-token",
        "key": "HF_TOKEN",
    }

    assert [j["name"] for j in (await http.get("/api/models/pulls")).json()["jobs"]] == ["tiny"]
    (row,) = (await http.get("/api/models")).json()
    assert (row["installed"], row["size_bytes"], row["primary_path"]) == (True, SIZE, str(target))

    deleted = await http.post("/api/models/tiny/delete")
    assert (deleted.status_code, deleted.json()) == (200, {"status": "ok", "deleted": 1})
    assert not target.exists()
    assert cache.get(MP, mdl.pull_name("tiny")) is None
    (row,) = (await http.get("/api/models")).json()
    assert row["installed"] is False
    assert (await http.get("/api/models/tiny/pull/status")).json() == {"name": "tiny", "state": "idle"}
