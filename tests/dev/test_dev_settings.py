"""The settings ``kubepilot dev`` writes are accepted by every component and profile they name.

Each model is strict (an unknown key is an error), so a renamed field in a profile would otherwise
surface only as a stack that refuses to start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from kubepilot_dev.layout import Layout, Ports, gateway_settings, operator_settings
from kubepilot_gateway.app.settings import load_gateway_settings
from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
from kubepilot_gateway.profiles.controlpilot.config import ControlPilotSettings
from kubepilot_gateway.profiles.homepilot.config import HomePilotSettings
from kubepilot_gateway.profiles.onetrainer import OneTrainerSettings
from kubepilot_gateway.profiles.sdcpp_studio.config import SdcppSettings
from kubepilot_operator.settings import Settings as OperatorSettings

PROFILE_MODELS: dict[str, type[BaseModel]] = {
    "comfyui-docker": ComfyUiDockerSettings,
    "controlpilot": ControlPilotSettings,
    "onetrainer": OneTrainerSettings,
    "sdcpp-studio": SdcppSettings,
    "homepilot": HomePilotSettings,
}


@pytest.mark.parametrize("demo_models", [True, False])
def test_every_settings_document_validates(tmp_path: Path, demo_models: bool) -> None:
    layout = Layout(tmp_path)
    operator = OperatorSettings(
        **operator_settings(layout, Ports(), "127.0.0.1", "", demo_models=demo_models)
    )
    gateway: dict[str, Any] = gateway_settings(layout, Ports(), "127.0.0.1", demo_models=demo_models)
    settings_file = tmp_path / "gateway.yaml"
    settings_file.write_text(yaml.safe_dump(gateway))
    settings, listeners = load_gateway_settings(settings_file)
    assert listeners.combinedPort == Ports().gateway
    assert settings.volumes.models == str(layout.volume("models"))
    assert set(gateway["profileSettings"]) <= set(PROFILE_MODELS)
    for name, document in gateway["profileSettings"].items():
        PROFILE_MODELS[name].model_validate(document)
    if demo_models:
        assert operator.defaultGeneratorModel == "diffusers/tiny-sd"
        assert operator.upscalers == {"Tiny 4x": "upscale_models/tiny-x4.safetensors"}
        sdcpp = SdcppSettings.model_validate(gateway["profileSettings"]["sdcpp-studio"])
        assert sdcpp.model("tiny-sd") is not None and sdcpp.upscaler("") is not None
    else:
        assert operator.upscalers == {} and "sdcpp-studio" not in gateway["profileSettings"]


def test_the_dev_stack_trains_on_the_cpu_its_node_offers() -> None:
    gateway = gateway_settings(Layout(Path("/tmp/x")), Ports(), "127.0.0.1")
    controlpilot = ControlPilotSettings.model_validate(gateway["profileSettings"]["controlpilot"])
    onetrainer = OneTrainerSettings.model_validate(gateway["profileSettings"]["onetrainer"])
    assert controlpilot.training.gpuCount == 0 and onetrainer.training.gpuCount == 0


def test_every_profile_showing_node_figures_reads_the_stacks_node_agent() -> None:
    ports = Ports(node_agent=19400)
    profiles = gateway_settings(Layout(Path("/tmp/x")), ports, "127.0.0.2")["profileSettings"]
    agent = ["http://127.0.0.2:19400"]
    assert ControlPilotSettings.model_validate(profiles["controlpilot"]).system.nodeAgentUrls == agent
    assert OneTrainerSettings.model_validate(profiles["onetrainer"]).system.nodeAgentUrls == agent
    assert ComfyUiDockerSettings.model_validate(profiles["comfyui-docker"]).nodeAgentUrls == agent
