"""ControlPilot CP-28 … CP-36: TrainPilot and diffusion-pipe (`/dpipe`) as TrainingRuns.

Not built yet: this router serves nothing so far.
"""

from __future__ import annotations

from fastapi import APIRouter

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict


class TrainingSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.training``)."""


def create_router(ctx: GatewayContext, settings: TrainingSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    return APIRouter()
