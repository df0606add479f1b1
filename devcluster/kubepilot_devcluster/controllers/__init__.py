"""The devcluster's control plane outside the API server: workload controllers, services and the kubelet.

Everything here talks to the API server only through its REST API (see :mod:`.client`), as the real
kube-controller-manager, kube-proxy and kubelet do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib

log = logging.getLogger(__name__)

__all__ = ["run_control_plane"]


async def run_control_plane(api_url: str, data_dir: pathlib.Path, stop: asyncio.Event) -> None:
    """Run every controller and the node's kubelet against ``api_url`` until ``stop`` is set.

    On stop the pods of the node are stopped (SIGTERM, grace period capped at 10s, SIGKILL) before returning.
    """
    # Imported here so that ``kubelet`` modules may import ``controllers.client`` without an import cycle.
    from ..kubelet.config import NodeConfigError, load_node_config
    from ..kubelet.kubelet import Kubelet
    from ..kubelet.preparation import NodeContext
    from .base import ControlLoop
    from .client import KubeClient
    from .daemonset import DaemonSetController
    from .deployment import DeploymentController
    from .job import JobController
    from .replicaset import ReplicaSetController
    from .services import ServiceController

    try:
        config = load_node_config(data_dir)
    except (NodeConfigError, OSError) as err:
        log.error("control plane not started (no controllers, no kubelet): %s", err)
        return
    async with KubeClient(api_url) as client:
        loops: list[ControlLoop] = [
            Kubelet(NodeContext(client, config, data_dir, api_url)),
            JobController(client),
            ReplicaSetController(client),
            DeploymentController(client),
            DaemonSetController(client, config.node_name),
            ServiceController(client),
        ]
        tasks = [asyncio.create_task(loop.run(stop), name=loop.name) for loop in loops]
        try:
            await stop.wait()
        finally:
            # Each loop notices ``stop`` within a resync period and runs its own shutdown.
            done, pending = await asyncio.wait(tasks, timeout=30)
            for task in pending:
                task.cancel()
            for task in done | pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
