"""Settings of the OneTrainer profile's system endpoints (``profileSettings.onetrainer.system``).

``OneTrainerSettings`` (the package ``__init__``) holds this section as its ``system`` field;
``system_settings`` and ``run_prefix`` read their sections on their own for callers that have only
the context.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles.onetrainer.routes_training import TrainingSettings
from kubepilot_gateway.settings import Strict

PROFILE_KEY = "onetrainer"
DEFAULT_NODE_AGENT_URL = "http://127.0.0.1:9400"
"""The node agent's default port (``NodeAgentConfig.port``) on this host, as ControlPilot's."""


class SystemSettings(Strict):
    """Where the node agents answer (``profileSettings.onetrainer.system``)."""

    nodeAgentUrls: list[str] = Field(
        default_factory=lambda: [DEFAULT_NODE_AGENT_URL],
        description="Node agents to read (`/v1/snapshot`). The one whose hostname is the trainer pod's "
        "node gives the figures, else the first that answers; none answering: the gateway's own.",
    )
    nodeAgentTimeoutSeconds: float = Field(default=2.0, gt=0, description="Wait for one agent's snapshot.")


def _section(ctx: GatewayContext, key: str) -> dict[str, Any]:
    profile = ctx.settings.profileSettings.get(PROFILE_KEY) or {}
    section = profile.get(key) if isinstance(profile, dict) else None
    return section if isinstance(section, dict) else {}


def system_settings(ctx: GatewayContext) -> SystemSettings:
    """``profileSettings.onetrainer.system``, defaults where it is absent."""
    return SystemSettings.model_validate(_section(ctx, "system"))


def run_prefix(ctx: GatewayContext) -> str:
    """The sessions' run prefix (``profileSettings.onetrainer.training.runPrefix``)."""
    return TrainingSettings.model_validate(_section(ctx, "training")).runPrefix
