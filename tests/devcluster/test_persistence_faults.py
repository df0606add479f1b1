"""Restarts keep state; every fault-injection mode; the CLI's lifecycle (kubeconfig, SIGTERM)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client, config, watch

from kubepilot_devcluster.apiserver import persistence
from kubepilot_devcluster.apiserver.store import ObjectStore
from kubepilot_devcluster.testing import DevCluster, free_port, running_devcluster


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A devcluster of this module's own (API only), so restarts and faults disturb no other test."""
    with running_devcluster(tmp_path_factory.mktemp("private"), controllers=False) as cluster:
        yield cluster


@pytest.fixture
def core(private_cluster: DevCluster) -> Iterator[client.CoreV1Api]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(private_cluster.kubeconfig), client_configuration=configuration)
    configuration.retries = 0
    with client.ApiClient(configuration) as api:
        yield client.CoreV1Api(api)


@pytest.mark.parametrize("clean", [True, False], ids=["sigterm", "sigkill"])
def test_restart_keeps_objects_and_resource_versions_keep_growing(
    private_cluster: DevCluster, core: client.CoreV1Api, clean: bool
) -> None:
    name = f"keep-{'clean' if clean else 'killed'}"
    created = core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"k": "v"}})
    private_cluster.restart(clean=clean)
    kept = core.read_namespaced_config_map(name, "default")
    assert kept.data == {"k": "v"}
    assert kept.metadata.uid == created.metadata.uid
    assert kept.metadata.resource_version == created.metadata.resource_version
    after = core.create_namespaced_config_map("default", {"metadata": {"name": f"{name}-after"}})
    assert int(after.metadata.resource_version) > int(created.metadata.resource_version)


def test_restart_keeps_custom_resource_definitions_served(private_cluster: DevCluster) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.keep.kubepilot.io"},
        "spec": {
            "group": "keep.kubepilot.io",
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"n": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }
    assert (
        httpx.post(
            f"{private_cluster.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd
        ).status_code
        == 201
    )
    things = f"{private_cluster.url}/apis/keep.kubepilot.io/v1/namespaces/default/things"
    assert (
        httpx.post(
            things,
            json={
                "apiVersion": "keep.kubepilot.io/v1",
                "kind": "Thing",
                "metadata": {"name": "t"},
                "spec": {"n": 1},
            },
        ).status_code
        == 201
    )
    private_cluster.restart()
    assert httpx.get(f"{things}/t").json()["spec"] == {"n": 1}


def test_watch_after_restart_from_an_old_version_gets_410(
    private_cluster: DevCluster, core: client.CoreV1Api
) -> None:
    old = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "before"}}
    ).metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "before-2"}})
    private_cluster.restart()
    with pytest.raises(client.ApiException) as raised:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=1
        ):
            pass
    assert raised.value.status == 410


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("409", 409, "Conflict"),
        ("410", 410, "Expired"),
        ("429", 429, "TooManyRequests"),
        ("500", 500, "InternalError"),
    ],
)
def test_injected_errors_fail_the_next_matching_requests(
    private_cluster: DevCluster, mode: str, status: int, reason: str
) -> None:
    private_cluster.inject_fault(mode, count=2, verb="list", resource="configmaps")
    url = f"{private_cluster.url}/api/v1/namespaces/default/configmaps"
    assert httpx.get(f"{private_cluster.url}/api/v1/namespaces/default/secrets").status_code == 200
    for _ in range(2):
        failed = httpx.get(url)
        assert failed.status_code == status
        assert failed.json()["reason"] == reason
        if mode == "429":
            assert failed.headers["Retry-After"] == "1"
    assert httpx.get(url).status_code == 200


def test_injected_connection_reset_drops_the_connection(private_cluster: DevCluster) -> None:
    private_cluster.inject_fault("reset", verb="get", resource="configmaps")
    url = f"{private_cluster.url}/api/v1/namespaces/default/configmaps/anything"
    with pytest.raises(httpx.TransportError):
        httpx.get(url)
    assert httpx.get(url).status_code == 404


def test_python_client_retries_through_a_429(private_cluster: DevCluster) -> None:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(private_cluster.kubeconfig), client_configuration=configuration)
    private_cluster.inject_fault("429", verb="create", resource="configmaps")
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        with pytest.raises(client.ApiException) as raised:
            core.create_namespaced_config_map("default", {"metadata": {"name": "throttled"}})
        assert raised.value.status == 429
        assert core.create_namespaced_config_map("default", {"metadata": {"name": "throttled"}}).metadata.uid


def test_dropping_watches_ends_open_streams(private_cluster: DevCluster, core: client.CoreV1Api) -> None:
    ended = threading.Event()
    lines: list[str] = []

    def watch_forever() -> None:
        with httpx.stream(
            "GET",
            f"{private_cluster.url}/api/v1/namespaces/default/configmaps",
            params={"watch": "1"},
            timeout=30,
        ) as response:
            lines.extend(response.iter_lines())
        ended.set()

    thread = threading.Thread(target=watch_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    dropped = 0
    while time.monotonic() < deadline and not dropped:
        time.sleep(0.1)
        dropped = private_cluster.drop_watches()
    assert dropped == 1
    assert ended.wait(5)
    assert all(json.loads(line)["type"] == "ADDED" for line in lines if line)


def test_faults_can_be_listed_and_cleared(private_cluster: DevCluster) -> None:
    private_cluster.inject_fault("500", count=3, verb="delete")
    assert private_cluster.admin("GET", "faults")["faults"] == [
        {"mode": "500", "remaining": 3, "verb": "delete", "resource": ""}
    ]
    private_cluster.clear_faults()
    assert private_cluster.admin("GET", "faults")["faults"] == []
    bad = httpx.post(f"{private_cluster.url}/_devcluster/faults", json={"mode": "418"})
    assert bad.status_code == 400


def test_cli_writes_kubeconfig_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubepilot_devcluster",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            "--no-controllers",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "kubeconfig").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/version").json()["gitVersion"].startswith("v1.37")
        nodes = httpx.get(f"http://127.0.0.1:{port}/api/v1/nodes").json()["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["devcluster-node"]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "devcluster stopped" in output
    assert (tmp_path / "state.json").exists()


def test_cli_reports_a_busy_port_without_a_traceback(private_cluster: DevCluster, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubepilot_devcluster",
            "--port",
            str(private_cluster.port),
            "--data-dir",
            str(tmp_path),
            "--no-controllers",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot start the devcluster" in result.stderr
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_journal_is_compacted_into_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(persistence, "COMPACT_AFTER", 4)
    store = ObjectStore()
    saved = persistence.Persistence(tmp_path, store)
    saved.open()
    for index in range(10):
        meta = {
            "name": f"o{index}",
            "namespace": "default",
            "uid": str(index),
            "resourceVersion": str(store.next_resource_version()),
        }
        store.put(("", "configmaps"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}, "ADDED")
    journal_lines = (tmp_path / persistence.JOURNAL).read_text().splitlines()
    assert len(journal_lines) == 2
    reloaded = ObjectStore()
    persistence.Persistence(tmp_path, reloaded).open()
    assert [o["metadata"]["name"] for o in reloaded.list(("", "configmaps"))] == [f"o{i}" for i in range(10)]
    assert reloaded.resource_version == 10
    saved.close()


def test_kubepilot_console_script_dispatches_to_devcluster() -> None:
    script = Path(sys.executable).with_name("kubepilot")
    result = subprocess.run(
        [str(script), "devcluster", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "--data-dir" in result.stdout
    assert "--no-controllers" in result.stdout


def test_cli_refuses_a_corrupt_snapshot_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubepilot_devcluster",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
            "--no-controllers",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "cannot read the devcluster snapshot" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "state.json").read_text() == "{not json"


def test_the_node_name_lives_in_node_yaml_and_a_conflicting_flag_is_refused(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "kubepilot_devcluster", "--port", str(port), "--data-dir", str(tmp_path)]
    process = subprocess.Popen(
        [*command, "--node-name", "gpu-box", "--no-controllers"], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "kubeconfig").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        nodes = httpx.get(f"http://127.0.0.1:{port}/api/v1/nodes").json()["items"]
        assert [n["metadata"]["name"] for n in nodes] == ["gpu-box"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert "nodeName: gpu-box" in (tmp_path / "node.yaml").read_text()

    refused = subprocess.run(
        [*command, "--node-name", "other"], capture_output=True, text=True, timeout=30, check=False
    )
    assert refused.returncode == 2
    assert "--node-name 'other' differs from nodeName 'gpu-box'" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
