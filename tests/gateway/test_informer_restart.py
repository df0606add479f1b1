"""An API server restart under a running cache: it reconnects, re-synchronises and carries on."""

from __future__ import annotations

import asyncio
from typing import Any

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.kube import ClusterCache, resource_for
from tests.gateway.helpers import Recorder, eventually, model_pull, outside

MODELPULLS = resource_for("ModelPull")


async def test_informer_reconnects_and_resyncs_after_a_devcluster_restart(
    cache: ClusterCache, devcluster: DevCluster, kube_api: Any, namespace: str
) -> None:
    informer = cache.informer(MODELPULLS)
    api = outside(kube_api)
    for name in ("stays", "goes"):
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull(name))
    await eventually(lambda: informer.get("goes") is not None, what="the first objects")
    recorder = Recorder(cache.bus.subscribe(kinds=["ModelPull"]))
    errors_before = informer.stats.errors

    # Changes the informer cannot see (no await), then a restart it lives through: the server is
    # down for a while (connection refused, backoff) and comes back without its watch history.
    devcluster.drop_watches()
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", "goes")
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull("came"))
    await asyncio.to_thread(devcluster.restart)

    await eventually(
        lambda: recorder.seen("ADDED", "came") and recorder.seen("DELETED", "goes"), 15, "resync"
    )
    assert {o["metadata"]["name"] for o in informer.list()} == {"stays", "came"}

    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelpulls", model_pull("after"))
    await eventually(lambda: informer.get("after") is not None, 10, "a change after the restart")
    assert informer.stats.errors > errors_before  # it did see the server gone
    assert cache.synced and cache.staleness_seconds < 10
    await recorder.close()
