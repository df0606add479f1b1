"""Local stand-ins for ComfyUI and the sd.cpp server, speaking their documented protocols.

Real aiohttp servers on 127.0.0.1 (ComfyUI itself is an aiohttp app) run in a background
thread and produce small real PNGs with Pillow. They replace only the diffusion model: queues,
validation errors, WebSocket events, history, uploads, interrupts and cancellation behave as the
real servers' sources describe (ComfyUI ``server.py`` / ``execution.py``; sd.cpp
``examples/server/routes_sdcpp.cpp`` / ``async_jobs.cpp``).
"""

from tests.workers.fakebackends.comfyui import FakeComfyUI
from tests.workers.fakebackends.harness import LoopbackServer, RunInThread, job_context, png_bytes, wait_for
from tests.workers.fakebackends.sdcpp import FakeSdCpp

__all__ = [
    "FakeComfyUI",
    "FakeSdCpp",
    "LoopbackServer",
    "RunInThread",
    "job_context",
    "png_bytes",
    "wait_for",
]
