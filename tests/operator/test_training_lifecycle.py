"""TrainingRun end to end: waits for its ModelPull, trains with the real built-in trainer as a pod,
acknowledges actions, publishes its LoRA, and a GenerationJob uses that LoRA (pull → train → generate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operator.harness import Objects, OperatorProcess, Storage, condition, tiny_lora_run
from tests.workers._trainer_tiny import make_dataset
from tests.workers.hubfake import FakeFile, HubFake

pytestmark = pytest.mark.slow


def pull_folder_spec(hub: HubFake, folder: Path, prefix: str) -> dict[str, object]:
    """A URL ModelPull of every file of a local folder (a diffusers model) into diffusers/<prefix>."""
    urls = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        file = FakeFile(data=path.read_bytes())
        urls.append(
            {"url": hub.add_plain(f"{prefix}/{relative}", file), "path": relative, "sha256": file.sha256}
        )
    return {
        "source": {"type": "URL", "urls": urls},
        "destination": {"modelType": "diffusers", "subdir": prefix},
    }


def reason(status: dict[str, object], type_: str) -> str:
    return str(condition(status, type_).get("reason", ""))


def step(status: dict[str, object]) -> int:
    progress = status.get("progress") or {}
    assert isinstance(progress, dict)
    return int(progress.get("step", 0))


def action_state(status: dict[str, object], name: str) -> str:
    actions = status.get("actions") or {}
    assert isinstance(actions, dict)
    return str((actions.get(name) or {}).get("state", ""))


def test_a_run_waits_for_its_model_trains_saves_on_request_and_its_lora_generates(
    operator: OperatorProcess, objects: Objects, hub: HubFake, storage: Storage, tiny_sd: Path
) -> None:
    prefix = f"base-{objects.namespace}"
    dataset = f"cats-{objects.namespace}"
    hub.throttle_bytes_per_second = 2_000_000  # the run must be seen waiting
    try:
        objects.create("modelpulls", "ModelPull", "base", pull_folder_spec(hub, tiny_sd, prefix))
        objects.create(
            "trainingruns",
            "TrainingRun",
            "lora",
            {
                "trainer": "kubepilot-lora",
                "baseModel": {"modelPullRef": {"name": "base"}},
                "dataset": {"path": dataset},
                "output": {"name": f"lora-{objects.namespace}"},
                "hyperparameters": {"resolution": 64, "maxSteps": 40, "rank": 4, "alpha": 4},
            },
        )
        waiting = objects.wait("trainingruns", "lora", lambda s: bool(reason(s, "DependenciesReady")), 30)
        assert reason(waiting, "DependenciesReady") == "WaitingForModel"
        assert waiting["phase"] == "Pending"
    finally:
        hub.throttle_bytes_per_second = 0
    objects.wait_phase("modelpulls", "base", "Completed", timeout=90)
    objects.wait("trainingruns", "lora", lambda s: reason(s, "DependenciesReady") == "WaitingForDataset", 30)
    make_dataset(storage.datasets / dataset, {"2_cat": [(64, 64), (64, 64)]})
    running = objects.wait("trainingruns", "lora", lambda s: step(s) >= 2, 90, "training steps")
    assert running["phase"] == "Running"
    assert running["progress"]["maxSteps"] == 40 and running["progress"]["lastUpdatedTime"]
    # The trainer reports its own process's figures (OneTrainer's system view reads them).
    assert running["metrics"]["process.memory_rss_bytes"] > 0 and running["metrics"]["process.pid"] > 0
    objects.patch("trainingruns", "lora", {"metadata": {"annotations": {"kubepilot.io/action-save": "n1"}}})
    saved = objects.wait(
        "trainingruns",
        "lora",
        lambda s: (s.get("actions") or {}).get("save", {}).get("state") == "Done",
        60,
        "save",
    )
    assert saved["actions"]["save"]["observedNonce"] == "n1"
    done = objects.wait_phase("trainingruns", "lora", "Succeeded", timeout=120)
    assert done["progress"]["step"] == 40
    assert done["publishedModel"] == f"loras/lora-{objects.namespace}.safetensors"
    published = storage.models / done["publishedModel"]
    assert published.is_file()
    final = [o for o in done["outputs"] if o["path"].endswith(".safetensors")][-1]
    assert published.read_bytes() == (storage.outputs / final["path"]).read_bytes()
    assert final["baseModel"] and final["dataset"]
    assert (
        f'kubepilot_training_step{{name="lora",namespace="{objects.namespace}"}} 40.0' in operator.metrics()
    )

    objects.create(
        "generationjobs",
        "GenerationJob",
        "uses-lora",
        {
            "type": "txt2img",
            "modelPullRef": {"name": "base"},
            "prompt": "a cat",
            "width": 64,
            "height": 64,
            "steps": 2,
            "seed": 7,
            "loras": [{"trainingRunRef": {"name": "lora"}, "weight": 0.8}],
        },
    )
    generated = objects.wait_phase("generationjobs", "uses-lora", "Completed", "Failed", timeout=120)
    assert generated["phase"] == "Completed", generated
    assert condition(generated, "Scheduled")["reason"] == "OneShotJob"
    image = storage.outputs / generated["outputs"][0]["path"]
    assert image.read_bytes().startswith(b"\x89PNG")


def test_a_run_past_its_deadline_fails_with_the_reason(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    make_dataset(storage.datasets / f"d-{objects.namespace}", {"1_x": [(64, 64)]})
    objects.create(
        "trainingruns",
        "TrainingRun",
        "late",
        tiny_lora_run(f"d-{objects.namespace}", f"late-{objects.namespace}", 100000, activeDeadlineSeconds=3),
    )
    status = objects.wait_phase("trainingruns", "late", "Failed", timeout=60)
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"


def test_a_suspended_run_waits_without_a_pod_resumes_and_stops_gracefully(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    make_dataset(storage.datasets / f"s-{objects.namespace}", {"1_x": [(64, 64)]})
    objects.create(
        "trainingruns",
        "TrainingRun",
        "held",
        tiny_lora_run(f"s-{objects.namespace}", f"held-{objects.namespace}", 100000, suspend=True),
        labels={"kueue.x-k8s.io/queue-name": "gpu-queue"},
    )
    suspended = objects.wait_phase("trainingruns", "held", "Suspended", timeout=30)
    assert condition(suspended, "Suspended")["status"] == "True"
    job = objects.batch.read_namespaced_job("held-train", objects.namespace)
    assert job.spec.suspend is True
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert objects.pods("kubepilot.io/name=held") == []
    objects.patch("trainingruns", "held", {"spec": {"suspend": False}})
    objects.wait("trainingruns", "held", lambda s: step(s) >= 1, 60, "training after resume")
    objects.patch("trainingruns", "held", {"spec": {"stop": True}})
    stopped = objects.wait_phase("trainingruns", "held", "Stopped", "Failed", timeout=60)
    assert stopped["phase"] == "Stopped", stopped
    assert stopped["actions"]["stop"]["state"] == "Done"
    assert stopped["publishedModel"] == f"loras/held-{objects.namespace}.safetensors"


def test_a_run_over_two_pods_trains_as_one_indexed_job(
    operator: OperatorProcess, objects: Objects, storage: Storage, tiny_sd: Path
) -> None:
    make_dataset(storage.datasets / f"m-{objects.namespace}", {"2_x": [(64, 64), (64, 64)]})
    objects.create(
        "trainingruns",
        "TrainingRun",
        "pair",
        tiny_lora_run(f"m-{objects.namespace}", f"pair-{objects.namespace}", 6, workers=2),
    )
    done = objects.wait_phase("trainingruns", "pair", "Succeeded", "Failed", timeout=120)
    assert done["phase"] == "Succeeded", done
    job = objects.batch.read_namespaced_job("pair-train", objects.namespace)
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == 2
    assert job.status.succeeded == 2
    service = objects.core.read_namespaced_service("pair-rdzv", objects.namespace)
    assert service.spec.selector["batch.kubernetes.io/job-completion-index"] == "0"
    assert (storage.models / done["publishedModel"]).is_file()
