"""Executor adapters: run GenerationJobs on ComfyUI or an sd.cpp server through their own APIs.

An adapter runs as a sidecar beside the backend in the same pod and serves the executor API
(``kubepilot_api.workers.executor``), so the operator dispatches to ComfyUI and sd.cpp exactly
as it does to our own generator server.
"""

from kubepilot_workers.adapters.comfyui import ComfyUIBackend
from kubepilot_workers.adapters.sdcpp import SdCppBackend

__all__ = ["ComfyUIBackend", "SdCppBackend"]
