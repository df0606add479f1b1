"""The dashboard's workflow endpoints (list, get, save) against the devcluster.

Real API server (the template ConfigMap is a real ConfigMap), real HTTP (httpx over ASGI), real
outputs volume (a temporary folder). Nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.comfyui_docker import create_app
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
MAX_BYTES = 20_000

GRAPH: JsonObject = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
    "2": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "model": ["1", 0]}},
}


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    root.mkdir()
    return root


@pytest.fixture
async def http(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, outputs: Path, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    volumes = Volumes(models=str(tmp_path / "models"), datasets=str(tmp_path), outputs=str(outputs))
    profile = {"catalogCacheSeconds": 0, "workflowCacheSeconds": 0, "workflowMaxBytes": MAX_BYTES}
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings={"comfyui-docker": profile})
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.test") as session:
        yield session


async def make_templates(kube: KubeClient, namespace: str, data: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "comfyui-docker-workflows"},
        "data": data,
    }
    await kube.request("POST", CONFIGMAPS.path(namespace), body=body)


def assert_error(response: httpx.Response, status: int, code: str) -> JsonObject:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["timestamp"].endswith("Z")
    assert isinstance(error["details"], dict)
    return dict(error)


async def test_built_in_templates_serve_when_the_configmap_is_absent(http: httpx.AsyncClient) -> None:
    listed = (await http.get("/api/workflows")).json()
    rows = {row["id"]: row for row in listed["workflows"]}
    assert listed["total"] == len(rows) and {"sd15_t2i_basic", "sdxl_t2i_basic"} <= set(rows)
    row = rows["sd15_t2i_basic"]
    # preset and category come from the built-in catalog, whose SD15_BASE lists the template
    assert (row["preset"], row["category"], row["source"]) == ("SD15_BASE", "Image Generation", "template")
    assert row["path"] == "workflows/templates/sd15_t2i_basic.json" and row["name"] and row["description"]
    for path in ("/api/workflows/sd15_t2i_basic", "/api/workflows/sd15_t2i_basic.json"):
        got = (await http.get(path)).json()
        assert got["id"] == "sd15_t2i_basic"
        classes = {node["class_type"] for node in got["workflow"].values()}
        expected = {"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode"}
        assert expected | {"SaveImage"} == classes
    assert_error(await http.get("/api/workflows/nope"), 404, "WORKFLOW_NOT_FOUND")


async def test_templates_from_the_configmap_and_saved_workflows_are_listed_and_read_back(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str, outputs: Path
) -> None:
    document = {"name": "Wan T2V", "category": "Video Generation", "preset": "VID", "workflow": GRAPH}
    await make_templates(
        kube,
        namespace,
        {
            "wan_t2v_basic.json": json.dumps(document),
            "bare.json": json.dumps(GRAPH),
            "broken.json": "{not json",
            "list.json": "[1, 2]",
            "no-suffix": json.dumps(GRAPH),
        },
    )
    save = {"name": "My Custom Workflow", "category": "Custom", "workflow": GRAPH}
    response = await http.post("/api/workflows", json=save)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": "my_custom_workflow",
        "status": "saved",
        "path": "workflows/user/my_custom_workflow.json",
    }
    on_disk = json.loads((outputs / "workflows/user/my_custom_workflow.json").read_text())
    assert on_disk["workflow"] == GRAPH and on_disk["name"] == "My Custom Workflow"

    listed = (await http.get("/api/workflows")).json()
    rows = {row["id"]: row for row in listed["workflows"]}
    # the ConfigMap replaces the built-in set; its bad keys are skipped
    assert set(rows) == {"wan_t2v_basic", "bare", "my_custom_workflow"} and listed["total"] == 3
    assert rows["wan_t2v_basic"] == {
        "id": "wan_t2v_basic",
        "name": "Wan T2V",
        "category": "Video Generation",
        "description": "",
        "preset": "VID",
        "path": "workflows/templates/wan_t2v_basic.json",
        "source": "template",
    }
    assert (rows["bare"]["name"], rows["bare"]["category"]) == ("bare", "Templates")
    assert rows["my_custom_workflow"]["source"] == "user"
    assert rows["my_custom_workflow"]["path"] == "workflows/user/my_custom_workflow.json"

    got = (await http.get("/api/workflows/my_custom_workflow")).json()
    assert (got["id"], got["workflow"], got["category"]) == ("my_custom_workflow", GRAPH, "Custom")
    assert (await http.get("/api/workflows/bare")).json()["workflow"] == GRAPH

    filtered = (await http.get("/api/workflows", params={"category": "Custom"})).json()
    assert [row["id"] for row in filtered["workflows"]] == ["my_custom_workflow"] and filtered["total"] == 1
    searched = (await http.get("/api/workflows", params={"search": "wan"})).json()
    assert [row["id"] for row in searched["workflows"]] == ["wan_t2v_basic"]
    paged = (await http.get("/api/workflows", params={"page": 2, "per_page": 2})).json()
    assert [row["id"] for row in paged["workflows"]] == [row["id"] for row in listed["workflows"]][2:]
    assert (paged["total"], paged["page"], paged["has_next"], paged["has_prev"]) == (3, 2, False, True)

    # saving the same name again replaces the workflow; a template's id is refused
    changed = {**GRAPH, "3": {"class_type": "SaveImage", "inputs": {}}}
    again = await http.post("/api/workflows", json={"name": "my custom workflow", "workflow": changed})
    assert again.json()["id"] == "my_custom_workflow"
    assert (await http.get("/api/workflows/my_custom_workflow")).json()["workflow"] == changed
    assert_error(
        await http.post("/api/workflows", json={"name": "Wan T2V Basic", "workflow": GRAPH}),
        409,
        "WORKFLOW_IS_TEMPLATE",
    )


async def test_traversal_is_refused(http: httpx.AsyncClient, outputs: Path, tmp_path: Path) -> None:
    for name in ("../escape", "a/b", "..", "x\\y", "ok\x00", ""):
        error = assert_error(
            await http.post("/api/workflows", json={"name": name, "workflow": GRAPH}), 400, "INVALID_REQUEST"
        )
        assert error["details"] == {"field": "name"}
    assert not (tmp_path / "escape.json").exists() and not (outputs / "workflows").exists()
    for path in ("/api/workflows/..secret", "/api/workflows/.hidden", "/api/workflows/a..b"):
        assert_error(await http.get(path), 400, "INVALID_REQUEST")
    encoded = await http.get("/api/workflows/..%2F..%2Fetc%2Fpasswd")
    assert encoded.status_code in (400, 404) and "error" in encoded.json()

    # a link out of the user folder is neither listed nor read, nor written through
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(GRAPH))
    folder = outputs / "workflows" / "user"
    folder.mkdir(parents=True)
    (folder / "leak.json").symlink_to(secret)
    assert "leak" not in {row["id"] for row in (await http.get("/api/workflows")).json()["workflows"]}
    assert_error(await http.get("/api/workflows/leak"), 404, "WORKFLOW_NOT_FOUND")
    assert_error(
        await http.post("/api/workflows", json={"name": "leak", "workflow": GRAPH}), 400, "INVALID_REQUEST"
    )
    assert json.loads(secret.read_text()) == GRAPH


async def test_bad_json_and_bad_graphs_are_refused(http: httpx.AsyncClient, outputs: Path) -> None:
    headers = {"content-type": "application/json"}
    assert_error(await http.post("/api/workflows", content=b"{oops", headers=headers), 400, "INVALID_REQUEST")
    assert_error(await http.post("/api/workflows", json=["x"]), 400, "INVALID_REQUEST")
    assert_error(await http.post("/api/workflows", json={"workflow": GRAPH}), 400, "INVALID_REQUEST")
    bad_graphs: list[Any] = [
        None,
        [1, 2],
        {},
        "{not json",
        "[1]",
        {"1": {"inputs": {}}},
        {"1": {"class_type": "KSampler", "inputs": []}},
    ]
    for graph in bad_graphs:
        response = await http.post("/api/workflows", json={"name": "bad", "workflow": graph})
        assert_error(response, 400, "INVALID_WORKFLOW")
    assert not (outputs / "workflows/user/bad.json").exists()

    # a graph sent as JSON text and ComfyUI's UI format are workflows too
    ok = await http.post("/api/workflows", json={"name": "as text", "workflow": json.dumps(GRAPH)})
    assert ok.status_code == 200 and (await http.get("/api/workflows/as_text")).json()["workflow"] == GRAPH
    ui = {"nodes": [{"id": 1, "type": "KSampler"}], "links": []}
    assert (await http.post("/api/workflows", json={"name": "ui", "workflow": ui})).status_code == 200

    big = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "x" * MAX_BYTES}}}
    error = assert_error(
        await http.post("/api/workflows", json={"name": "big", "workflow": big}), 413, "PAYLOAD_TOO_LARGE"
    )
    assert error["details"] == {"max_bytes": MAX_BYTES}

    # a file put there by hand that is not a workflow is not listed
    (outputs / "workflows/user/junk.json").write_text("[not a workflow")
    ids = {row["id"] for row in (await http.get("/api/workflows")).json()["workflows"]}
    assert {"as_text", "ui"} <= ids and "junk" not in ids and "big" not in ids
