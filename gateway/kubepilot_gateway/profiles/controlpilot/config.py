"""The ControlPilot profile's own settings: ``profileSettings.controlpilot`` of the gateway settings.

One section per group of endpoints; each section's model lives beside its routes.
"""

from __future__ import annotations

from pydantic import Field

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.controlpilot.routes_comfy import ComfySettings
from kubepilot_gateway.profiles.controlpilot.routes_copilot import CopilotSettings
from kubepilot_gateway.profiles.controlpilot.routes_datasets import DatasetsSettings
from kubepilot_gateway.profiles.controlpilot.routes_models import ModelsSettings
from kubepilot_gateway.profiles.controlpilot.routes_system import SystemSettings
from kubepilot_gateway.profiles.controlpilot.routes_training import TrainingSettings
from kubepilot_gateway.profiles.controlpilot.ui import UiSettings
from kubepilot_gateway.settings import Strict

PROFILE_NAME = "controlpilot"


class ControlPilotSettings(Strict):
    """Everything the ControlPilot endpoints read besides the gateway-wide settings."""

    ui: UiSettings = Field(default_factory=UiSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    datasets: DatasetsSettings = Field(default_factory=DatasetsSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    comfy: ComfySettings = Field(default_factory=ComfySettings)
    copilot: CopilotSettings = Field(default_factory=CopilotSettings)
    system: SystemSettings = Field(default_factory=SystemSettings)


def controlpilot_settings(ctx: GatewayContext) -> ControlPilotSettings:
    """This profile's settings from ``ctx.settings.profileSettings`` (a bad value fails the app build)."""
    return ControlPilotSettings.model_validate(ctx.settings.profileSettings.get(PROFILE_NAME, {}))
