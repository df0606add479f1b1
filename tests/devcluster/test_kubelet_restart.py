"""An unclean devcluster stop leaves pod processes behind; the restarted kubelet kills them, reruns pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _dc2_helpers import Clients, container_status, pod_body, python_container, wait_for_pod

from kubepilot_devcluster.testing import running_devcluster


def _running_pid(kube: Clients, namespace: str, name: str, not_pid: int = 0) -> int:
    def running_elsewhere(pod: dict[str, Any]) -> bool:
        status = container_status(pod)
        pid = str(status.get("containerID", "")).removeprefix("process://")
        return "running" in status.get("state", {}) and pid.isdigit() and int(pid) != not_pid

    pod = wait_for_pod(kube, namespace, name, running_elsewhere, timeout=30)
    return int(container_status(pod)["containerID"].removeprefix("process://"))


def test_unclean_restart_reaps_orphans_and_restarts_pods(tmp_path: Path) -> None:
    with running_devcluster(tmp_path / "cluster") as cluster:
        kube = Clients(cluster)
        kube.core.create_namespace({"metadata": {"name": "crash"}})
        kube.core.create_namespaced_pod(
            "crash", pod_body("survivor", [python_container("main", "import time; time.sleep(600)")])
        )
        first_pid = _running_pid(kube, "crash", "survivor")
        cluster.restart(clean=False)
        second_pid = _running_pid(Clients(cluster), "crash", "survivor", not_pid=first_pid)
        assert (
            not Path(f"/proc/{first_pid}").exists()
            or "zombie" in Path(f"/proc/{first_pid}/status").read_text().lower()
        )
        assert Path(f"/proc/{second_pid}").exists()
