"""OT-18 … OT-20 are not served yet: they answer the seed's own 501 "not implemented".

They need the node agent's telemetry for the node of the trainer pod, and PyTorch allocator
figures and process details that only an agent inside the trainer pod can report; a 501 says so
honestly instead of inventing numbers.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

NOT_YET = "Not implemented yet in kubepilot: {what} needs the node agent and the trainer pod's agent"


def create_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/system/info")
    async def system_info() -> None:
        raise HTTPException(status_code=501, detail=NOT_YET.format(what="system info"))

    @router.get("/api/system/resources")
    async def system_resources() -> None:
        raise HTTPException(status_code=501, detail=NOT_YET.format(what="resource usage"))

    @router.get("/api/system/processes")
    async def system_processes() -> None:
        raise HTTPException(status_code=501, detail=NOT_YET.format(what="process information"))

    return router
