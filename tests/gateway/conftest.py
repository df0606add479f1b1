"""Fixtures for the gateway tests: the devcluster with our CRDs, an API client, a started cache."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubepilot_devcluster.testing import DevCluster, devcluster, kube_api, namespace
from kubepilot_gateway.bus import EventBus
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.settings import Kube, Settings, Volumes, Watch
from tests.gateway.nodeagent_process import agent
from tests.operator.harness import Storage, crds
from tests.operator.stack_fixtures import hub, operator, storage, tiny_sd

__all__ = ["agent", "crds", "devcluster", "hub", "kube_api", "namespace", "operator", "storage", "tiny_sd"]

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


def stack_settings(namespace: str, storage: Storage, **extra: Any) -> Settings:
    """Gateway settings for ``namespace`` that see the volumes where the operator's workers write."""
    volumes = Volumes(
        models=str(storage.models), datasets=str(storage.datasets), outputs=str(storage.outputs)
    )
    return Settings(namespace=namespace, volumes=volumes, **extra)


@pytest.fixture
def stack_ctx(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, storage: Storage
) -> GatewayContext:
    """A gateway context on the test's namespace whose volumes are the operator's (start the
    ``operator`` fixture too for workloads to run)."""
    return GatewayContext(
        settings=stack_settings(namespace, storage), client=kube, cache=cache, store=store, bus=cache.bus
    )
