"""The pure translation of ControlPilot's TrainPilot and diffusion-pipe requests (no server, no cluster)."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from kubepilot_api.trainingrun import TrainerKind, TrainingRun
from kubepilot_gateway import runslot
from kubepilot_gateway.profiles.controlpilot import dpipe
from kubepilot_gateway.profiles.controlpilot import models as mdl
from kubepilot_gateway.profiles.controlpilot import training as tr

JsonObject = dict[str, Any]
REQUIRED = {
    "dataset_path": "/workspace/datasets/1_cats",
    "config_dir": "/workspace/outputs/cfg",
    "output_dir": "/workspace/outputs/cats",
    "transformer_path": "/workspace/models/hunyuan/transformer.safetensors",
    "vae_path": "/workspace/models/hunyuan/vae",
    "llm_path": "/workspace/models/hunyuan/llm",
    "clip_path": "/workspace/models/hunyuan/clip",
}


# -- paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "volume", "relative"),
    [
        ("/workspace/datasets/1_cats", tr.Volume.DATASETS, "1_cats"),
        ("/workspace/models/sdxl//base.safetensors", tr.Volume.MODELS, "sdxl/base.safetensors"),
        ("/workspace/outputs/./run/", tr.Volume.OUTPUTS, "run"),
        ("/workspace/outputs", tr.Volume.OUTPUTS, ""),
    ],
)
def test_workspace_paths_map_onto_their_volume(raw: str, volume: tr.Volume, relative: str) -> None:
    mapped = tr.map_path(raw)
    assert (mapped.volume, mapped.relative) == (volume, relative)


@pytest.mark.parametrize(
    "raw",
    [
        "/workspace/datasets/../../etc/passwd",
        "/workspace/models/a/../../outputs/x",
        "/etc/passwd",
        "/workspace2/datasets/x",
        "/workspace/other/x",
        "datasets/x",
        "",
        "/workspace/models/a\x00b",
    ],
)
def test_paths_off_the_volumes_are_refused(raw: str) -> None:
    with pytest.raises(tr.PathRefused):
        tr.map_path(raw)


def test_a_path_may_be_limited_to_one_volume() -> None:
    with pytest.raises(tr.PathRefused, match="/workspace/models"):
        tr.map_path("/workspace/outputs/x.safetensors", allowed=(tr.Volume.MODELS,))


def test_the_output_name_falls_back_to_the_dataset_basename_and_must_be_one_folder() -> None:
    assert tr.output_name_for("", "1_cats") == "1_cats"
    assert tr.output_name_for("  ", "/workspace/datasets/1_dogs/") == "1_dogs"
    assert tr.output_name_for("mine", "1_cats") == "mine"
    for bad in ("../x", "a/b", "-x", "x" * 201):
        with pytest.raises(tr.PathRefused):
            tr.output_name_for(bad, "1_cats")


# -- TrainPilot -------------------------------------------------------------------------------------


def test_the_default_toml_parses_and_names_a_base_model_on_the_models_volume() -> None:
    document = tr.parse_toml(tr.DEFAULT_TOML)
    assert tr.base_model_of(document).volume is tr.Volume.MODELS


def test_the_base_toml_gives_only_its_own_settings_under_the_profile() -> None:
    document = tr.parse_toml(
        "\n".join(
            [
                'pretrained_model_name_or_path = "/workspace/models/sdxl.safetensors"',
                'vae = "/workspace/models/vae.safetensors"',
                'output_dir = "/workspace/outputs/x"',
                "network_dim = 8",
                "learning_rate = 1e-3",
                "noise_offset = 0.05",
                'optimizer_args = ["betas=(0.9,0.99)"]',
                'sample_sampler = "euler_a"',
                'some_path = "/opt/elsewhere"',
                "[extra]",
                "x = 1",
            ]
        )
    )
    assert tr.base_toml_settings(document) == {
        "noise_offset": 0.05,
        "optimizer_args": ["betas=(0.9,0.99)"],
        "sample_sampler": "euler_a",
    }
    assert tr.base_model_of(document).relative == "sdxl.safetensors"
    with pytest.raises(tr.PathRefused, match="sets no"):
        tr.base_model_of({})
    with pytest.raises(tr.PathRefused):
        tr.base_model_of({"pretrained_model_name_or_path": "/opt/model.safetensors"})


def test_a_trainpilot_request_becomes_a_valid_kohya_training_run() -> None:
    body = tr.training_run(
        "controlpilot-trainpilot-1",
        TrainerKind.KOHYA,
        slot="controlpilot-trainpilot",
        base_model="sdxl/base.safetensors",
        dataset="1_cats",
        output="cats",
        tool=tr.trainpilot_tool("quick_test", {"noise_offset": 0.05}),
        gpu={"profile": "default", "count": 1},
        env={"KOHYA_DIR": "/opt/sd-scripts"},
        request=json.dumps({"dataset_name": "cats"}),
    )
    run = TrainingRun.model_validate(body)
    assert run.spec.trainer is TrainerKind.KOHYA
    assert run.spec.tool is not None and run.spec.tool.profile is not None
    assert run.spec.tool.profile.value == "quick_test"
    assert run.spec.tool.config == {"noise_offset": 0.05}
    assert (run.spec.baseModel.path, run.spec.dataset.path, run.spec.output.name) == (
        "sdxl/base.safetensors",
        "1_cats",
        "cats",
    )
    assert run.spec.resources.gpu is not None and run.spec.resources.gpu.count == 1
    assert [(e.name, e.value) for e in run.spec.env] == [("KOHYA_DIR", "/opt/sd-scripts")]
    assert body["metadata"]["labels"][tr.LABEL_TRAINER] == "kohya"
    assert body["metadata"]["labels"][tr.LABEL_SLOT] == "controlpilot-trainpilot"


def test_the_vae_reaches_the_tool_config_as_the_pod_sees_it() -> None:
    assert tr.vae_of({}, "/models") is None
    assert tr.vae_of({"vae": "madebyollin/sdxl-vae-fp16-fix"}, "/models") == "madebyollin/sdxl-vae-fp16-fix"
    assert (
        tr.vae_of({"vae": "/workspace/models/vae/x.safetensors"}, "/models/") == "/models/vae/x.safetensors"
    )
    with pytest.raises(tr.PathRefused):
        tr.vae_of({"vae": "/opt/vae.safetensors"}, "/models")
    tool = tr.trainpilot_tool("regular", {"noise_offset": 0.1}, "/models/vae.safetensors")
    assert tool == {"profile": "regular", "config": {"noise_offset": 0.1, "vae": "/models/vae.safetensors"}}


def test_profiles_are_trainpilots_three() -> None:
    assert [p for p in ("quick_test", "regular", "high_quality", "fast", "") if tr.valid_profile(p)] == [
        "quick_test",
        "regular",
        "high_quality",
    ]


def test_model_check_lists_missing_local_paths_only() -> None:
    document = tr.parse_toml('pretrained_model_name_or_path = "org/repo"\nvae = "/workspace/models/v.pt"')
    assert tr.model_check_targets(document) == [
        ("checkpoint", "pretrained_model_name_or_path", "org/repo"),
        ("vae", "vae", "/workspace/models/v.pt"),
    ]
    assert not tr.is_local_path("org/repo") and tr.is_local_path("/workspace/models/v.pt")
    hub = tr.ModelCheckItem("checkpoint", "pretrained_model_name_or_path", "org/repo", False, False, None, "")
    vae = tr.ModelCheckItem("vae", "vae", "/workspace/models/v.pt", True, False, None, "missing")
    answer = tr.model_check_response("/t.toml", [hub, vae])
    assert answer["toml_path"] == "/t.toml"
    assert [i["key"] for i in answer["items"]] == ["pretrained_model_name_or_path", "vae"]
    assert answer["missing"] == [vae.to_dict()]
    assert set(vae.to_dict()) == {"kind", "key", "value", "is_local_path", "exists", "model_name", "reason"}


# -- run state ------------------------------------------------------------------------------------


def run_with(phase: str = "", *, stop: bool = False, job: str = "", deleting: bool = False) -> JsonObject:
    metadata: JsonObject = {"name": "r", "uid": "0a1b2c3d-0000-4000-8000-000000000000"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: JsonObject = {"phase": phase} if phase else {}
    if job:
        status["jobName"] = job
    return {"metadata": metadata, "spec": {"stop": stop}, "status": status}


@pytest.mark.parametrize(
    ("run", "active"),
    [
        (None, False),
        (run_with(), True),
        (run_with("Pending"), True),
        (run_with("Running", job="j"), True),
        (run_with("Stopping", stop=True, job="j"), True),
        (run_with("Suspended", job="j"), True),
        (run_with("Succeeded", job="j"), False),
        (run_with("Failed"), False),
        (run_with("Stopped", stop=True, job="j"), False),
        (run_with("Pending", stop=True), False),  # stopped while waiting for its dataset: never starts
        (run_with("Running", job="j", deleting=True), False),
    ],
)
def test_running_is_a_live_unfinished_run(run: JsonObject | None, active: bool) -> None:
    assert runslot.is_active(run) is active
    assert tr.trainpilot_logs([], run) == {"lines": [], "running": active}


def test_pid_is_the_reported_one_else_stable_from_the_uid() -> None:
    run = run_with("Running")
    assert tr.run_pid(run) == int("0a1b2c3", 16) == tr.run_pid(run_with("Failed"))
    other = {"metadata": {"uid": "ffffffff-0000-4000-8000-000000000000"}}
    assert tr.run_pid(other) != tr.run_pid(run)
    assert tr.run_pid({**run, "status": {"pid": 4242}}) == 4242
    assert tr.run_pid({"metadata": {}}) == 1


def named(name: str, phase: str = "") -> JsonObject:
    return {"metadata": {"name": name}, "spec": {}, "status": {"phase": phase} if phase else {}}


def test_a_slots_runs_are_numbered_and_the_newest_is_current() -> None:
    prefix = "cp-tp"
    runs = [named("cp-tp-10"), named("cp-tp-9"), named("cp-tp-x"), named("other-1"), named("cp-tp-01")]
    assert [i for i, _ in runslot.slot_runs(prefix, runs)] == [9, 10]
    current = runslot.current_run(prefix, runs)
    assert current is not None and current["metadata"]["name"] == "cp-tp-10"
    assert runslot.current_run(prefix, []) is None
    assert runslot.run_name(prefix, 11) == "cp-tp-11"


def test_only_finished_runs_beyond_the_newest_kept_are_pruned() -> None:
    runs = [named(f"p-{i}", "Succeeded") for i in range(1, 6)] + [named("p-6", "Running")]
    assert runslot.prunable("p", runs, 3) == ["p-1", "p-2"]
    assert runslot.prunable("p", runs, 0) == [f"p-{i}" for i in range(1, 6)]
    assert runslot.prunable("p", runs, 10) == []


def test_tail_keeps_the_last_lines() -> None:
    assert tr.tail(["a", "b", "c"], 2) == ["b", "c"]
    assert tr.tail(["a"], 0) == []


# -- diffusion-pipe --------------------------------------------------------------------------------


def test_every_required_dpipe_field_is_required() -> None:
    for field in REQUIRED:
        with pytest.raises(ValidationError):
            dpipe.DpipeStartRequest.model_validate({k: v for k, v in REQUIRED.items() if k != field})


def test_dpipe_defaults_are_controlpilots() -> None:
    request = dpipe.DpipeStartRequest.model_validate(REQUIRED)
    assert (request.epochs, request.batch_size, request.lr, request.save_every, request.rank) == (
        1000,
        1,
        2e-5,
        2,
        32,
    )
    assert (request.gradient_accumulation_steps, request.num_repeats, request.warmup_steps) == (4, 10, 100)
    assert (request.resolutions_input, request.frame_buckets, request.ar_buckets) == ("[512]", "[1, 33]", "")


def test_learning_rate_is_an_alias_of_lr_and_wins() -> None:
    assert dpipe.DpipeStartRequest.model_validate({**REQUIRED, "learning_rate": 1e-4}).lr == 1e-4
    assert dpipe.DpipeStartRequest.model_validate({**REQUIRED, "lr": 3e-4}).lr == 3e-4
    both = dpipe.DpipeStartRequest.model_validate({**REQUIRED, "lr": 3e-4, "learning_rate": 1e-4})
    assert both.lr == 1e-4


def test_a_dpipe_request_becomes_the_training_and_dataset_toml() -> None:
    request = dpipe.DpipeStartRequest.model_validate(
        {
            **REQUIRED,
            "learning_rate": 1e-4,
            "betas": [0.8, 0.9],
            "resolutions_input": "[256, 512]",
            "ar_buckets": "[0.5, 1.0]",
            "only_double_blocks": True,
            "enable_wandb": True,
            "wandb_run_name": "r1",
            "wandb_api_key": "secret",
        }
    )
    paths = {f: f"/models/{f}" for f in dpipe.MODEL_FIELDS}
    tool = dpipe.tool_settings(request, paths)
    config, dataset = tool["config"], tool["datasetConfig"]
    assert config["model"] == {"type": "hunyuan-video", **paths, "dtype": "bfloat16"}
    assert config["optimizer"] == {
        "type": "adamw_optimi",
        "lr": 1e-4,
        "betas": [0.8, 0.9],
        "weight_decay": 0.01,
        "eps": 1e-8,
    }
    assert config["adapter"] == {"type": "lora", "rank": 32, "dtype": "bfloat16", "only_double_blocks": True}
    assert (config["epochs"], config["micro_batch_size_per_gpu"], config["save_every_n_epochs"]) == (
        1000,
        1,
        2,
    )
    assert config["monitoring"] == {"enable_wandb": True, "wandb_run_name": "r1"}
    assert dataset == {
        "resolutions": [256, 512],
        "enable_ar_bucket": True,
        "min_ar": 0.5,
        "max_ar": 2.0,
        "num_ar_buckets": 7,
        "frame_buckets": [1, 33],
        "ar_buckets": [0.5, 1.0],
    }
    assert "secret" not in dpipe.request_summary(request)
    assert "secret" not in json.dumps(tool)


@pytest.mark.parametrize(
    ("field", "value"),
    [("resolutions_input", "[512"), ("frame_buckets", '{"a": 1}'), ("ar_buckets", "[1, nope]")],
)
def test_bad_bucket_json_is_controlpilots_400_text(field: str, value: str) -> None:
    request = dpipe.DpipeStartRequest.model_validate({**REQUIRED, field: value})
    with pytest.raises(dpipe.RequestError, match=r"^Invalid JSON in resolutions/frame/ar buckets: "):
        dpipe.tool_settings(request, {})


@pytest.mark.parametrize("value", ["[0.9]", "nope", '["a", "b"]'])
def test_bad_betas_are_refused(value: str) -> None:
    request = dpipe.DpipeStartRequest.model_validate({**REQUIRED, "betas": value})
    with pytest.raises(dpipe.RequestError, match="Invalid betas"):
        dpipe.betas(request)


def test_the_dpipe_run_validates_and_its_toml_writes() -> None:
    request = dpipe.DpipeStartRequest.model_validate(REQUIRED)
    body = tr.training_run(
        "controlpilot-dpipe-1",
        TrainerKind.DIFFUSION_PIPE,
        slot="controlpilot-dpipe",
        base_model="hunyuan/transformer.safetensors",
        dataset="1_cats",
        output="cats",
        tool=dpipe.tool_settings(request, {f: f"/m/{f}" for f in dpipe.MODEL_FIELDS}),
        gpu=None,
        env={},
        request=dpipe.request_summary(request),
        resume_from="cats/runs",
    )
    run = TrainingRun.model_validate(body)
    assert run.spec.trainer is TrainerKind.DIFFUSION_PIPE and run.spec.resumeFrom == "cats/runs"
    assert run.spec.resources.gpu is None
    assert dpipe.validate_response([("vae_path", "/x")]) == {
        "ok": False,
        "missing": [{"field": "vae_path", "path": "/x"}],
    }
    assert dpipe.validate_response([]) == {"ok": True, "missing": []}
    assert tomllib.loads(tr.DEFAULT_TOML)["network_module"] == "networks.lora"


def test_the_default_toml_trains_on_where_the_manifest_pulls_sdxl_base() -> None:
    """The walk-through: pull the manifest's sdxl-base-1.0, then start TrainPilot with its defaults."""
    entry = next(e for e in mdl.parse_manifest(mdl.DEFAULT_MANIFEST).entries if e.name == "sdxl-base-1.0")
    pulled = mdl.new_model_pull(entry)["spec"]
    base = tomllib.loads(tr.DEFAULT_TOML)["pretrained_model_name_or_path"]
    filename = entry.source.rpartition(":")[2]
    assert base == f"/workspace/models/{pulled['destination']['modelType']}/{filename}"
