"""ModelPull end to end: the real operator, the real downloader as a pod, a local file server."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client

from tests.operator.harness import Objects, OperatorProcess, Storage, condition
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow


def url_spec(hub: HubFake, name: str, size: int, **extra: object) -> dict[str, object]:
    data = bytes_of(name, size)
    url = hub.add_plain(name, FakeFile(data=data))
    file = FakeFile(data=data)
    return {
        "source": {
            "type": "URL",
            "urls": [{"url": url, "path": f"{name}.safetensors", "sha256": file.sha256}],
        },
        "destination": {"modelType": "checkpoints", "subdir": name},
        **extra,
    }


def bytes_done(status: dict[str, object]) -> int:
    progress = status.get("progress") or {}
    assert isinstance(progress, dict)
    return int(progress.get("bytesDone", 0))


def reason(status: dict[str, object], type_: str) -> str:
    return str(condition(status, type_).get("reason", ""))


def test_a_pull_downloads_reports_progress_and_its_deletion_removes_the_files(
    operator: OperatorProcess, objects: Objects, hub: HubFake, storage: Storage
) -> None:
    name = f"m-{objects.namespace}"
    objects.create("modelpulls", "ModelPull", "weights", url_spec(hub, name, 3_000_000))
    status = objects.wait_phase("modelpulls", "weights", "Completed", timeout=60)
    target = storage.models / "checkpoints" / name / f"{name}.safetensors"
    assert target.read_bytes() == bytes_of(name, 3_000_000)
    assert status["progress"]["bytesDone"] == status["progress"]["bytesTotal"] == 3_000_000
    assert status["progress"]["percent"] == 100 and status["progress"]["lastUpdatedTime"]
    assert status["files"] == [
        {
            "path": f"checkpoints/{name}/{name}.safetensors",
            "sizeBytes": 3_000_000,
            "sha256": FakeFile(data=bytes_of(name, 3_000_000)).sha256,
            "state": "Verified",
        }
    ]
    assert condition(status, "Ready")["status"] == "True"
    assert status["jobName"] == "weights-download"
    pull = objects.get("modelpulls", "weights")
    assert "kubepilot.io/files" in pull["metadata"]["finalizers"]
    assert any(line.startswith("Completed") for line in objects.events("weights"))
    assert f'kubepilot_download_bytes_total{{namespace="{objects.namespace}"}}' in operator.metrics()

    objects.delete("modelpulls", "weights")
    objects.wait_gone("modelpulls", "weights")
    assert not target.exists()
    assert any(line.startswith("Removing") for line in objects.events("weights"))


def test_a_mixed_pull_puts_each_file_in_its_own_type_folder_and_removes_them_all(
    operator: OperatorProcess, objects: Objects, hub: HubFake, storage: Storage
) -> None:
    """One ModelPull for a preset whose files span type folders (destination ``mixed``)."""
    name = f"x-{objects.namespace}"
    paths = [f"checkpoints/{name}/model.safetensors", f"vae/{name}/ae.safetensors"]
    urls = [
        {"url": hub.add_plain(f"{name}-{i}", FakeFile(data=bytes_of(p, 50_000))), "path": p}
        for i, p in enumerate(paths)
    ]
    spec = {"source": {"type": "URL", "urls": urls}, "destination": {"modelType": "mixed"}}
    objects.create("modelpulls", "ModelPull", "preset", spec)
    status = objects.wait_phase("modelpulls", "preset", "Completed", timeout=60)
    assert sorted(f["path"] for f in status["files"]) == paths
    for path in paths:
        assert (storage.models / path).read_bytes() == bytes_of(path, 50_000)
    objects.delete("modelpulls", "preset")
    objects.wait_gone("modelpulls", "preset")
    assert not any((storage.models / path).exists() for path in paths)


def test_a_retained_pull_keeps_its_files_when_deleted(
    operator: OperatorProcess, objects: Objects, hub: HubFake, storage: Storage
) -> None:
    name = f"r-{objects.namespace}"
    objects.create("modelpulls", "ModelPull", "kept", url_spec(hub, name, 100_000, deletePolicy="Retain"))
    objects.wait_phase("modelpulls", "kept", "Completed")
    objects.delete("modelpulls", "kept")
    objects.wait_gone("modelpulls", "kept")
    assert (storage.models / "checkpoints" / name / f"{name}.safetensors").is_file()


def test_two_pulls_of_the_same_files_download_once_and_deleting_one_keeps_them(
    operator: OperatorProcess, objects: Objects, hub: HubFake, storage: Storage
) -> None:
    name = f"s-{objects.namespace}"
    spec = url_spec(hub, name, 1_000_000)
    objects.create("modelpulls", "ModelPull", "first", spec)
    objects.create("modelpulls", "ModelPull", "second", spec)
    objects.wait_phase("modelpulls", "first", "Completed")
    second = objects.wait_phase("modelpulls", "second", "Completed")
    assert condition(second, "Ready")["reason"] == "SharedFiles"
    assert [job.metadata.name for job in objects.jobs()] == ["first-download"]
    objects.delete("modelpulls", "first")
    objects.wait_gone("modelpulls", "first")
    assert (storage.models / "checkpoints" / name / f"{name}.safetensors").is_file()
    objects.delete("modelpulls", "second")
    objects.wait_gone("modelpulls", "second")
    assert not (storage.models / "checkpoints" / name / f"{name}.safetensors").exists()


def test_pausing_stops_the_pod_keeps_partial_files_and_resuming_completes(
    operator: OperatorProcess, objects: Objects, hub: HubFake, storage: Storage
) -> None:
    name = f"p-{objects.namespace}"
    hub.throttle_bytes_per_second = 1_000_000
    try:
        objects.create("modelpulls", "ModelPull", "slow", url_spec(hub, name, 6_000_000))
        objects.wait(
            "modelpulls",
            "slow",
            lambda s: (s.get("progress") or {}).get("bytesDone", 0) > 500_000,
            40,
            "bytes",
        )
        objects.patch("modelpulls", "slow", {"spec": {"paused": True}})
        paused = objects.wait_phase("modelpulls", "slow", "Paused")
        assert condition(paused, "Suspended")["status"] == "True"
        objects.wait("modelpulls", "slow", lambda s: not objects.pods("kubepilot.io/name=slow"), 30, "no pod")
        partial = list((storage.models / ".store" / "partial").glob("*.part"))
        assert partial and max(p.stat().st_size for p in partial) > 0
        hub.throttle_bytes_per_second = 0
        objects.patch("modelpulls", "slow", {"spec": {"paused": False}})
        done = objects.wait_phase("modelpulls", "slow", "Completed", timeout=60)
    finally:
        hub.throttle_bytes_per_second = 0
    assert done["progress"]["bytesDone"] == 6_000_000
    assert (storage.models / "checkpoints" / name / f"{name}.safetensors").read_bytes() == bytes_of(
        name, 6_000_000
    )


def test_a_missing_credentials_secret_is_a_condition_not_a_crashing_pod(
    operator: OperatorProcess, objects: Objects, hub: HubFake
) -> None:
    spec = url_spec(hub, f"c-{objects.namespace}", 1000, credentialsSecretRef={"name": "hf-token"})
    objects.create("modelpulls", "ModelPull", "gated", spec)
    status = objects.wait(
        "modelpulls",
        "gated",
        lambda s: condition(s, "Ready").get("reason") == "SecretNotFound",
        30,
        "SecretNotFound",
    )
    assert status["phase"] == "Pending"
    assert "hf-token" in condition(status, "Ready")["message"]
    assert objects.jobs() == []
    objects.core.create_namespaced_secret(
        objects.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="hf-token"), data={"token": base64.b64encode(b"t").decode()}
        ),
    )
    objects.wait_phase("modelpulls", "gated", "Completed", timeout=60)


def test_cancelling_a_pull_stops_it_for_good(
    operator: OperatorProcess, objects: Objects, hub: HubFake
) -> None:
    hub.throttle_bytes_per_second = 200_000
    try:
        objects.create(
            "modelpulls", "ModelPull", "doomed", url_spec(hub, f"x-{objects.namespace}", 5_000_000)
        )
        objects.wait_phase("modelpulls", "doomed", "Downloading")
        objects.patch("modelpulls", "doomed", {"spec": {"cancel": True}})
        status = objects.wait_phase("modelpulls", "doomed", "Cancelled")
    finally:
        hub.throttle_bytes_per_second = 0
    assert condition(status, "Cancelled")["reason"] == "UserCancelled"
    objects.wait("modelpulls", "doomed", lambda s: objects.jobs() == [], 30, "Job removed")
