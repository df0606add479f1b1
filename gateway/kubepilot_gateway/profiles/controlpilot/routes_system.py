"""ControlPilot CP-41 … CP-50: telemetry, the shutdown schedule, docs and MediaPilot status.

Not built yet: this router serves nothing so far.
"""

from __future__ import annotations

from fastapi import APIRouter

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict


class SystemSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.system``)."""


def create_router(ctx: GatewayContext, settings: SystemSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    return APIRouter()
