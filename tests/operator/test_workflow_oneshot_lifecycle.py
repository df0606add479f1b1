"""A ComfyUI workflow GenerationJob with no ComfyUI service: the operator runs it as a one-shot job of
our diffusers generator, which translates the graph node by node (issue 12 §3), or hands it to a
running generator service.

End to end through the devcluster, the real operator and the generator worker (run as a local
process); the tiny Stable Diffusion model stands for a checkpoint in ``checkpoints/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.operator.harness import Objects, OperatorProcess, Storage, condition, tiny_generator

pytestmark = pytest.mark.slow

CHECKPOINT = "tiny-sd"


def txt2img_graph(width: int, height: int, batch: int) -> dict[str, Any]:
    """The default ComfyUI txt2img workflow, as "Export (API)" writes it, on the tiny checkpoint."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": 2,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": batch},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "lighthouse", "images": ["8", 0]}},
    }


@pytest.fixture
def checkpoint(storage: Storage, tiny_sd: Path) -> str:
    """The tiny model under ``checkpoints/`` (a link inside the models volume), where graphs name it."""
    link = storage.models / "checkpoints" / CHECKPOINT
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(os.path.relpath(tiny_sd, link.parent))
    return CHECKPOINT


def test_a_workflow_runs_as_a_oneshot_generator_job_and_an_unsupported_one_fails(
    operator: OperatorProcess, objects: Objects, storage: Storage, checkpoint: str
) -> None:
    good = {"type": "workflow", "workflow": txt2img_graph(64, 48, 2)}
    unsupported = txt2img_graph(64, 64, 1)
    unsupported["10"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.pth"}}
    # Both at once: the good one runs as a one-shot pod, the other is refused without one.
    objects.create("generationjobs", "GenerationJob", "wf", good)
    objects.create("generationjobs", "GenerationJob", "wf-bad", {"type": "workflow", "workflow": unsupported})

    done = objects.wait_phase("generationjobs", "wf", "Completed", "Failed", timeout=120)
    assert done["phase"] == "Completed", done
    assert condition(done, "Succeeded")["status"] == "True"
    outputs = done["outputs"]
    assert [(o["width"], o["height"]) for o in outputs] == [(64, 48), (64, 48)]
    assert [Path(o["path"]).name for o in outputs] == ["lighthouse_00001_.png", "lighthouse_00002_.png"]
    for output in outputs:
        with Image.open(storage.outputs / output["path"]) as image:
            assert image.size == (64, 48)
    assert done["progress"]["percent"] == 100
    assert [job.metadata.name for job in objects.jobs() if job.metadata.name.startswith("wf-gen")], (
        "it ran as a one-shot generator Job"
    )
    assert not done.get("assignedService")

    failed = objects.wait_phase("generationjobs", "wf-bad", "Completed", "Failed", timeout=120)
    assert failed["phase"] == "Failed", failed
    assert failed["error"]["code"] == "INVALID_WORKFLOW"
    assert "ControlNetLoader" in failed["error"]["message"]
    assert not failed.get("outputs")
    # Refused by the operator before any pod: no Job was started for it.
    assert not [job.metadata.name for job in objects.jobs() if job.metadata.name.startswith("wf-bad")]
    assert condition(failed, "Failed")["reason"] == "GenerationFailed"


def test_a_workflow_goes_to_a_running_generator_service_when_there_is_one(
    operator: OperatorProcess, objects: Objects, storage: Storage, checkpoint: str
) -> None:
    tiny_generator(objects, "warm")
    objects.wait_phase("serviceinstances", "warm", "Running", timeout=90)
    objects.create(
        "generationjobs",
        "GenerationJob",
        "wf-warm",
        {"type": "workflow", "workflow": txt2img_graph(64, 64, 1)},
    )
    done = objects.wait_phase("generationjobs", "wf-warm", "Completed", "Failed", timeout=120)
    assert done["phase"] == "Completed", done
    assert done["assignedService"] == "warm" and condition(done, "Scheduled")["reason"] == "Dispatched"
    assert [Path(o["path"]).name for o in done["outputs"]] == ["lighthouse_00001_.png"]
    assert [job.metadata.name for job in objects.jobs()] == [], "no one-shot Job"
