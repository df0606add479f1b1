"""ControlPilot CP-08 … CP-15: the model manifest (a catalog ConfigMap), pulls as ModelPulls, and the
Hugging Face token as a Secret.

Not built yet: this router serves nothing so far.
"""

from __future__ import annotations

from fastapi import APIRouter

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict


class ModelsSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.models``)."""


def create_router(ctx: GatewayContext, settings: ModelsSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    return APIRouter()
