"""The operator's upscaler setting and how a job's upscaler name reaches the generator; the inputs
folder every generator is told."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubepilot_operator.builders import generationjob as gen
from kubepilot_operator.builders import serviceinstance as svc
from kubepilot_operator.builders.upscalers import upscaler, upscalers
from kubepilot_operator.settings import Settings, Storage, Volume

SETTINGS = Settings(
    storage=Storage(models=Volume(mountPath="/models")),
    upscalers={"RealESRGAN 4x+": "upscale_models/RealESRGAN_x4plus.pth"},
)


def test_configured_upscalers_become_absolute_files() -> None:
    assert upscalers(SETTINGS) == {"RealESRGAN 4x+": "/models/upscale_models/RealESRGAN_x4plus.pth"}


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("RealESRGAN 4x+", "RealESRGAN 4x+"),  # configured: the generator's config has it
        ("x4.safetensors", "/models/upscale_models/x4.safetensors"),  # bare file: upscale_models/
        ("esrgan/x2.pth", "/models/esrgan/x2.pth"),  # a path inside the models volume
        ("Lanczos", "Lanczos"),  # no model ending: a name the generator will say it does not know
        ("../secrets/x.pth", "../secrets/x.pth"),  # escapes: passed on for the generator to refuse
        ("/etc/x.pth", "/etc/x.pth"),
        ("", ""),
    ],
)
def test_a_jobs_upscaler_resolves_to_a_name_or_a_models_file(name: str, given: str) -> None:
    assert upscaler(SETTINGS, name) == given


@pytest.mark.parametrize("file", ["/abs/x.pth", "../x.pth", "a/../../x.pth", ""])
def test_upscaler_files_must_stay_inside_the_models_volume(file: str) -> None:
    with pytest.raises(ValidationError, match="not a path inside the models volume"):
        Settings(upscalers={"bad": file})


def test_one_shot_and_service_generators_are_given_the_upscalers() -> None:
    job = {
        "apiVersion": "kubepilot.io/v1alpha1",
        "kind": "GenerationJob",
        "metadata": {"name": "up", "namespace": "ns", "uid": "u-1"},
        "spec": {"type": "upscale", "inputs": {"image": "in/a.png"}, "upscale": {"upscaler": "x.pth"}},
    }
    request = gen.request(SETTINGS, job, "", [])
    assert request.upscaler == "/models/upscale_models/x.pth"
    oneshot = gen.oneshot_config(SETTINGS, job, request)
    assert oneshot["upscalers"] == upscalers(SETTINGS) and oneshot["inputsDir"] == "/outputs/inputs"
    service = {
        "apiVersion": "kubepilot.io/v1alpha1",
        "kind": "ServiceInstance",
        "metadata": {"name": "gen", "namespace": "ns", "uid": "u-2"},
        "spec": {"serviceType": "kubepilot-generator"},
    }
    config = svc.worker_config(SETTINGS, service, "")
    assert config is not None and config["upscalers"] == upscalers(SETTINGS)
    assert config["inputsDir"] == "/outputs/inputs"
