"""ControlPilot CP-37 … CP-40: ComfyUI status, latest image, the HTTP proxy and the `/ws/comfy` bridge.

Not built yet: this router serves nothing so far.
"""

from __future__ import annotations

from fastapi import APIRouter

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict


class ComfySettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.comfy``)."""


def create_router(ctx: GatewayContext, settings: ComfySettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    return APIRouter()
