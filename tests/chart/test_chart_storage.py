"""The models, datasets and outputs claims: created, kept, or replaced by existing ones."""

from __future__ import annotations

from typing import Any

from kubepilot_operator.settings import Settings
from tests.chart.chart_tools import RELEASE, of_kind, one, render, settings_document


def _claims(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(render(values), "PersistentVolumeClaim")}


def _pod_claims(values: dict[str, Any]) -> dict[str, str]:
    volumes = one(render(values), "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]["volumes"]
    return {
        v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    }


def test_three_shared_claims_are_created_and_kept_on_uninstall() -> None:
    claims = _claims()
    assert sorted(claims) == [f"{RELEASE}-datasets", f"{RELEASE}-models", f"{RELEASE}-outputs"]
    sizes = {name: claim["spec"]["resources"]["requests"]["storage"] for name, claim in claims.items()}
    assert sizes == {
        f"{RELEASE}-models": "200Gi",
        f"{RELEASE}-datasets": "50Gi",
        f"{RELEASE}-outputs": "100Gi",
    }
    for claim in claims.values():
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert "storageClassName" not in claim["spec"]
        assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_an_existing_claim_replaces_the_chart_claim_everywhere() -> None:
    values = {"storage": {"models": {"existingClaim": "shared-weights"}}}
    assert sorted(_claims(values)) == [f"{RELEASE}-datasets", f"{RELEASE}-outputs"]
    assert _pod_claims(values)["models"] == "shared-weights"
    settings = Settings(**settings_document(render(values)))
    assert settings.storage.models.claimName == "shared-weights"
    assert settings.storage.datasets.claimName == f"{RELEASE}-datasets"


def test_every_claim_can_be_existing() -> None:
    values = {
        "storage": {name: {"existingClaim": f"pre-{name}"} for name in ("models", "datasets", "outputs")}
    }
    assert _claims(values) == {}
    assert _pod_claims(values) == {
        "models": "pre-models",
        "datasets": "pre-datasets",
        "outputs": "pre-outputs",
    }


def test_create_false_renders_no_claim_but_mounts_the_release_named_one() -> None:
    values = {"storage": {"outputs": {"create": False}}}
    assert f"{RELEASE}-outputs" not in _claims(values)
    assert _pod_claims(values)["outputs"] == f"{RELEASE}-outputs"


def test_claim_size_class_and_access_modes_come_from_values() -> None:
    values = {
        "storage": {
            "keep": False,
            "models": {"size": "1Ti", "storageClassName": "cephfs", "accessModes": ["ReadWriteOnce"]},
            "datasets": {"storageClassName": "-"},
        }
    }
    claims = _claims(values)
    models = claims[f"{RELEASE}-models"]["spec"]
    assert models["resources"]["requests"]["storage"] == "1Ti"
    assert models["storageClassName"] == "cephfs"
    assert models["accessModes"] == ["ReadWriteOnce"]
    # "-" asks for no class at all: the claim binds to a pre-made PersistentVolume.
    assert claims[f"{RELEASE}-datasets"]["spec"]["storageClassName"] == ""
    assert all("annotations" not in claim["metadata"] for claim in claims.values())
