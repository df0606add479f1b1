"""ControlPilot's TrainPilot (CP-28 … CP-32) and diffusion-pipe (CP-33 … CP-36) APIs against the devcluster.

No operator runs here: these tests check what the requests create and patch and how a run's status
reads back. Where a test needs a status the operator would write (a phase), it writes it through
the status subresource itself. The volumes are this test's own folders.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_api.trainingrun import TrainerKind
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, PODS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import training as tr
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")
TP = "controlpilot-trainpilot-1"
DP = "controlpilot-dpipe-1"
"""The first run of each trainer (runs are numbered per trainer)."""
MODEL = "/workspace/models/sdxl/base.safetensors"


class Volumes3:
    def __init__(self, root: Path) -> None:
        self.models, self.datasets, self.outputs = root / "models", root / "datasets", root / "outputs"
        for folder in (self.models, self.datasets, self.outputs):
            folder.mkdir(parents=True)


@pytest.fixture
def vols(tmp_path: Path) -> Volumes3:
    volumes = Volumes3(tmp_path)
    (volumes.datasets / "1_cats").mkdir()
    (volumes.datasets / "1_cats" / "a.png").write_bytes(b"png")
    (volumes.models / "sdxl").mkdir()
    (volumes.models / "sdxl" / "base.safetensors").write_bytes(b"model")
    return volumes


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, vols: Volumes3
) -> GatewayContext:
    volumes = Volumes(models=str(vols.models), datasets=str(vols.datasets), outputs=str(vols.outputs))
    training = {"gpuCount": 0, "defaultTomlConfigMap": "trainpilot-default-toml"}
    settings = Settings(
        namespace=namespace, volumes=volumes, profileSettings={"controlpilot": {"training": training}}
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


def toml_file(vols: Volumes3, name: str, text: str) -> str:
    (vols.outputs / name).write_text(text)
    return f"/workspace/outputs/{name}"


async def set_phase(store: CrStore, name: str, phase: str, **status: Any) -> None:
    await store.patch_status(TR, name, {"phase": phase, **status})


def detail(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json().get("detail")


# -- CP-28 TrainPilot start ------------------------------------------------------------------------


async def test_start_creates_a_kohya_run_with_the_profile_and_the_tomls_base_model(
    http: httpx.AsyncClient, store: CrStore, vols: Volumes3
) -> None:
    text = (
        f'pretrained_model_name_or_path = "{MODEL}"\nvae = "/workspace/models/vae.pt"\nnoise_offset = 0.05\n'
    )
    path = toml_file(vols, "my.toml", text)
    response = await http.post(
        "/api/trainpilot/start",
        json={
            "dataset_name": "1_cats",
            "output_name": "cat_lora",
            "profile": "quick_test",
            "toml_path": path,
        },
    )
    assert response.status_code == 200, response.text
    run = await store.get(TR, TP)
    assert response.json() == {"status": "started", "pid": tr.run_pid(run)}
    spec = run["spec"]
    assert spec["trainer"] == "kohya"
    assert spec["baseModel"] == {"path": "sdxl/base.safetensors"}
    assert spec["dataset"]["path"] == "1_cats" and spec["output"] == {"name": "cat_lora"}
    assert spec["tool"]["profile"] == "quick_test"
    assert spec["tool"]["config"] == {"noise_offset": 0.05, "vae": f"{vols.models}/vae.pt"}
    assert "gpu" not in spec.get("resources", {})
    assert run["metadata"]["labels"][tr.LABEL_TRAINER] == "kohya"


async def test_start_defaults_profile_toml_and_output_name_and_finds_the_1_prefixed_dataset(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    response = await http.post("/api/trainpilot/start", json={"dataset_name": "cats"})
    assert response.status_code == 200, response.text
    spec = (await store.get(TR, TP))["spec"]
    assert spec["tool"]["profile"] == "regular"
    assert spec["dataset"]["path"] == "1_cats" and spec["output"]["name"] == "cats"
    default_model = tr.base_model_of(tr.parse_toml(tr.DEFAULT_TOML)).relative
    assert spec["baseModel"]["path"] == default_model


async def test_start_errors_are_controlpilots(http: httpx.AsyncClient, vols: Volumes3) -> None:
    start = "/api/trainpilot/start"
    assert detail(await http.post(start, json={})) == (400, "dataset_name is required")
    assert detail(await http.post(start, json={"dataset_name": "  "})) == (400, "dataset_name is required")
    assert detail(await http.post(start, json={"dataset_name": "1_cats", "profile": "fast"})) == (
        400,
        "Invalid profile",
    )
    missing = "/workspace/outputs/nope.toml"
    assert detail(await http.post(start, json={"dataset_name": "1_cats", "toml_path": missing})) == (
        400,
        f"TOML not found: {missing}",
    )
    bad = toml_file(vols, "bad.toml", "this is = = not toml")
    code, text = detail(await http.post(start, json={"dataset_name": "1_cats", "toml_path": bad}))
    assert code == 400 and text.startswith(f"Invalid TOML {bad}:")
    no_model = toml_file(vols, "nomodel.toml", "noise_offset = 0.1\n")
    code, text = detail(await http.post(start, json={"dataset_name": "1_cats", "toml_path": no_model}))
    assert code == 400 and "pretrained_model_name_or_path" in text
    assert detail(await http.post(start, json={"dataset_name": "dogs"})) == (400, "Dataset not found: dogs")
    code, text = detail(await http.post(start, json={"dataset_name": "1_cats", "output_name": "a/b"}))
    assert code == 400 and "output_name" in text
    assert (
        await http.post(start, content=b"not json", headers={"content-type": "application/json"})
    ).status_code == 422


@pytest.mark.parametrize(
    "toml_path",
    ["/etc/passwd", "/workspace/outputs/../../etc/passwd", "relative.toml", "/workspace/elsewhere/x.toml"],
)
async def test_a_toml_path_off_the_volumes_is_refused(http: httpx.AsyncClient, toml_path: str) -> None:
    response = await http.post(
        "/api/trainpilot/start", json={"dataset_name": "1_cats", "toml_path": toml_path}
    )
    code, text = detail(response)
    assert code == 400 and "/workspace/" in text and repr(toml_path) in text


async def test_a_symlink_out_of_a_volume_is_refused(
    http: httpx.AsyncClient, vols: Volumes3, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.toml"
    outside.write_text(f'pretrained_model_name_or_path = "{MODEL}"\n')
    (vols.outputs / "link.toml").symlink_to(outside)
    response = await http.post(
        "/api/trainpilot/start", json={"dataset_name": "1_cats", "toml_path": "/workspace/outputs/link.toml"}
    )
    assert detail(response) == (400, "Path escapes the outputs volume: /workspace/outputs/link.toml")


async def test_a_second_start_while_one_runs_is_refused(http: httpx.AsyncClient, store: CrStore) -> None:
    assert (await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})).status_code == 200
    await set_phase(store, TP, "Running", jobName="j")
    again = await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})
    assert detail(again) == (400, "TrainPilot already running")


async def test_concurrent_starts_create_exactly_one_run(http: httpx.AsyncClient, cache: ClusterCache) -> None:
    answers = await asyncio.gather(
        *(http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"}) for _ in range(6))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [400] * 5
    assert {a.json().get("detail") for a in answers if a.status_code == 400} == {"TrainPilot already running"}
    assert [r["metadata"]["name"] for r in cache.list(TR)] == [TP]


async def test_a_finished_run_does_not_block_and_concurrent_starts_still_make_one(
    http: httpx.AsyncClient, store: CrStore, cache: ClusterCache
) -> None:
    first = await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})
    await set_phase(store, TP, "Succeeded", jobName="j")
    answers = await asyncio.gather(
        *(http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"}) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400], [a.text for a in answers]
    new = await store.get(TR, "controlpilot-trainpilot-2")
    started = next(a for a in answers if a.status_code == 200)
    assert started.json()["pid"] == tr.run_pid(new) != first.json()["pid"]
    # The finished run is kept as history; the new one is the current run (stop acts on it).
    assert sorted(r["metadata"]["name"] for r in cache.list(TR)) == [TP, "controlpilot-trainpilot-2"]
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "stopped"}
    assert (await store.get(TR, "controlpilot-trainpilot-2"))["spec"]["stop"] is True


async def test_a_start_whose_cache_lags_skips_finished_runs_it_had_not_seen(
    http: httpx.AsyncClient, store: CrStore, ctx: GatewayContext
) -> None:
    """Runs another gateway replica made: created straight through the API, so this gateway's cache
    learns of them only from the watch; the start must not wait for that to be right."""
    body = tr.training_run(
        TP,
        TrainerKind.KOHYA,
        slot="controlpilot-trainpilot",
        base_model="m",
        dataset="1_cats",
        output="cats",
        tool={},
        gpu=None,
        env={},
        request="{}",
    )
    created = await ctx.client.request("POST", TR.path(ctx.store.namespace), body=body)
    await ctx.client.request(
        "PATCH",
        TR.path(ctx.store.namespace, TP, "status"),
        body={"status": {"phase": "Failed"}},
        content_type="application/merge-patch+json",
    )
    response = await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})
    assert response.status_code == 200, response.text
    assert (await store.get(TR, TP))["metadata"]["uid"] == created["metadata"]["uid"]  # untouched
    second = await store.get(TR, "controlpilot-trainpilot-2")
    assert response.json()["pid"] == tr.run_pid(second)


async def test_old_finished_runs_are_pruned(
    http: httpx.AsyncClient, store: CrStore, ctx: GatewayContext
) -> None:
    for index in range(1, 8):
        assert (await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})).status_code == 200
        await set_phase(store, f"controlpilot-trainpilot-{index}", "Succeeded", jobName="j")
    names = sorted(int(r["metadata"]["name"].rsplit("-", 1)[1]) for r in ctx.cache.list(TR))
    # keepFinishedRuns 5: run 7's start kept runs 2 … 6 (finished) beside itself; 7 ended afterwards.
    assert names == [2, 3, 4, 5, 6, 7]


async def test_a_run_stopped_before_it_started_does_not_block(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "stopped"}
    # No operator: the run never got a Job, so it cannot finish by itself.
    assert (await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})).status_code == 200
    assert (await store.get(TR, "controlpilot-trainpilot-2"))["spec"].get("stop") is not True


# -- CP-29 stop ------------------------------------------------------------------------------------


async def test_stop_sets_spec_stop_on_the_active_run_and_is_a_noop_otherwise(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "noop"}
    await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})
    await set_phase(store, TP, "Running", jobName="j")
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "stopped"}
    assert (await store.get(TR, TP))["spec"]["stop"] is True
    await set_phase(store, TP, "Stopped")
    assert (await http.post("/api/trainpilot/stop")).json() == {"status": "noop"}


# -- CP-30 model-check -----------------------------------------------------------------------------


async def test_model_check_reports_each_path_and_the_missing_ones(
    http: httpx.AsyncClient, vols: Volumes3
) -> None:
    path = toml_file(
        vols,
        "check.toml",
        f'pretrained_model_name_or_path = "{MODEL}"\nvae = "/workspace/models/vae/x.safetensors"\n',
    )
    answer = (await http.post("/api/trainpilot/model-check", json={"toml_path": path})).json()
    assert answer["toml_path"] == path
    checkpoint, vae = answer["items"]
    assert (checkpoint["kind"], checkpoint["exists"], checkpoint["is_local_path"]) == (
        "checkpoint",
        True,
        True,
    )
    assert (vae["kind"], vae["key"], vae["exists"]) == ("vae", "vae", False)
    assert answer["missing"] == [vae]


async def test_model_check_of_the_default_toml_and_its_errors(
    http: httpx.AsyncClient, vols: Volumes3
) -> None:
    answer = (await http.post("/api/trainpilot/model-check", json={})).json()
    assert answer["toml_path"] == tr.DEFAULT_TOML_PATH
    assert [i["key"] for i in answer["items"]] == ["pretrained_model_name_or_path"]
    assert answer["missing"] == answer["items"]  # the default base model is not on these volumes
    assert (await http.post("/api/trainpilot/model-check")).status_code == 200
    hub = toml_file(vols, "hub.toml", 'pretrained_model_name_or_path = "org/repo"\n')
    item = (await http.post("/api/trainpilot/model-check", json={"toml_path": hub})).json()["items"][0]
    assert (item["is_local_path"], item["exists"]) == (False, False)
    missing = "/workspace/outputs/none.toml"
    response = await http.post("/api/trainpilot/model-check", json={"toml_path": missing})
    assert detail(response) == (404, f"TOML not found: {missing}")
    bad = toml_file(vols, "bad.toml", "[[[")
    assert (await http.post("/api/trainpilot/model-check", json={"toml_path": bad})).status_code == 400
    assert (
        await http.post("/api/trainpilot/model-check", json={"toml_path": "/etc/passwd"})
    ).status_code == 400


# -- CP-31 logs ------------------------------------------------------------------------------------


async def test_logs_show_train_log_and_running_from_the_phase(
    http: httpx.AsyncClient, store: CrStore, vols: Volumes3
) -> None:
    assert (await http.get("/api/trainpilot/logs")).json() == {"lines": [], "running": False}
    await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats", "output_name": "cats"})
    logs = vols.outputs / "cats" / "_logs"
    logs.mkdir(parents=True)
    (logs / "train.log").write_text("".join(f"line {i}\n" for i in range(700)))
    answer = (await http.get("/api/trainpilot/logs")).json()
    assert answer["running"] is True
    assert len(answer["lines"]) == 500 and answer["lines"][-1] == "line 699"
    assert (await http.get("/api/trainpilot/logs", params={"limit": 3})).json()["lines"] == [
        "line 697",
        "line 698",
        "line 699",
    ]
    await set_phase(store, TP, "Failed")
    assert (await http.get("/api/trainpilot/logs")).json()["running"] is False
    assert (await http.get("/api/trainpilot/logs", params={"limit": "x"})).status_code == 422


# -- CP-32 toml ------------------------------------------------------------------------------------


async def test_the_default_toml_comes_from_the_configmap_else_built_in(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    assert (await http.get("/api/trainpilot/toml")).json() == {"content": tr.DEFAULT_TOML}
    custom = f'pretrained_model_name_or_path = "{MODEL}"\n'
    config_map = {"metadata": {"name": "trainpilot-default-toml"}, "data": {"newlora.toml": custom}}
    await store.create(CONFIGMAPS, config_map)
    assert (await http.get("/api/trainpilot/toml")).json() == {"content": custom}
    check = (await http.post("/api/trainpilot/model-check", json={})).json()
    assert check["items"][0]["exists"] is True  # the default TOML is the ConfigMap's
    await store.patch(CONFIGMAPS, "trainpilot-default-toml", {"data": {"newlora.toml": None}})
    response = await http.get("/api/trainpilot/toml")
    assert response.status_code == 404 and response.json()["detail"].startswith("TOML not found")


# -- CP-33 … CP-36 diffusion-pipe ------------------------------------------------------------------


def dpipe_body(**extra: Any) -> JsonObject:
    return {
        "dataset_path": "/workspace/datasets/1_cats",
        "config_dir": "/workspace/outputs/cats/configs",
        "output_dir": "/workspace/outputs/cats",
        "transformer_path": MODEL,
        "vae_path": "/workspace/models/vae",
        "llm_path": "/workspace/models/llm",
        "clip_path": "/workspace/models/clip",
        **extra,
    }


async def test_validate_reports_missing_model_paths(http: httpx.AsyncClient, vols: Volumes3) -> None:
    (vols.models / "vae").mkdir()
    body = {k: v for k, v in dpipe_body().items() if k.endswith("_path") and k != "dataset_path"}
    answer = (await http.post("/dpipe/train/validate", json=body)).json()
    assert answer == {
        "ok": False,
        "missing": [
            {"field": "llm_path", "path": "/workspace/models/llm"},
            {"field": "clip_path", "path": "/workspace/models/clip"},
        ],
    }
    (vols.models / "llm").mkdir()
    (vols.models / "clip").mkdir()
    assert (await http.post("/dpipe/train/validate", json=body)).json() == {"ok": True, "missing": []}
    off = {**body, "clip_path": "/opt/clip"}
    assert (await http.post("/dpipe/train/validate", json=off)).json()["missing"] == [
        {"field": "clip_path", "path": "/opt/clip"}
    ]
    escaping = {**body, "vae_path": "/workspace/models/../../etc"}
    assert (await http.post("/dpipe/train/validate", json=escaping)).status_code == 400
    assert (await http.post("/dpipe/train/validate", json={"vae_path": "x"})).status_code == 422


async def test_dpipe_start_creates_a_diffusion_pipe_run(
    http: httpx.AsyncClient, store: CrStore, vols: Volumes3
) -> None:
    response = await http.post(
        "/dpipe/train/start", json=dpipe_body(learning_rate=1e-4, epochs=3, resume_from_checkpoint=True)
    )
    assert response.status_code == 200, response.text
    run = await store.get(TR, DP)
    assert response.json() == {
        "status": "started",
        "pid": tr.run_pid(run),
        "config": "/workspace/outputs/cats/_config/training.toml",
    }
    spec = run["spec"]
    assert spec["trainer"] == "diffusion-pipe" and spec["resumeFrom"] == "cats/runs"
    assert (spec["baseModel"]["path"], spec["dataset"]["path"], spec["output"]["name"]) == (
        "sdxl/base.safetensors",
        "1_cats",
        "cats",
    )
    config = spec["tool"]["config"]
    assert config["optimizer"]["lr"] == 1e-4 and config["epochs"] == 3
    assert config["model"]["transformer_path"] == f"{vols.models}/sdxl/base.safetensors"
    assert spec["tool"]["datasetConfig"]["resolutions"] == [512]


async def test_dpipe_start_errors(http: httpx.AsyncClient, store: CrStore) -> None:
    start = "/dpipe/train/start"
    for field in (
        "dataset_path",
        "config_dir",
        "output_dir",
        "transformer_path",
        "vae_path",
        "llm_path",
        "clip_path",
    ):
        body = dpipe_body()
        del body[field]
        response = await http.post(start, json=body)
        assert response.status_code == 422 and field in response.text
    missing = dpipe_body(dataset_path="/workspace/datasets/none")
    assert detail(await http.post(start, json=missing)) == (400, "dataset_path does not exist")
    code, text = detail(await http.post(start, json=dpipe_body(frame_buckets="[1, 33")))
    assert code == 400 and text.startswith("Invalid JSON in resolutions/frame/ar buckets: ")
    code, text = detail(await http.post(start, json=dpipe_body(betas="[0.9]")))
    assert code == 400 and "betas" in text
    code, text = detail(await http.post(start, json=dpipe_body(output_dir="/workspace/outputs/a/b")))
    assert code == 400 and "output_dir" in text
    code, text = detail(await http.post(start, json=dpipe_body(dataset_path="/workspace/datasets/../models")))
    assert code == 400 and "'..'" in text
    code, text = detail(await http.post(start, json=dpipe_body(vae_path="/root/vae")))
    assert code == 400 and "/workspace/models" in text
    assert (await http.post(start, json=dpipe_body(epochs="many"))).status_code == 422

    assert (await http.post(start, json=dpipe_body())).status_code == 200
    await set_phase(store, DP, "Running", jobName="j")
    assert detail(await http.post(start, json=dpipe_body())) == (
        400,
        "A training process is already running.",
    )


async def test_concurrent_dpipe_starts_create_exactly_one_run(
    http: httpx.AsyncClient, cache: ClusterCache
) -> None:
    answers = await asyncio.gather(*(http.post("/dpipe/train/start", json=dpipe_body()) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400]
    assert [r["metadata"]["name"] for r in cache.list(TR)] == [DP]


async def test_dpipe_stop_by_pid_and_its_noop_answers(http: httpx.AsyncClient, store: CrStore) -> None:
    noop = (await http.post("/dpipe/train/stop")).json()
    assert noop["status"] == "noop" and noop["detail"]
    pid = (await http.post("/dpipe/train/start", json=dpipe_body())).json()["pid"]
    await set_phase(store, DP, "Running", jobName="j")
    other = (await http.post("/dpipe/train/stop", params={"pid": pid + 1})).json()
    assert other["status"] == "noop" and str(pid + 1) in other["detail"]
    assert (await store.get(TR, DP))["spec"].get("stop") is not True
    assert (await http.post("/dpipe/train/stop", params={"pid": pid})).json() == {
        "status": "stopped",
        "pid": pid,
    }
    assert (await store.get(TR, DP))["spec"]["stop"] is True
    await set_phase(store, DP, "Stopped")
    assert (await http.post("/dpipe/train/stop")).json() == {
        "status": "stopped",
        "detail": "Process already exited.",
    }


async def test_dpipe_logs_by_pid(http: httpx.AsyncClient, vols: Volumes3) -> None:
    assert (await http.get("/dpipe/train/logs")).json() == {"pid": None, "lines": []}
    pid = (await http.post("/dpipe/train/start", json=dpipe_body())).json()["pid"]
    (vols.outputs / "cats" / "_logs").mkdir(parents=True)
    (vols.outputs / "cats" / "_logs" / "train.log").write_text("steps: 1 loss: 0.1\nsteps: 2 loss: 0.09\n")
    assert (await http.get("/dpipe/train/logs")).json() == {
        "pid": pid,
        "lines": ["steps: 1 loss: 0.1", "steps: 2 loss: 0.09"],
    }
    assert (await http.get("/dpipe/train/logs", params={"pid": pid, "limit": 1})).json()["lines"] == [
        "steps: 2 loss: 0.09"
    ]
    assert (await http.get("/dpipe/train/logs", params={"pid": pid + 1})).json() == {
        "pid": pid + 1,
        "lines": [],
    }


async def test_a_failing_api_server_is_a_500_with_its_message(
    http: httpx.AsyncClient, devcluster: Any
) -> None:
    devcluster.inject_fault("500", count=5, verb="create", resource="trainingruns")
    response = await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats"})
    assert response.status_code == 500 and response.json()["detail"]


async def test_logs_put_the_runs_pod_log_before_its_train_log(
    http: httpx.AsyncClient, store: CrStore, cache: ClusterCache, vols: Volumes3
) -> None:
    """The pod is a real devcluster pod (a local process) carrying the labels the operator gives a
    trainer pod; no operator runs, so the test creates it itself."""
    await http.post("/api/trainpilot/start", json={"dataset_name": "1_cats", "output_name": "cats"})
    (vols.outputs / "cats" / "_logs").mkdir(parents=True)
    (vols.outputs / "cats" / "_logs" / "train.log").write_text("from train.log\n")
    labels = {"kubepilot.io/kind": "TrainingRun", "kubepilot.io/name": TP}
    pod = {
        "metadata": {"name": f"{TP}-train-abcde", "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "trainer",
                    "image": "kubepilot/trainer:test",
                    "command": [sys.executable, "-c", "print('from the pod', flush=True)"],
                }
            ],
        },
    }
    await store.create(PODS, pod)
    deadline = time.monotonic() + 30
    while True:
        lines = (await http.get("/api/trainpilot/logs")).json()["lines"]
        if lines == ["from the pod", "from train.log"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)  # the pod's process starts on its own; there is no event for its output
    assert lines == ["from the pod", "from train.log"]
    assert (await http.get("/api/trainpilot/logs", params={"limit": 1})).json()["lines"] == ["from train.log"]
