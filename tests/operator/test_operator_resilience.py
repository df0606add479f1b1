"""The operator under abuse: SIGKILLed mid-burst, API faults and restarts, two replicas at once.

Objects here start no pods (stopped services, paused pulls) so the tests measure the operator,
not the machine: children are created, statuses written, nothing duplicated, nothing lost.
"""

from __future__ import annotations

import concurrent.futures
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster
from tests.operator.harness import Objects, OperatorProcess, Storage
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow

NO_ELECTION = {"leaderElection": {"enabled": False}}


def paused_pull(hub: HubFake, name: str) -> dict[str, object]:
    data = bytes_of(name, 1000)
    url = hub.add_plain(name, FakeFile(data=data))
    return {
        "source": {"type": "URL", "urls": [{"url": url, "path": f"{name}.bin"}]},
        "destination": {"modelType": "other", "subdir": name},
        "paused": True,
    }


def create_burst(objects: Objects, hub: HubFake, count: int, prefix: str) -> list[tuple[str, str]]:
    """Half stopped services, half paused pulls, created from several threads at once."""
    made: list[tuple[str, str]] = []

    def create(index: int) -> tuple[str, str]:
        name = f"{prefix}{index:03d}"
        if index % 2:
            spec: dict[str, object] = {"serviceType": "jupyter", "running": False}
            plural, kind = "serviceinstances", "ServiceInstance"
        else:
            spec = paused_pull(hub, f"{objects.namespace}-{name}")
            plural, kind = "modelpulls", "ModelPull"
        # The injected faults hit this client too: retry as any client of a flaky API server would.
        for _ in range(50):
            try:
                objects.create(plural, kind, name, spec)
                break
            except client.ApiException as error:
                if error.status == 409:  # created by an earlier try whose answer was lost
                    break
                if error.status not in (0, 429, 500, 503):
                    raise
            except OSError:
                pass
            time.sleep(0.2)
        return (plural, name)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        made.extend(pool.map(create, range(count)))
    return made


def assert_converged(objects: Objects, made: list[tuple[str, str]], timeout: float = 90) -> None:
    expected = {"serviceinstances": "Stopped", "modelpulls": "Paused"}
    deadline = time.monotonic() + timeout
    for plural, name in made:
        objects.wait_phase(plural, name, expected[plural], timeout=max(1.0, deadline - time.monotonic()))
    jobs = Counter(job.metadata.owner_references[0].uid for job in objects.jobs())
    deployments = objects.apps.list_namespaced_deployment(objects.namespace).items
    services = objects.core.list_namespaced_service(objects.namespace).items
    secrets = objects.core.list_namespaced_secret(objects.namespace, label_selector="kubepilot.io/name").items
    pulls = sum(1 for plural, _ in made if plural == "modelpulls")
    assert len(jobs) == pulls and set(jobs.values()) == {1}, "one Job per ModelPull"
    assert all(job.spec.suspend for job in objects.jobs())
    assert len(deployments) == len(made) - pulls and len(services) == len(made) - pulls
    assert len(secrets) == len(made), "one Secret per workload"
    owners = Counter(item.metadata.owner_references[0].uid for item in [*deployments, *services, *secrets])
    assert max(owners.values()) <= 3


def test_an_operator_killed_ten_times_during_a_burst_duplicates_nothing_and_loses_nothing(
    devcluster: DevCluster, crds: None, storage: Storage, objects: Objects, hub: HubFake, tmp_path: Path
) -> None:
    rng = random.Random(8)
    operator = OperatorProcess(devcluster, storage, tmp_path, extra=NO_ELECTION).start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            burst = pool.submit(create_burst, objects, hub, 100, "b")
            for _ in range(10):
                time.sleep(rng.uniform(0.2, 1.2))
                operator.kill()
                operator.start(wait=False)
            made = burst.result(timeout=120)
        operator.wait_ready()
        assert_converged(objects, made)
    finally:
        operator.stop()


def test_api_faults_dropped_watches_and_an_api_server_restart_converge(
    devcluster: DevCluster, crds: None, storage: Storage, objects: Objects, hub: HubFake, tmp_path: Path
) -> None:
    operator = OperatorProcess(devcluster, storage, tmp_path, extra=NO_ELECTION).start()
    try:
        devcluster.inject_fault("409", count=15, verb="patch")
        devcluster.inject_fault("500", count=10, verb="create")
        made = create_burst(objects, hub, 20, "f")
        devcluster.inject_fault("429", count=5)
        devcluster.drop_watches()
        made += create_burst(objects, hub, 10, "g")
        devcluster.restart()
        made += create_burst(objects, hub, 10, "h")
        devcluster.drop_watches()
        assert_converged(objects, made, timeout=120)
    finally:
        devcluster.clear_faults()
        operator.stop()


def test_two_replicas_elect_one_leader_and_the_other_takes_over(
    devcluster: DevCluster, crds: None, storage: Storage, objects: Objects, tmp_path: Path
) -> None:
    election = {"leaderElection": {"leaseName": f"lease-{objects.namespace}"}}
    first = OperatorProcess(devcluster, storage, tmp_path / "a", extra=election).start()
    second = OperatorProcess(devcluster, storage, tmp_path / "b", extra=election).start(wait=False)
    try:
        time.sleep(3)
        leaders = [p for p in (first, second) if p.health()["leader"]]
        assert leaders == [first]
        objects.create(
            "serviceinstances", "ServiceInstance", "one", {"serviceType": "jupyter", "running": False}
        )
        objects.wait_phase("serviceinstances", "one", "Stopped", timeout=20)
        first.kill()
        second.wait_ready(timeout=20)
        assert second.health()["leader"]
        objects.create(
            "serviceinstances", "ServiceInstance", "two", {"serviceType": "jupyter", "running": False}
        )
        objects.wait_phase("serviceinstances", "two", "Stopped", timeout=20)
        holder = client.CoordinationV1Api(objects.api).read_namespaced_lease(
            f"lease-{objects.namespace}", "default"
        )
        assert holder.spec.holder_identity and holder.spec.lease_transitions >= 1
    finally:
        first.stop()
        second.stop()
