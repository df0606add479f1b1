"""GPU assignment on a node configured with two GPUs: distinct devices per pod, none for CPU pods."""

from __future__ import annotations

from pathlib import Path

import yaml
from _dc2_helpers import (
    Clients,
    condition,
    container_status,
    phase,
    pod_body,
    python_container,
    wait_for_pod,
    wait_until,
)

from kubepilot_devcluster.kubelet.gpus import GpuAllocator, gpu_environment
from kubepilot_devcluster.testing import running_devcluster

REPORT = "import os; open('/dev/termination-log', 'w').write(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"
GPU_PODS = ("gpu-a", "gpu-b", "gpu-c")


def test_allocator_hands_out_distinct_indices_and_refuses_beyond_capacity() -> None:
    gpus = GpuAllocator(2)
    assert gpus.allocate("a", 1) == [0]
    assert gpus.allocate("a", 1) == [0]
    assert gpus.allocate("b", 2) is None
    assert gpus.allocate("b", 1) == [1]
    gpus.release("a")
    assert gpus.free() == [0]
    assert gpu_environment([]) == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": ""}
    assert gpu_environment([0, 1])["CUDA_VISIBLE_DEVICES"] == "0,1"


def _process_env(kube: Clients, name: str) -> dict[str, str]:
    pid = int(container_status(kube.pod("gpus", name))["containerID"].removeprefix("process://"))
    raw = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(item.split("=", 1) for item in raw if "=" in item)


def test_pods_get_their_own_gpus_and_cpu_pods_see_none(tmp_path: Path) -> None:
    data_dir = tmp_path / "cluster"
    data_dir.mkdir()
    (data_dir / "node.yaml").write_text(yaml.safe_dump({"capacity": {"nvidia.com/gpu": 2}}))
    with running_devcluster(data_dir) as cluster:
        kube = Clients(cluster)
        kube.core.create_namespace({"metadata": {"name": "gpus"}})
        for name in GPU_PODS:
            container = python_container(
                "main", "import time; time.sleep(600)", resources={"limits": {"nvidia.com/gpu": "1"}}
            )
            kube.core.create_namespaced_pod("gpus", pod_body(name, [container]))

        def placed() -> tuple[list[str], list[str]] | None:
            pods = {name: kube.pod("gpus", name) for name in GPU_PODS}
            running = [n for n, p in pods.items() if "running" in container_status(p).get("state", {})]
            waiting = [
                n for n, p in pods.items() if condition(p, "PodScheduled").get("reason") == "Unschedulable"
            ]
            return (running, waiting) if len(running) == 2 and len(waiting) == 1 else None

        running, (unschedulable,) = wait_until(placed, what="two pods running and one unschedulable")
        assert phase(kube.pod("gpus", unschedulable)) == "Pending"
        environments = [_process_env(kube, name) for name in running]
        assert {env["CUDA_VISIBLE_DEVICES"] for env in environments} == {"0", "1"}
        assert all(env["NVIDIA_VISIBLE_DEVICES"] == env["CUDA_VISIBLE_DEVICES"] for env in environments)

        cpu_pod = pod_body("cpu", [python_container("main", REPORT)], restartPolicy="Never")
        kube.core.create_namespaced_pod("gpus", cpu_pod)
        done = wait_for_pod(kube, "gpus", "cpu", lambda p: phase(p) == "Succeeded")
        assert container_status(done)["state"]["terminated"]["message"] == "''"

        kube.core.delete_namespaced_pod(running[0], "gpus", grace_period_seconds=1)
        wait_for_pod(
            kube,
            "gpus",
            unschedulable,
            lambda p: "running" in container_status(p).get("state", {}),
            timeout=30,
        )
