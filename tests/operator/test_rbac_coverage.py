"""The ClusterRole grants exactly what the operator uses: every API verb and resource the operator
called during a run through every kind's paths is covered by the rules table (and so by the
chart), and the table grants nothing the run did not use, except the documented implied rights."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster
from kubepilot_operator.rbac import RULES, covers
from tests.operator.harness import Objects, OperatorProcess, Storage, tiny_lora_run
from tests.workers.hubfake import FakeFile, HubFake, bytes_of

pytestmark = pytest.mark.slow

IMPLIED = {
    # An API server enforcing OwnerReferencesPermissionEnforcement checks that whoever sets
    # blockOwnerDeletion on a child may update the owner's finalizers; the operator never calls it.
    *(
        ("kubepilot.io", f"{plural}/finalizers", "update")
        for plural in ("modelpulls", "trainingruns", "generationjobs", "serviceinstances")
    ),
    # Creating a child that is already there falls back to reading it; which path a run takes
    # depends on timing, so reads of what the operator creates are granted with the create.
    ("batch", "jobs", "get"),
    ("apps", "deployments", "get"),
    ("", "services", "get"),
    ("", "serviceaccounts", "get"),
}


def test_the_cluster_role_covers_exactly_what_the_operator_uses(
    devcluster: DevCluster,
    crds: None,
    storage: Storage,
    objects: Objects,
    hub: HubFake,
    tmp_path: Path,
    tiny_sd: Path,
) -> None:
    record = tmp_path / "api-use.json"
    # A Lease of its own, so this run creates it (and is not handed one an earlier test made).
    election = {"leaderElection": {"leaseName": f"rbac-{objects.namespace}"}}
    operator = OperatorProcess(devcluster, storage, tmp_path, extra=election, record_api_use=record).start()
    try:
        _exercise(objects, hub, storage)
    finally:
        operator.stop()
    used = {tuple(item) for item in json.loads(record.read_text())}
    uncovered = sorted(u for u in used if not covers(RULES, *u))
    assert uncovered == [], f"the ClusterRole misses {uncovered}"
    granted = {
        (rule.api_group, resource, verb)
        for rule in RULES
        for resource in rule.resources
        for verb in rule.verbs
    }
    unused = sorted(granted - used - IMPLIED)
    assert unused == [], f"the ClusterRole grants more than the operator uses: {unused}"


def _exercise(objects: Objects, hub: HubFake, storage: Storage) -> None:
    """Every path that talks to the API server: children, status, finalizers, events, actions."""
    ns = objects.namespace
    objects.core.create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="token"), data={"token": base64.b64encode(b"x").decode()}
        ),
    )
    data = bytes_of(f"rbac-{ns}", 2_000_000)
    url = hub.add_plain(f"rbac-{ns}", FakeFile(data=data))
    source = {"type": "URL", "urls": [{"url": url, "path": "w.bin"}]}
    objects.create(
        "modelpulls",
        "ModelPull",
        "pull",
        {
            "source": source,
            "destination": {"modelType": "other", "subdir": ns},
            "credentialsSecretRef": {"name": "token"},
        },
    )
    objects.wait_phase("modelpulls", "pull", "Completed")
    objects.create(
        "trainingruns",
        "TrainingRun",
        "waits",
        tiny_lora_run(f"missing-{ns}", f"w-{ns}", max_steps=10),
    )
    objects.wait("trainingruns", "waits", lambda s: bool(s.get("conditions")), 30, "a status")
    hub.throttle_bytes_per_second = 100_000
    try:
        objects.create(
            "modelpulls",
            "ModelPull",
            "paused",
            {
                "source": {"type": "URL", "urls": [{"url": url, "path": "p.bin"}]},
                "destination": {"modelType": "other", "subdir": f"{ns}-p"},
            },
        )
        objects.wait_phase("modelpulls", "paused", "Downloading")
        objects.patch("modelpulls", "paused", {"spec": {"paused": True}})
        objects.wait_phase("modelpulls", "paused", "Paused")
        objects.patch("modelpulls", "paused", {"spec": {"cancel": True}})
        objects.wait_phase("modelpulls", "paused", "Cancelled")
    finally:
        hub.throttle_bytes_per_second = 0
    objects.delete("modelpulls", "pull")
    objects.wait_gone("modelpulls", "pull")
    objects.create(
        "serviceinstances",
        "ServiceInstance",
        "gen",
        {
            "serviceType": "kubepilot-generator",
            "running": False,
            "models": ["diffusers/tiny-sd"],
        },
    )
    objects.wait_phase("serviceinstances", "gen", "Stopped")
    objects.patch("serviceinstances", "gen", {"spec": {"models": ["diffusers/other"]}})
    objects.wait("serviceinstances", "gen", lambda s: s.get("observedGeneration") == 2, 30, "reconciled")
    objects.patch("serviceinstances", "gen", {"spec": {"running": True}})
    objects.wait_phase("serviceinstances", "gen", "Starting", "Running", "Error")
    made = objects.create(
        "generationjobs",
        "GenerationJob",
        "img",
        {
            "type": "txt2img",
            "model": "diffusers/tiny-sd",
            "prompt": "x",
            "width": 64,
            "height": 64,
            "steps": 1,
            "ttlSecondsAfterFinished": 3,
            "retainFilesOnDelete": False,
        },
    )
    images = storage.outputs / "generations" / ns / f"img-{made['metadata']['uid'][:8]}"
    objects.wait_phase("generationjobs", "img", "Completed", timeout=120)
    assert any(images.glob("*.png")), "the job wrote its images"
    objects.wait_gone("generationjobs", "img", timeout=60)
    assert not images.exists(), "retainFilesOnDelete: false removes the job's images with it"
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    schedule = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="kubepilot-schedule"), data={"shutdownAt": when}
    )
    try:
        objects.core.create_namespaced_config_map("default", schedule)
    except client.ApiException:
        objects.core.patch_namespaced_config_map(
            "kubepilot-schedule", "default", {"data": {"shutdownAt": when}}
        )
    objects.wait_phase("serviceinstances", "gen", "Stopped", timeout=30)
