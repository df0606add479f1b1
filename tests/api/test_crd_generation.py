"""The generated CRDs: committed copies are current, and each carries what kubectl users rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubepilot_api.crdgen import chart_crd_files, plain_crd_files
from tests.api.schema_tools import ROOT, cel_rules, load_crds, schema_of

CRDS = load_crds()


def test_committed_crds_match_the_models() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kubepilot_api.crdgen_cli", "check", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_check_fails_with_a_diff_when_a_model_field_changes(tmp_path: Path) -> None:
    package = tmp_path / "kubepilot_api"
    shutil.copytree(ROOT / "crds" / "kubepilot_api", package)
    source = package / "modelpull.py"
    text = source.read_text()
    anchor = "    paused: bool = Field("
    assert anchor in text
    source.write_text(
        text.replace(anchor, '    mirror: str = Field(default="", description="A mirror.")\n' + anchor, 1)
    )
    result = subprocess.run(
        [sys.executable, "-m", "kubepilot_api.crdgen_cli", "check", "--root", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "+              mirror:" in result.stderr
    assert "kubepilot crds generate" in result.stderr


def test_the_chart_copies_are_gated_and_kept_on_uninstall() -> None:
    plain, chart = plain_crd_files(), chart_crd_files()
    assert plain.keys() == chart.keys()
    for name, text in chart.items():
        assert "{{- if .Values.crds.enabled }}" in text
        assert "helm.sh/resource-policy: keep" in text
        assert (ROOT / "charts" / "kubepilot" / "templates" / "crds" / name).read_text() == text


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_has_status_subresource_printer_columns_short_name_and_category(kind: str) -> None:
    spec = CRDS[kind]["spec"]
    version = spec["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [column["name"] for column in version["additionalPrinterColumns"]]
    assert columns[-1] == "Age" and "Phase" in columns
    assert {"Progress", "Step", "Ready"} & set(columns), "a progress or detail column"
    assert len(spec["names"]["shortNames"]) == 1 and spec["names"]["categories"] == ["kubepilot"]
    assert spec["scope"] == "Namespaced"


def _undescribed(node: dict[str, Any], path: str) -> list[str]:
    missing = []
    for name, child in node.get("properties", {}).items():
        if not child.get("description"):
            missing.append(f"{path}.{name}")
        missing += _undescribed(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            missing += _undescribed(node[key], f"{path}[]")
    return missing


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_property_has_a_description_and_every_node_a_type(kind: str) -> None:
    schema = schema_of(CRDS[kind])
    assert _undescribed(schema, kind) == []

    def untyped(node: dict[str, Any], path: str) -> list[str]:
        found = [] if "type" in node else [path]
        for name, child in node.get("properties", {}).items():
            found += untyped(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            found += untyped(node["items"], f"{path}[]")
        return found

    assert untyped(schema, kind) == []


def test_immutable_identity_fields_carry_a_transition_rule() -> None:
    immutable = {
        kind: sorted(path for path, rule, _ in cel_rules(schema_of(crd)) if rule["rule"] == "self == oldSelf")
        for kind, crd in CRDS.items()
    }
    assert immutable == {
        "ModelPull": ["spec.destination", "spec.source"],
        "TrainingRun": ["spec.baseModel", "spec.dataset", "spec.output", "spec.trainer"],
        "GenerationJob": ["spec.model", "spec.prompt", "spec.type"],
        "ServiceInstance": ["spec.serviceType"],
    }


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    for crd in CRDS.values():
        conditions = schema_of(crd)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert set(conditions["items"]["required"]) == {"type", "status", "reason", "lastTransitionTime"}
