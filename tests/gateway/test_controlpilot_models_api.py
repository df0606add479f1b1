"""ControlPilot's models and hf-token API (CP-08 … CP-15) against the devcluster, in-process.

No operator runs here: these tests check the translation between ControlPilot's requests and
ModelPulls, ConfigMaps, Secrets and the files on the models volume. Where a test needs a status
the operator would write (progress, Completed, Failed), it writes it through the status
subresource itself; with no operator no finalizer is set, so a deleted ModelPull goes at once.
The end-to-end path with the real operator is in ``test_controlpilot_models_e2e.py``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.app.observe import ObservedApp
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, SECRETS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import models as mdl
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import eventually
from tests.operator.harness import Storage

JsonObject = dict[str, Any]
MP = resource_for("ModelPull")
STAMP = "2027-01-15T08:00:00Z"
ROW_KEYS = [
    "name",
    "kind",
    "source",
    "subdir",
    "include",
    "expected_size_bytes",
    "category",
    "type",
    "installed",
    "size_bytes",
    "info_url",
    "target_path",
    "primary_path",
]


def manifest_for(namespace: str) -> str:
    """A manifest whose files live in folders of this test's own (the models volume is shared)."""
    return (
        "# test manifest\n"
        f"one|hf_file|org/one:one.safetensors|checkpoints/{namespace}||\n"
        f"two|url|https://files.example/two.pth|upscale_models/{namespace}||\n"
        f"repo|hf_repo|org/repo|diffusers/{namespace}|*.json,*.safetensors|\n"
    )


def ctx_for(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage, **models: Any
) -> GatewayContext:
    volumes = Volumes(
        models=str(storage.models), datasets=str(storage.datasets), outputs=str(storage.outputs)
    )
    settings = Settings(
        namespace=namespace,
        volumes=volumes,
        profileSettings={"controlpilot": {"models": {"manifestCacheSeconds": 0, **models}}},
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def manifest(kube: KubeClient, namespace: str) -> str:
    """The test manifest, in the ConfigMap the profile reads by default."""
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "controlpilot-models"},
        "data": {"manifest": manifest_for(namespace)},
    }
    await kube.request("POST", CONFIGMAPS.path(namespace), body=body)
    return manifest_for(namespace)


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> GatewayContext:
    return ctx_for(kube, cache, store, namespace, storage)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ObservedApp(create_app(ctx), profile="controlpilot"))
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


async def rows(http: httpx.AsyncClient) -> dict[str, JsonObject]:
    response = await http.get("/api/models")
    assert response.status_code == 200
    return {row["name"]: row for row in response.json()}


async def set_status(store: CrStore, name: str, **status: Any) -> None:
    await store.patch_status(MP, mdl.pull_name(name), status)


async def kube_list(store: CrStore, namespace: str) -> JsonObject:
    """The ModelPulls as the API server has them (not the cache)."""
    return await store.client.request("GET", MP.path(namespace))


def write(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w" * size)
    return path


# -- CP-08 -----------------------------------------------------------------------------------------


async def test_without_a_manifest_configmap_the_built_in_catalog_is_served(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/models")
    assert response.status_code == 200
    items = response.json()
    assert [i["name"] for i in items] == [e.name for e in mdl.parse_manifest(mdl.DEFAULT_MANIFEST).entries]
    assert all(list(item) == ROW_KEYS for item in items)
    assert {i["kind"] for i in items} == {"hf_file", "hf_repo", "url"}


async def test_the_manifest_configmap_is_joined_with_the_files_on_the_volume(
    http: httpx.AsyncClient, manifest: str, namespace: str, storage: Storage
) -> None:
    listed = await rows(http)
    assert list(listed) == ["one", "two", "repo"]
    assert listed["one"]["installed"] is False and listed["one"]["primary_path"] is None
    assert listed["one"]["target_path"] == str(storage.models / "checkpoints" / namespace)
    write(storage.models / "checkpoints" / namespace / "one.safetensors", 10)
    write(storage.models / "diffusers" / namespace / "unet" / "w.safetensors", 7)
    write(storage.models / "diffusers" / namespace / "model_index.json", 3)
    listed = await rows(http)
    one, repo = listed["one"], listed["repo"]
    assert (one["installed"], one["size_bytes"]) == (True, 10)
    assert one["primary_path"] == str(storage.models / "checkpoints" / namespace / "one.safetensors")
    assert (repo["installed"], repo["size_bytes"]) == (True, 7)
    assert listed["two"]["installed"] is False


async def test_the_manifest_is_read_once_per_ttl_not_per_request(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    storage: Storage,
    manifest: str,
    devcluster: DevCluster,
) -> None:
    ctx = ctx_for(kube, cache, store, namespace, storage, manifestCacheSeconds=0.5)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as http:
        assert list(await rows(http)) == ["one", "two", "repo"]
        devcluster.inject_fault("500", count=100, verb="get", resource="configmaps")
        for _ in range(5):
            assert list(await rows(http)) == ["one", "two", "repo"]  # from the read above
        devcluster.clear_faults()
        patch = {"data": {"manifest": "only|hf_file|org/only:f.safetensors|vae||\n"}}
        await kube.request(
            "PATCH",
            CONFIGMAPS.path(namespace, "controlpilot-models"),
            body=patch,
            content_type="application/merge-patch+json",
        )
        assert list(await rows(http)) == ["one", "two", "repo"]  # still within the TTL
        await asyncio.sleep(0.6)  # the TTL itself is what is under test
        assert list(await rows(http)) == ["only"]


async def test_once_read_the_manifest_outlives_a_failing_api_server(
    http: httpx.AsyncClient, manifest: str, devcluster: DevCluster
) -> None:
    assert list(await rows(http)) == ["one", "two", "repo"]
    devcluster.inject_fault("500", count=100, verb="get", resource="configmaps")
    assert list(await rows(http)) == ["one", "two", "repo"]  # TTL 0: read again, failed, last one kept


async def test_a_broken_api_server_is_a_500_with_its_message(
    http: httpx.AsyncClient, devcluster: DevCluster
) -> None:
    devcluster.inject_fault("500", count=5, verb="get", resource="configmaps")
    response = await http.get("/api/models")
    assert response.status_code == 500 and isinstance(response.json()["detail"], str)


# -- CP-10 / CP-11 / CP-12 -------------------------------------------------------------------------


async def test_pull_start_creates_one_model_pull_and_concurrent_starts_share_it(
    http: httpx.AsyncClient, manifest: str, store: CrStore, namespace: str
) -> None:
    answers = await asyncio.gather(*(http.post("/api/models/one/pull/start") for _ in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    jobs = [a.json() for a in answers]
    assert {(j["name"], j["state"], j["pid"]) for j in jobs} == {("one", "running", None)}
    assert len({j["started_at"] for j in jobs}) == 1
    pulls = (await kube_list(store, namespace))["items"]
    assert [p["metadata"]["name"] for p in pulls] == [mdl.pull_name("one")]
    pull = pulls[0]
    assert pull["metadata"]["labels"][LABEL_PROFILE] == "controlpilot"
    assert pull["metadata"]["labels"][mdl.LABEL_CATALOG] == "controlpilot-manifest"
    assert pull["spec"]["catalogRef"] == {"catalog": "controlpilot-manifest", "entry": "one"}
    source = pull["spec"]["source"]
    assert (source["type"], source["huggingFace"]["repo"], source["huggingFace"]["files"]) == (
        "HuggingFace",
        "org/one",
        ["one.safetensors"],
    )
    assert pull["spec"]["destination"] == {"modelType": "checkpoints", "subdir": namespace}
    assert "credentialsSecretRef" not in pull["spec"]  # no token stored


async def test_unknown_models_are_404_unknown_model(http: httpx.AsyncClient, manifest: str) -> None:
    for path in ("/api/models/nope/pull/start", "/api/models/nope/delete", "/api/models/nope/pull"):
        response = await http.post(path)
        assert (response.status_code, response.json()) == (404, {"detail": "Unknown model"})
    response = await http.get("/api/models/nope/pull/status")
    assert response.json() == {"name": "nope", "state": "idle"}


async def test_status_and_the_pull_list_follow_the_model_pull(
    http: httpx.AsyncClient, manifest: str, store: CrStore
) -> None:
    assert (await http.get("/api/models/one/pull/status")).json() == {"name": "one", "state": "idle"}
    assert (await http.get("/api/models/pulls")).json() == {"jobs": []}
    await http.post("/api/models/one/pull/start")
    await http.post("/api/models/two/pull/start")
    progress = {
        "bytesDone": 300,
        "bytesTotal": 1000,
        "percent": 30,
        "lastUpdatedTime": "2099-01-01T00:00:00Z",
    }
    await set_status(store, "one", phase="Downloading", progress=progress, startedAt=STAMP)
    status = (await http.get("/api/models/one/pull/status")).json()
    assert (status["state"], status["progress_pct"]) == ("running", 30)
    jobs = (await http.get("/api/models/pulls")).json()["jobs"]
    assert [j["name"] for j in jobs] == ["one", "two"]  # one was updated last (its progress time)

    files = [{"path": "checkpoints/x.safetensors", "sizeBytes": 5, "state": "Verified"}]
    await set_status(store, "one", phase="Completed", files=files, completedAt="2099-01-01T00:00:01Z")
    done = (await http.get("/api/models/one/pull/status")).json()
    assert (done["state"], done["progress_pct"], done["error"]) == ("done", 100, None)
    await set_status(store, "two", phase="Completed", completedAt="2000-01-01T00:00:00Z")
    assert (await http.get("/api/models/two/pull/status")).json() == {"name": "two", "state": "idle"}
    assert [j["name"] for j in (await http.get("/api/models/pulls")).json()["jobs"]] == ["one"]


async def test_starting_a_failed_pull_again_replaces_its_model_pull(
    http: httpx.AsyncClient, manifest: str, store: CrStore, cache: ClusterCache
) -> None:
    await http.post("/api/models/two/pull/start")
    old = cache.get(MP, mdl.pull_name("two"))
    assert old is not None
    await set_status(
        store, "two", phase="Failed", error={"code": "NOT_FOUND", "message": "404 from the server"}
    )
    failed = (await http.get("/api/models/two/pull/status")).json()
    assert (failed["state"], failed["error"]) == ("error", "404 from the server")
    again = await http.post("/api/models/two/pull/start")
    assert again.json()["state"] == "running"
    new = await store.get(MP, mdl.pull_name("two"))
    assert new["metadata"]["uid"] != old["metadata"]["uid"]


async def test_concurrent_starts_of_a_failed_pull_replace_it_with_one_model_pull(
    http: httpx.AsyncClient, manifest: str, store: CrStore, namespace: str
) -> None:
    await http.post("/api/models/two/pull/start")
    await set_status(store, "two", phase="Failed", error={"code": "X", "message": "broken"})
    old = (await store.get(MP, mdl.pull_name("two")))["metadata"]["uid"]
    answers = await asyncio.gather(*(http.post("/api/models/two/pull/start") for _ in range(3)))
    assert [(a.status_code, a.json()["state"]) for a in answers] == [(200, "running")] * 3
    pulls = (await kube_list(store, namespace))["items"]
    assert len(pulls) == 1 and pulls[0]["metadata"]["uid"] != old


async def test_a_completed_pull_whose_files_are_there_is_not_pulled_again(
    http: httpx.AsyncClient, manifest: str, store: CrStore, storage: Storage, namespace: str
) -> None:
    await http.post("/api/models/one/pull/start")
    path = f"checkpoints/{namespace}/one.safetensors"
    write(storage.models / path, 4)
    await set_status(
        store, "one", phase="Completed", files=[{"path": path, "sizeBytes": 4, "state": "Verified"}]
    )
    uid = (await store.get(MP, mdl.pull_name("one")))["metadata"]["uid"]
    answer = (await http.post("/api/models/one/pull/start")).json()
    assert answer["state"] == "done"
    assert (await store.get(MP, mdl.pull_name("one")))["metadata"]["uid"] == uid


# -- CP-09 -----------------------------------------------------------------------------------------


async def test_the_blocking_pull_answers_when_the_pull_ends(
    http: httpx.AsyncClient, manifest: str, store: CrStore, cache: ClusterCache, namespace: str
) -> None:
    ok = asyncio.create_task(http.post("/api/models/one/pull"))
    failing = asyncio.create_task(http.post("/api/models/two/pull"))
    await eventually(lambda: cache.get(MP, mdl.pull_name("one")) is not None, what="the pull of one")
    await eventually(lambda: cache.get(MP, mdl.pull_name("two")) is not None, what="the pull of two")
    assert not ok.done()
    await set_status(
        store, "one", phase="Completed", files=[{"path": "checkpoints/a.safetensors", "sizeBytes": 1}]
    )
    await set_status(store, "two", phase="Failed", error={"code": "NOT_FOUND", "message": "gone upstream"})
    response = await asyncio.wait_for(ok, 10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["output"].startswith("Pulling one from org/one:one.safetensors")
    assert body["output"].endswith(f"Done: 1 files in checkpoints/{namespace}")
    failed = await asyncio.wait_for(failing, 10)
    assert failed.status_code == 500
    assert failed.json()["detail"].startswith("Pulling two from https://files.example/two.pth")
    assert failed.json()["detail"].endswith("Error: gone upstream")


# -- CP-13 -----------------------------------------------------------------------------------------


async def test_delete_without_a_model_pull_removes_the_files_on_the_volume(
    http: httpx.AsyncClient, manifest: str, storage: Storage, namespace: str, tmp_path: Path
) -> None:
    weights = write(storage.models / "diffusers" / namespace / "unet" / "w.safetensors", 5)
    index = write(storage.models / "diffusers" / namespace / "model_index.json", 2)
    notes = write(storage.models / "diffusers" / namespace / "notes.md", 2)  # not matched by include
    outside = write(tmp_path / "outside.safetensors", 3)
    (storage.models / "diffusers" / namespace / "link.safetensors").symlink_to(outside)
    response = await http.post("/api/models/repo/delete")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "deleted": 2})
    assert not weights.exists() and not index.exists() and not weights.parent.exists()
    assert notes.exists() and outside.exists()
    again = await http.post("/api/models/repo/delete")
    assert again.json() == {"status": "ok", "deleted": 0}


async def test_delete_removes_the_model_pull_and_spares_files_another_pull_lists(
    http: httpx.AsyncClient,
    manifest: str,
    store: CrStore,
    storage: Storage,
    namespace: str,
    cache: ClusterCache,
) -> None:
    path = f"checkpoints/{namespace}/one.safetensors"
    target = write(storage.models / path, 4)
    await http.post("/api/models/one/pull/start")
    await set_status(
        store, "one", phase="Completed", files=[{"path": path, "sizeBytes": 4, "state": "Verified"}]
    )
    other = mdl.new_model_pull(
        mdl.entry_from_fields(f"x|hf_file|org/x:one.safetensors|checkpoints/{namespace}".split("|"))
    )
    other["metadata"]["name"] = "someone-else"
    await store.create(MP, other)
    await store.patch_status(MP, "someone-else", {"phase": "Completed", "files": [{"path": path}]})
    await eventually(
        lambda: bool(mdl.pulled_files(cache.get(MP, "someone-else"))), what="the other pull's files"
    )
    response = await http.post("/api/models/one/delete")
    assert response.json() == {"status": "ok", "deleted": 0}
    assert target.exists() and cache.get(MP, mdl.pull_name("one")) is None
    await store.delete(MP, "someone-else")
    await http.post("/api/models/one/pull/start")
    response = await http.post("/api/models/one/delete")
    assert response.json() == {"status": "ok", "deleted": 1}
    assert not target.exists()


# -- CP-14 / CP-15 ---------------------------------------------------------------------------------


async def test_the_hf_token_is_stored_in_a_secret_and_only_whether_it_is_set_is_answered(
    http: httpx.AsyncClient, manifest: str, kube: KubeClient, namespace: str, store: CrStore
) -> None:
    assert (await http.get("/api/hf-token")).json() == {"set": False}
    response = await http.post("/api/hf-token", params={"token": "hf_first"})
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert (await http.get("/api/hf-token")).json() == {"set": True}
    response = await http.post("/api/hf-token", params={"token": ""}, json={"token": "hf_second"})
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    secret = await kube.request("GET", SECRETS.path(namespace, "hf-token"))
    assert base64.b64decode(secret["data"]["HF_TOKEN"]) == b"hf_second"
    assert secret["metadata"]["labels"][LABEL_PROFILE] == "controlpilot"

    await http.post("/api/models/one/pull/start")
    await http.post("/api/models/two/pull/start")
    one = await store.get(MP, mdl.pull_name("one"))
    assert one["spec"]["credentialsSecretRef"] == {"name": "hf-token", "key": "HF_TOKEN"}
    assert "credentialsSecretRef" not in (await store.get(MP, mdl.pull_name("two")))["spec"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {},
        {"params": {"token": ""}},
        {"params": {"token": "  "}},
        {"json": {}},
        {"json": {"token": ""}},
        {"content": b"x"},
    ],
)
async def test_a_missing_or_empty_token_is_422_token_is_required(
    http: httpx.AsyncClient, request_kwargs: dict[str, Any]
) -> None:
    response = await http.post("/api/hf-token", **request_kwargs)
    assert (response.status_code, response.json()) == (422, {"detail": "token is required"})


async def test_the_token_never_appears_in_answers_errors_or_logs(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, devcluster: DevCluster
) -> None:
    token = "hf_SeCrEt_0123456789"
    encoded = base64.b64encode(token.encode()).decode()
    caplog.set_level(logging.DEBUG)
    answers = [
        await http.post("/api/hf-token", params={"token": token}),
        await http.post("/api/hf-token", json={"token": token}),
        await http.get("/api/hf-token"),
    ]
    devcluster.inject_fault("500", count=3, verb="patch", resource="secrets")
    answers.append(await http.post("/api/hf-token", json={"token": token}))
    assert [a.status_code for a in answers] == [200, 200, 200, 500]
    for answer in answers:
        assert token not in answer.text and encoded not in answer.text
    # The test's own client logs the URL it requested; everything else is the gateway's.
    records = [r for r in caplog.records if "controlpilot.test" not in r.getMessage()]
    assert any(r.name == "kubepilot_gateway.access" for r in records)  # the access log did run
    for record in records:
        text = record.getMessage() + str(record.exc_info or "")
        assert token not in text and encoded not in text
