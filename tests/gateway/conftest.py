"""Fixtures for the gateway tests: the devcluster with our CRDs, an API client, a started cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kubepilot_devcluster.testing import DevCluster, devcluster, kube_api, namespace
from kubepilot_gateway.bus import EventBus
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.settings import Kube, Watch
from tests.operator.harness import crds

__all__ = ["crds", "devcluster", "kube_api", "namespace"]

ROOT = Path(__file__).resolve().parents[2]

# Short backoff so recovery tests finish in well under a second per failure.
FAST_WATCH = Watch(
    backoffInitialSeconds=0.05, backoffMaxSeconds=0.5, idleTimeoutSeconds=30, timeoutSeconds=120
)


@pytest.fixture(autouse=True)
def no_leftover_faults(devcluster: DevCluster) -> Iterator[None]:
    """A fault a test injected but did not use must not fail the next test."""
    yield
    devcluster.clear_faults()


@pytest.fixture
async def kube(devcluster: DevCluster, crds: None) -> AsyncIterator[KubeClient]:
    """Our async client, configured from the devcluster's kubeconfig as a user's would be."""
    async with KubeClient.from_settings(
        Kube(mode="kubeconfig", kubeconfig=str(devcluster.kubeconfig))
    ) as api:
        yield api


@pytest.fixture
async def cache(kube: KubeClient, namespace: str) -> AsyncIterator[ClusterCache]:
    """Informers for every watched type in the test's namespace, synced."""
    async with ClusterCache(kube, namespace=namespace, settings=FAST_WATCH, bus=EventBus()) as started:
        await started.wait_synced()
        yield started


@pytest.fixture
def store(kube: KubeClient, cache: ClusterCache, namespace: str) -> CrStore:
    """The CR store writing into the test's namespace, with the cache as its read-your-writes observer."""
    return CrStore(kube, namespace=namespace, observer=cache, conflict_retries=3)
