"""ControlPilot CP-16 … CP-23: datasets and TagPilot on the datasets volume.

Not built yet: this router serves nothing so far.
"""

from __future__ import annotations

from fastapi import APIRouter

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict


class DatasetsSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.datasets``)."""


def create_router(ctx: GatewayContext, settings: DatasetsSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    return APIRouter()
