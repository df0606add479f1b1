"""The running stack the end-to-end tests share: storage folders, a local Hub, the operator process,
a fresh namespace per test and a tiny Stable Diffusion model. Imported by the operator's and the
gateway's conftest, so both suites drive the same real operator.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster
from tests.operator.harness import Objects, OperatorProcess, Storage
from tests.workers.hubfake import HubFake

__all__ = ["hub", "objects", "operator", "storage", "tiny_sd"]


@pytest.fixture(scope="session")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    return Storage(tmp_path_factory.mktemp("volumes"))


@pytest.fixture(scope="session")
def hub() -> Iterator[HubFake]:
    """A local file server and Hub (real HTTP on 127.0.0.1) for ModelPulls."""
    with HubFake() as server:
        yield server


@pytest.fixture(scope="module")
def operator(
    devcluster: DevCluster,
    crds: None,
    storage: Storage,
    tmp_path_factory: pytest.TempPathFactory,
    hub: HubFake,
) -> Iterator[OperatorProcess]:
    """One operator process per test module, watching every namespace."""
    process = OperatorProcess(
        devcluster, storage, tmp_path_factory.mktemp("operator"), extra={"huggingFaceEndpoint": hub.base_url}
    ).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def objects(devcluster: DevCluster, crds: None, kube_api: Any) -> Iterator[Objects]:
    """A fresh namespace and the helpers to work in it."""
    core = client.CoreV1Api(kube_api)
    name = f"op-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield Objects(kube_api, name)
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


@pytest.fixture(scope="session")
def tiny_sd(storage: Storage) -> Path:
    """A tiny random Stable Diffusion folder in the models volume (``diffusers/tiny-sd``).

    Built in a child process: importing diffusers here would freeze huggingface_hub's settings in
    the test process before the downloader tests set theirs.
    """
    target = storage.models / "diffusers" / "tiny-sd"
    command = [sys.executable, "-m", "kubepilot_workers.tinymodels", "sd", str(target)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return target
