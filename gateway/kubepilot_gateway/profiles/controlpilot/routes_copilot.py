"""ControlPilot CP-24 … CP-27: the copilot ServiceInstance's sidecar API and its token Secret.

Not built yet: this router serves nothing so far.
"""

from __future__ import annotations

from fastapi import APIRouter

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict


class CopilotSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.copilot``)."""


def create_router(ctx: GatewayContext, settings: CopilotSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    return APIRouter()
