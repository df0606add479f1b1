"""The OneTrainer profile's config endpoints (OT-07 … OT-12), sample listing (OT-15 … OT-17), the
system endpoints as the profile app serves them and the path rules, against the devcluster (no
operator: a run's status is written through the status subresource where a test needs one; sample
files are written where the trainer writes them)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.onetrainer import configs, create_app, paths
from kubepilot_gateway.profiles.onetrainer.events import sample_events
from kubepilot_gateway.profiles.onetrainer.session import StartRefused
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")


@pytest.fixture
def vols(tmp_path: Path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("models", "datasets", "outputs")}
    for folder in folders.values():
        folder.mkdir()
    (folders["models"] / "sd15.safetensors").write_bytes(b"model")
    (folders["datasets"] / "cats").mkdir()
    (folders["datasets"] / "cats" / "a.png").write_bytes(b"png")
    return folders


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, vols: dict[str, Path]
) -> GatewayContext:
    volumes = Volumes(**{name: str(path) for name, path in vols.items()})
    settings = Settings(
        namespace=namespace,
        volumes=volumes,
        profileSettings={"onetrainer": {"training": {"backend": "onetrainer", "gpuCount": 0}}},
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://onetrainer.test") as session:
        yield session


def config(vols: dict[str, Path]) -> JsonObject:
    return {
        "model_type": "STABLE_DIFFUSION_15",
        "training_method": "LORA",
        "base_model_name": "sd15.safetensors",
        "concepts": [{"path": str(vols["datasets"] / "cats")}],
        "epochs": 2,
        "output_model_destination": "run7.safetensors",
    }


def test_validation_reports_errors_and_warnings_for_the_known_keys() -> None:
    assert configs.validate(configs.defaults() | {"base_model_name": "m", "concepts": [{"path": "/d"}]}) == {
        "valid": True,
        "errors": [],
        "warnings": [],
    }
    result = configs.validate(
        {"model_type": "SD_99", "epochs": 0, "learning_rate": "fast", "concepts": [{"enabled": "yes"}]}
    )
    assert result["valid"] is False
    assert set(result["errors"]) == {
        "model_type must be one of " + ", ".join(configs.MODEL_TYPES),
        "epochs must be at least 1",
        "learning_rate must be a number",
        "base_model_name is required",
        "concepts[0].enabled must be true or false",
        "concepts[0].path is required",
    }
    high = configs.validate({"base_model_name": "m", "concepts": [{"path": "/d"}], "learning_rate": 0.01})
    assert high == {"valid": True, "errors": [], "warnings": ["Learning rate is higher than recommended"]}


def test_paths_stay_inside_their_volume_even_through_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    assert paths.contained("a/b.json", {"outputs": str(root)}, "config_path") == ("outputs", "a/b.json")
    assert paths.contained(str(root / "c.json"), {"outputs": str(root)}, "config_path") == (
        "outputs",
        "c.json",
    )
    for bad in (str(root / "escape" / "passwd"), "/etc/passwd", "a/../../b", "", "x\x00y"):
        with pytest.raises(StartRefused):
            paths.contained(bad, {"outputs": str(root)}, "config_path")


async def test_schema_defaults_and_validate_endpoints(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/api/config/schema")).json()
    assert schema["type"] == "object" and schema["properties"]["learning_rate"]["type"] == "number"
    assert schema["properties"]["model_type"]["type"] == "string"
    defaults = (await http.get("/api/config/defaults")).json()
    assert defaults["model_type"] == "STABLE_DIFFUSION_15" and defaults["learning_rate"] == 0.0001
    invalid = await http.post("/api/config/validate", json={"learning_rate": -1})
    assert invalid.status_code == 200 and invalid.json()["valid"] is False, "an invalid config is a 200"
    not_object = await http.post("/api/config/validate", json=[1, 2])
    assert not_object.status_code == 400 and isinstance(not_object.json()["detail"], str)


async def test_named_configs_come_from_the_configmap_and_bad_names_are_refused(
    http: httpx.AsyncClient, ctx: GatewayContext, vols: dict[str, Path]
) -> None:
    assert (await http.get("/api/config/list")).json() == {"configs": []}, "no ConfigMap yet: none"
    body = {
        "metadata": {"name": "onetrainer-configs"},
        "data": {
            "sd_lora_config.json": json.dumps(config(vols)),
            "flux_full_finetune.json": json.dumps({"model_type": "FLUX_DEV_1"}),
            "broken.json": "{",
            "notes.txt": "not a config",
        },
    }
    await ctx.client.request("POST", CONFIGMAPS.path(ctx.store.namespace), body=body)
    listed = (await http.get("/api/config/list")).json()
    assert listed == {"configs": ["broken.json", "flux_full_finetune.json", "sd_lora_config.json"]}
    loaded = await http.get("/api/config/load/sd_lora_config")
    assert (loaded.status_code, loaded.json()) == (200, config(vols))
    assert (await http.get("/api/config/load/sd_lora_config.json")).json() == config(vols)
    missing = await http.get("/api/config/load/nope")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Config not found: nope"})
    for bad in ("%2E%2E", "a..b", "a%5Cb", "sp ace"):
        refused = await http.get(f"/api/config/load/{bad}")
        assert refused.status_code == 400 and refused.json()["detail"].startswith("Invalid config name"), bad
    assert (await http.get("/api/config/load/a%2Fb")).status_code in (400, 404), "never read as a path"
    broken = await http.get("/api/config/load/broken")
    assert broken.status_code == 500 and broken.json() == {"detail": "Config broken is not valid JSON"}


async def test_current_config_and_samples_are_the_current_sessions(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore, vols: dict[str, Path]
) -> None:
    assert (await http.get("/api/config/current")).json() == {"config": None}
    assert (await http.get("/api/samples/list")).json() == {"samples": []}
    assert (await http.post("/api/training/start", json={"config_dict": config(vols)})).status_code == 200
    assert (await http.get("/api/config/current")).json() == {"config": config(vols)}

    await store.patch_status(TR, "onetrainer-1", {"phase": "Running", "outputDir": "run7"})
    folder = vols["outputs"] / "run7" / "workspace" / "samples"
    (folder / "0 - a photo of a cat").mkdir(parents=True)
    (folder / "custom").mkdir()
    older = folder / "0 - a photo of a cat" / "2026-01-01_10-00-00-training-sample-4-0-4.png"
    newer = folder / "custom" / "2026-01-01_10-05-00-42-training-sample-5-1-1.png"
    for file in (older, newer):
        file.write_bytes(b"png")
    (folder / "custom" / "notes.txt").write_text("not an image")
    os.utime(older, (time.time() - 60, time.time() - 60))

    listed = (await http.get("/api/samples/list")).json()["samples"]
    assert [s["path"] for s in listed] == [str(newer), str(older)], "newest first"
    first, second = listed
    assert first["metadata"] == {
        "kind": "custom",
        "file": newer.name,
        "global_step": 5,
        "epoch": 1,
        "epoch_step": 1,
    }
    assert second["metadata"]["prompt"] == "a photo of a cat" and second["metadata"]["kind"] == "default"
    assert first["id"].startswith("sample_") and "T" in first["timestamp"] and "Z" not in first["timestamp"]
    assert (await http.get("/api/samples/latest", params={"count": 1})).json() == {"samples": [first]}
    assert len((await http.get("/api/samples/latest")).json()["samples"]) == 2, "count defaults to 10"
    assert (await http.get(f"/api/samples/{second['id']}")).json() == second
    missing = await http.get("/api/samples/sample_000000000000")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Sample not found: sample_000000000000"})
    assert (await http.get("/api/samples/latest", params={"count": -1})).status_code == 400


async def test_system_endpoints_answer_in_the_seeds_shapes(http: httpx.AsyncClient) -> None:
    """Served by the profile app itself (figures: tests/gateway/test_onetrainer_system.py)."""
    info = await http.get("/api/system/info")
    assert info.status_code == 200 and {"cpu", "memory", "os"} <= set(info.json())
    resources = await http.get("/api/system/resources")
    assert resources.status_code == 200 and "cpu_percent" in resources.json()
    processes = await http.get("/api/system/processes")
    assert processes.status_code == 200


def test_sample_events_come_from_the_sampling_pass_or_from_a_new_latest_sample() -> None:
    def run(**status: Any) -> JsonObject:
        return {"metadata": {"name": "onetrainer-1"}, "status": status}

    started = {"kind": "custom", "current": 0, "total": 1, "startedAt": "t1"}
    assert sample_events(run(), run(sampling=started)) == [
        {"type": "sample_custom_progress", "data": {"current": 0, "total": 1}}
    ]
    done = started | {"current": 1}
    assert sample_events(run(sampling=done), run()) == [
        {"type": "sample_custom", "data": {"sample_count": 1}}
    ]
    assert sample_events(run(sampling=done), run(sampling=done)) == [], "no change, no message"
    # A trainer that reports files only (the OneTrainer adapter): one message per new newest file.
    custom = {"samples": {"latest": "r/workspace/samples/custom/a.png", "count": 1}}
    default = {"samples": {"latest": "r/workspace/samples/0 - a cat/b.png", "count": 1}}
    assert sample_events(run(), run(**custom)) == [{"type": "sample_custom", "data": {"sample_count": 1}}]
    assert sample_events(run(**custom), run(**default)) == [
        {"type": "sample_default", "data": {"sample_count": 1}}
    ]
    assert sample_events(run(**default), run(**default)) == []


def test_sample_progress_comes_from_the_sample_action_when_no_pass_is_reported() -> None:
    """No trainer fills ``status.sampling`` yet: the request (Pending) and, on the built-in trainer,
    its acknowledgement (written after the images) give the ``sample_*_progress`` messages."""
    params = {"kubepilot.io/action-sample-params": json.dumps({"prompt": "a red car"})}

    def run(trainer: str, action: JsonObject | None, annotations: JsonObject | None = None) -> JsonObject:
        spec: JsonObject = {"trainer": trainer, "hyperparameters": {"samplePrompts": ["a cat", "a dog"]}}
        spec["tool"] = {"config": {"samples": [{"prompt": "x"}, {"prompt": "y", "enabled": False}]}}
        status: JsonObject = {"actions": {"sample": action} if action else {}}
        return {
            "metadata": {"name": "onetrainer-1", "annotations": annotations or {}},
            "spec": spec,
            "status": status,
        }

    pending = {"requestedNonce": "n1", "state": "Pending"}
    done = pending | {"state": "Done", "observedNonce": "n1", "message": "2 sample(s) at step 7: r/s.png"}
    builtin, onetrainer = "kubepilot-lora", "onetrainer"
    assert sample_events(run(builtin, None), run(builtin, pending)) == [
        {"type": "sample_default_progress", "data": {"current": 0, "total": 2}}
    ]
    assert sample_events(run(builtin, pending), run(builtin, done)) == [
        {"type": "sample_default_progress", "data": {"current": 2, "total": 2}}
    ]
    assert sample_events(run(builtin, done), run(builtin, done)) == [], "no change, no message"
    custom_pending = run(builtin, pending | {"requestedNonce": "n2"}, params)
    assert sample_events(run(builtin, done), custom_pending) == [
        {"type": "sample_custom_progress", "data": {"current": 0, "total": 1}}
    ]
    failed = run(builtin, pending | {"requestedNonce": "n2", "state": "Failed"}, params)
    assert sample_events(custom_pending, failed) == [], "a refused sample made nothing"
    # OneTrainer's acknowledgement means it took the command: only the request's progress; its
    # enabled inline samples are the total.
    assert sample_events(run(onetrainer, None), run(onetrainer, pending)) == [
        {"type": "sample_default_progress", "data": {"current": 0, "total": 1}}
    ]
    assert sample_events(run(onetrainer, pending), run(onetrainer, done)) == []
