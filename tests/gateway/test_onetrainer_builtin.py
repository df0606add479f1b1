"""The OneTrainer profile's built-in-trainer backend: the translation of a OneTrainer config into a
``kubepilot-lora`` TrainingRun (pure: every mapped key, the warnings, the errors), the dataset
folder as the built-in trainer reads it, and the start / validate endpoints against the devcluster
(no operator: the tests check the run the start creates; the run itself is in
``test_onetrainer_e2e.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubepilot_api.trainingrun import TrainingRun
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.onetrainer import builtin, create_app, events, samples
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.profiles.onetrainer.routes_training import TrainingSettings
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")
MP = resource_for("ModelPull")

FULL: JsonObject = {
    "__version": 6,
    "workspace_dir": "/workspace/run",
    "cache_dir": "/workspace/cache",
    "model_type": "STABLE_DIFFUSION_15",
    "training_method": "LORA",
    "base_model_name": "sd15",
    "concepts": [{"name": "cats", "path": "/d/cats", "enabled": True}],
    "output_model_destination": "models/cats.safetensors",
    "output_model_format": "SAFETENSORS",
    "learning_rate": 0.0005,
    "learning_rate_scheduler": "COSINE",
    "learning_rate_warmup_steps": 10.0,
    "epochs": 4,
    "batch_size": 2,
    "gradient_accumulation_steps": 2,
    "resolution": "768",
    "aspect_ratio_bucketing": False,
    "lora_rank": 8,
    "lora_alpha": 4.0,
    "train_dtype": "BFLOAT_16",
    "seed": 7,
    "gradient_checkpointing": "ON",
    "sample_after": 1,
    "sample_after_unit": "EPOCH",
    "samples": [{"enabled": True, "prompt": "a cat"}, {"enabled": False, "prompt": "not this"}],
    "save_every": 50,
    "save_every_unit": "STEP",
    "backup_after": 0,
    "backup_after_unit": "NEVER",
}
"""Every key the translation maps, with values the built-in trainer honours exactly."""


def test_every_mapped_key_becomes_its_hyperparameter_without_a_warning() -> None:
    # 10 images, batch 2, accumulation 2: ceil(ceil(10 / 2) / 2) = 3 steps per epoch.
    translation = builtin.translate(FULL, images=10, gpus=0)
    assert translation.errors == [] and translation.warnings == []
    assert translation.steps_per_epoch == 3
    assert translation.hyperparameters == {
        "resolution": 768,
        "bucketing": False,
        "batchSize": 2,
        "gradientAccumulationSteps": 2,
        "learningRate": 0.0005,
        "lrScheduler": "cosine",
        "warmupSteps": 10,
        "maxSteps": 12,
        "rank": 8,
        "alpha": 4.0,
        "mixedPrecision": "bf16",
        "seed": 7,
        "saveEverySteps": 50,
        "sampleEverySteps": 3,
        "samplePrompts": ["a cat"],
        "gradientCheckpointing": True,
    }


def test_absent_keys_take_the_profiles_defaults_and_units_become_steps() -> None:
    minimal = {"base_model_name": "m", "training_method": "LORA", "concepts": [{"path": "/d"}]}
    hp = builtin.translate(minimal, images=3, gpus=0).hyperparameters
    # /api/config/defaults: 10 epochs, batch 1, lr 1e-4, rank 16, alpha 1, seed 42, "512".
    assert (hp["maxSteps"], hp["batchSize"], hp["learningRate"]) == (30, 1, 0.0001)
    assert (hp["rank"], hp["alpha"], hp["seed"], hp["resolution"]) == (16, 1.0, 42, 512)
    assert (hp["lrScheduler"], hp["mixedPrecision"], hp["bucketing"]) == ("constant", "no", True)
    assert (hp["sampleEverySteps"], hp["saveEverySteps"], hp["samplePrompts"]) == (0, 0, [])

    warm = builtin.translate(minimal | {"learning_rate_warmup_steps": 5}, images=3, gpus=0).hyperparameters
    assert warm["lrScheduler"] == "constant_with_warmup", "OneTrainer warms up a constant rate too"
    units = minimal | {"sample_after": 2, "sample_after_unit": "STEP", "save_every_unit": "ALWAYS"}
    units |= {"save_every": 1}
    hp = builtin.translate(units, images=3, gpus=0).hyperparameters
    assert (hp["sampleEverySteps"], hp["saveEverySteps"]) == (2, 1)
    garbled = builtin.translate(units | {"sample_after": "often"}, images=3, gpus=0)
    assert garbled.hyperparameters["sampleEverySteps"] == 0
    assert garbled.warnings == ["sample_after: not a number; not scheduled"]
    assert builtin.translate(minimal | {"resolution": "640x360"}, images=3, gpus=0).hyperparameters[
        "resolution"
    ] == round((640 * 360) ** 0.5)


def test_what_the_built_in_trainer_cannot_honour_is_a_warning_and_never_dropped() -> None:
    config = {
        "base_model_name": "m",
        "concepts": [{"path": "/d"}],
        "learning_rate_scheduler": "REX",
        "train_dtype": "FLOAT_16",
        "resolution": "512,768",
        "gradient_checkpointing": "CPU_OFFLOADED",
        "sample_after": 10,
        "sample_after_unit": "MINUTE",
        "samples": [{"prompt": "a cat", "seed": 3, "diffusion_steps": 30}],
        "save_every": 2,
        "save_every_unit": "HOUR",
        "backup_after": 30,
        "backup_after_unit": "MINUTE",
        "output_model_format": "CKPT",
        "optimizer": {"optimizer": "ADAFACTOR"},
        "ema": "GPU",
    }
    translation = builtin.translate(config, images=4, gpus=0)
    assert translation.errors == []
    assert translation.warnings == [
        "training_method not set: trained as LORA",
        "learning_rate_scheduler REX: not supported; a constant rate is used",
        "train_dtype FLOAT_16 needs a GPU; trained in float32 on the CPU",
        "gradient_checkpointing CPU_OFFLOADED: trained with plain gradient checkpointing",
        "samples[0]: only the prompt is used, not diffusion_steps, seed (the built-in trainer renders "
        "with the run's seed, 20 steps, CFG 7, at the training resolution)",
        "sample_after 10 MINUTE: the built-in trainer samples by steps only; not scheduled (request it "
        "with the API instead)",
        "save_every 2 HOUR: the built-in trainer saves by steps only; not scheduled (request it with the "
        "API instead)",
        "backup_after 30 MINUTE: the built-in trainer makes no scheduled backups "
        "(POST /api/training/backup makes one)",
        "output_model_format CKPT: the LoRA is saved as safetensors",
        "ema: not used by the built-in trainer",
        "optimizer: not used by the built-in trainer",
        "resolution 512,768: the built-in trainer trains at one resolution, 512",
    ]
    hp = translation.hyperparameters
    assert (hp["lrScheduler"], hp["mixedPrecision"], hp["resolution"]) == ("constant", "no", 512)
    assert (hp["sampleEverySteps"], hp["saveEverySteps"], hp["samplePrompts"]) == (0, 0, ["a cat"])
    assert builtin.translate(config, images=4, gpus=1).hyperparameters["mixedPrecision"] == "fp16"


def test_what_the_built_in_trainer_cannot_train_is_an_error() -> None:
    config = {
        "model_type": "FLUX_DEV_1",
        "training_method": "FINE_TUNE",
        "epochs": 2.5,
        "learning_rate": 3,
        "lora_rank": 0,
        "resolution": "big",
    }
    assert builtin.translate(config, images=None, gpus=0).errors == [
        "model_type FLUX_DEV_1: the built-in trainer trains Stable Diffusion 1.5 / 2.x only "
        "(STABLE_DIFFUSION_15, STABLE_DIFFUSION_20, STABLE_DIFFUSION_21)",
        "training_method FINE_TUNE: the built-in trainer trains LORA only",
        "epochs must be a whole number",
        "resolution big is not a number of pixels",
        "learning_rate: Input should be less than or equal to 1",
        "lora_rank: Input should be greater than or equal to 1",
    ]


def test_the_dataset_folder_is_counted_and_checked_as_the_built_in_trainer_reads_it(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for folder, count in {"2_cat": 2, "1_dog": 1, "extra": 1, "1_dog/deep": 1}.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (root / folder / f"{index}.png").write_bytes(b"png")
            (root / folder / f"{index}.txt").write_text("caption")
    (root / "loose.jpg").write_bytes(b"jpg")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.png").write_bytes(b"png")
    scan = builtin.scan_folder(root)
    assert scan == builtin.FolderScan(direct_images=1, subfolders={"1_dog": 1, "2_cat": 2, "extra": 1})
    assert builtin.images_per_epoch(scan) == 1 + 1 + 2 * 2 + 1, "N_ folders N times, others once"

    concepts = [
        builtin.Concept(
            0, {"path": "x", "balancing": 1.0, "text": {"prompt_source": "filename"}}, "set/2_cat"
        ),
        builtin.Concept(1, {"path": "x", "include_subdirectories": True, "image": {}}, "set/1_dog"),
        builtin.Concept(3, {"path": "x"}, "set/1_dog/deep"),
    ]
    errors, warnings = builtin.dataset_notes("set", concepts, scan)
    assert errors == [
        "concepts[3].path: the built-in trainer reads the dataset folder set and its direct sub-folders "
        "only, not set/1_dog/deep"
    ]
    assert warnings == [
        "concepts[0].balancing 1.0: the built-in trainer repeats a folder by its N_ prefix; set/2_cat is "
        "repeated 2 times",
        "concepts[0].text.prompt_source filename: captions come from the .txt file next to each image",
        "concepts[1].include_subdirectories: sub-folders of a concept folder are not read",
        "concepts[1].image: not used by the built-in trainer",
        "trained too (the built-in trainer reads the whole dataset folder set): extra",
        "images straight in the dataset folder set are trained too",
    ]
    one = builtin.scan_folder(root / "2_cat")
    assert builtin.images_per_epoch(one) == 2, "one concept: its folder is the dataset, read once"
    assert builtin.dataset_notes("set/2_cat", [builtin.Concept(0, {"path": "x"}, "set/2_cat")], one) == (
        [],
        [],
    )
    dog = builtin.scan_folder(root / "1_dog")
    assert builtin.dataset_notes("set/1_dog", [builtin.Concept(0, {"path": "x"}, "set/1_dog")], dog) == (
        [],
        ["sub-folders of the concept folder are trained too: deep"],
    )


def test_a_built_in_session_is_a_kubepilot_lora_run_annotated_with_its_backend_and_warnings() -> None:
    hp = builtin.translate(FULL, images=10, gpus=0).hyperparameters
    body = ot.training_run(
        "onetrainer-1",
        slot="onetrainer",
        config=FULL,
        base_model={"modelPullRef": {"name": "sd15"}},
        dataset="cats",
        output="cats",
        source="config_dict",
        gpu=None,
        env={"A": "1"},
        image="kubepilot/onetrainer:custom",
        hyperparameters=hp,
        warnings=["w1"],
    )
    TrainingRun.model_validate(body)  # a valid CR by the API's own model
    assert body["spec"]["trainer"] == "kubepilot-lora" and "image" not in body["spec"]
    assert body["spec"]["hyperparameters"] == hp and body["spec"]["tool"]["config"] == FULL
    assert body["metadata"]["labels"][ot.LABEL_TRAINER] == "kubepilot-lora"
    assert body["metadata"]["annotations"][ot.ANNOTATION_BACKEND] == "builtin"
    assert ot.backend_of(body) == "builtin" and ot.warnings_of(body) == ["w1"]
    many = ot.warnings_annotation(["x" * 1000] * 100)
    assert len(many) <= ot.MAX_WARNINGS_CHARS and json.loads(many)[-1].startswith("... and ")

    assert TrainingSettings().resolved_backend() == "builtin", "no OneTrainer image unless told"
    assert TrainingSettings(onetrainerImageAvailable=True).resolved_backend() == "onetrainer"
    assert TrainingSettings(backend="builtin", onetrainerImageAvailable=True).resolved_backend() == "builtin"


def test_built_in_samples_are_listed_and_pushed_with_their_kind(tmp_path: Path) -> None:
    run: JsonObject = {
        "metadata": {"name": "onetrainer-1"},
        "spec": {
            "trainer": "kubepilot-lora",
            "output": {"name": "r"},
            "hyperparameters": {"samplePrompts": ["a cat"]},
        },
    }
    folder = samples.samples_dir(str(tmp_path), run)
    assert folder == tmp_path / "r" / "samples"
    folder.mkdir(parents=True)
    (folder / "step00000004-00-a-cat.png").write_bytes(b"png")
    (folder / "step00000004-00-a-cat.json").write_text(json.dumps({"prompt": "a cat", "seed": 42}))
    (folder / "step00000006-00-a-red-car.png").write_bytes(b"png")
    (folder / "step00000006-00-a-red-car.json").write_text(
        json.dumps({"prompt": "a red car", "steps": 2, "cfgScale": 7.5, "jobId": "x"})
    )
    listed = {
        s["metadata"]["file"]: s["metadata"] for s in samples.scan(folder, samples.default_prompts(run))
    }
    assert listed == {
        "step00000004-00-a-cat.png": {
            "kind": "default",
            "file": "step00000004-00-a-cat.png",
            "global_step": 4,
            "prompt": "a cat",
            "seed": 42,
        },
        "step00000006-00-a-red-car.png": {
            "kind": "custom",
            "file": "step00000006-00-a-red-car.png",
            "global_step": 6,
            "prompt": "a red car",
            "steps": 2,
            "cfg_scale": 7.5,
        },
    }

    def reported(latest: str, count: int) -> JsonObject:
        return run | {"status": {"samples": {"dir": "r/samples", "latest": latest, "count": count}}}

    first = reported("r/samples/step00000004-00-a-cat.png", 1)
    assert events.sample_events(run, first) == [{"type": "sample_default", "data": {"sample_count": 1}}]
    custom = reported("r/samples/step00000006-00-a-red-car.png", 2)
    assert events.sample_events(first, custom) == [{"type": "sample_custom", "data": {"sample_count": 1}}]


# -- the endpoints, against the devcluster -----------------------------------------------------


@pytest.fixture
def vols(tmp_path: Path) -> dict[str, Path]:
    found = {name: tmp_path / name for name in ("models", "datasets", "outputs")}
    for folder in found.values():
        folder.mkdir()
    (found["models"] / "sd15").mkdir()
    for concept, count in {"2_cat": 2, "1_dog": 1}.items():
        (found["datasets"] / "pets" / concept).mkdir(parents=True)
        for index in range(count):
            (found["datasets"] / "pets" / concept / f"{index}.png").write_bytes(b"png")
    return found


@pytest.fixture
def ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, vols: dict[str, Path]
) -> GatewayContext:
    """Default settings but for the GPU count: ``backend`` auto without a OneTrainer image → builtin."""
    settings = Settings(
        namespace=namespace,
        volumes=Volumes(**{name: str(path) for name, path in vols.items()}),
        profileSettings={"onetrainer": {"training": {"gpuCount": 0}}},
    )
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://onetrainer.test") as session:
        yield session


def pets(vols: dict[str, Path], **extra: Any) -> JsonObject:
    return {
        "model_type": "STABLE_DIFFUSION_15",
        "training_method": "LORA",
        "base_model_name": str(vols["models"] / "sd15"),
        "concepts": [
            {"name": "cat", "path": str(vols["datasets"] / "pets" / "2_cat"), "balancing": 2},
            {"name": "dog", "path": str(vols["datasets"] / "pets" / "1_dog")},
        ],
        "epochs": 3,
        "batch_size": 1,
        "optimizer": {"optimizer": "ADAMW"},
        "output_model_destination": "pets.safetensors",
        **extra,
    }


async def test_start_on_the_built_in_trainer_creates_a_translated_run(
    http: httpx.AsyncClient, ctx: GatewayContext, vols: dict[str, Path]
) -> None:
    started = await http.post("/api/training/start", json={"config_dict": pets(vols)})
    assert (started.status_code, started.json()) == (200, {"success": True, "message": "Training started"})
    run = ctx.cache.get(TR, "onetrainer-1", ctx.store.namespace)
    assert run is not None
    spec = run["spec"]
    assert spec["trainer"] == "kubepilot-lora"
    assert spec["baseModel"] == {"path": "sd15"} and spec["dataset"]["path"] == "pets"
    assert spec["output"] == {"name": "pets"} and spec["tool"]["config"] == pets(vols)
    # 2 cats twice and 1 dog once per epoch, batch 1: 5 steps an epoch, 3 epochs.
    assert spec["hyperparameters"]["maxSteps"] == 15
    assert run["metadata"]["annotations"][ot.ANNOTATION_BACKEND] == "builtin"
    assert ot.warnings_of(run) == ["optimizer: not used by the built-in trainer"]
    state = (await http.get("/api/training/status")).json()
    assert state == {**ot.IDLE, "is_training": True, "status": "running", "max_epoch": 3}
    assert (await http.get("/api/config/current")).json() == {"config": pets(vols)}


async def test_the_built_in_backend_refuses_what_it_cannot_train_and_validate_says_why(
    http: httpx.AsyncClient, ctx: GatewayContext, store: CrStore, vols: dict[str, Path]
) -> None:
    flux = await http.post("/api/training/start", json={"config_dict": pets(vols, model_type="FLUX_DEV_1")})
    assert flux.status_code == 400
    assert flux.json()["detail"].startswith("Not trainable on the built-in trainer: model_type FLUX_DEV_1")
    deep = pets(vols)
    pets_folder = vols["datasets"] / "pets"
    deep["concepts"] = [{"path": str(pets_folder / "2_cat")}, {"path": str(pets_folder / "1_dog" / "deep")}]
    refused = await http.post("/api/training/start", json={"config_dict": deep})
    assert refused.status_code == 400 and "not pets/1_dog/deep" in refused.json()["detail"]
    assert ctx.cache.list(TR, ctx.store.namespace) == [], "nothing refused was created"

    valid = (await http.post("/api/config/validate", json=pets(vols))).json()
    assert valid == {"valid": True, "errors": [], "warnings": ["optimizer: not used by the built-in trainer"]}
    invalid = (await http.post("/api/config/validate", json=pets(vols, training_method="EMBEDDING"))).json()
    assert invalid["valid"] is False
    assert invalid["errors"] == ["training_method EMBEDDING: the built-in trainer trains LORA only"]

    # A base model that is no file on the models volume but a ModelPull of that name: its ref.
    pull = {
        "source": {"type": "URL", "urls": [{"url": "http://127.0.0.1:9/unet.bin", "path": "unet.bin"}]},
        "destination": {"modelType": "diffusers", "subdir": "pulled"},
    }
    await store.create(
        MP,
        {"apiVersion": MP.api_version, "kind": "ModelPull", "metadata": {"name": "sd15-pull"}, "spec": pull},
    )
    started = await http.post(
        "/api/training/start", json={"config_dict": pets(vols, base_model_name="sd15-pull")}
    )
    assert started.status_code == 200, started.text
    run = await store.get(TR, "onetrainer-1")
    assert run["spec"]["baseModel"] == {"modelPullRef": {"name": "sd15-pull"}}
