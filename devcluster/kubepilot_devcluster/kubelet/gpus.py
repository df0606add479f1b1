"""GPU assignment (the device plugin's job): each pod requesting ``nvidia.com/gpu`` gets its own devices.

The node offers indices ``0 .. capacity-1`` (node.yaml ``capacity: {nvidia.com/gpu: N}``). A container sees
its pod's devices through ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES``; a pod that requests no GPU
gets both set to the empty string, so it sees none, as on a real cluster. A container's own ``env`` wins.
"""

from __future__ import annotations

GPU_RESOURCE = "nvidia.com/gpu"


class GpuAllocator:
    """Tracks which device indices each pod (by uid) holds."""

    def __init__(self, count: int) -> None:
        self.count = max(count, 0)
        self._held: dict[str, list[int]] = {}

    def free(self) -> list[int]:
        taken = {index for indices in self._held.values() for index in indices}
        return [index for index in range(self.count) if index not in taken]

    def allocate(self, uid: str, wanted: int) -> list[int] | None:
        """Indices for the pod (the ones it already holds, if any); None when too few are free."""
        if uid in self._held:
            return self._held[uid]
        free = self.free()
        if wanted > len(free):
            return None
        self._held[uid] = free[:wanted]
        return self._held[uid]

    def release(self, uid: str) -> None:
        self._held.pop(uid, None)


def gpu_environment(indices: list[int]) -> dict[str, str]:
    """The variables that make CUDA and the NVIDIA runtime see exactly these devices."""
    visible = ",".join(str(i) for i in indices)
    return {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": visible}
