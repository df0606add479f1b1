"""The trainer process's own resource figures, sent with every progress report.

PyTorch's CUDA allocator figures can only be read inside the process that allocates (the node agent
sees a device's total use, not what the allocator holds or has reserved), and the process figures
are the trainer's, not the pod's: OneTrainer's UI shows both, and its profile reads them from these
metrics (names in ``kubepilot_api.workers.progress``). On a machine without CUDA the GPU figures
are simply absent.
"""

from __future__ import annotations

import os

import psutil
import torch

from kubepilot_api.workers.progress import GPU_MEMORY_METRICS, PROCESS_METRICS


class ResourceProbe:
    """Reads the figures; ``cpu_percent`` is over the time since the previous read."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first read only starts psutil's interval

    def metrics(self) -> dict[str, float]:
        process = self._process
        with process.oneshot():
            figures = {
                "pid": float(process.pid),
                "cpu_percent": process.cpu_percent(None),
                "memory_percent": process.memory_percent(),
                "memory_rss_bytes": float(process.memory_info().rss),
                "num_threads": float(process.num_threads()),
            }
        result = {f"process.{name}": figures[name] for name in PROCESS_METRICS}
        # Only where the trainer already uses CUDA: reading the allocator would otherwise create a
        # CUDA context (hundreds of MB) in a process that trains on the CPU.
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            for index in range(torch.cuda.device_count()):
                values = (
                    torch.cuda.memory_allocated(index),
                    torch.cuda.memory_reserved(index),
                    torch.cuda.get_device_properties(index).total_memory,
                )
                for name, value in zip(GPU_MEMORY_METRICS, values, strict=True):
                    result[f"gpu.{index}.{name}"] = float(value)
        return result
