"""The Helm chart renders and lints with the Helm library itself (helm-python-sdk, no binary)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helm_python import Chart, lint

CHART = Path(__file__).resolve().parents[2] / "charts" / "kubepilot"


@pytest.fixture(scope="module")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART) as loaded:
        yield loaded


def _crds(rendered: dict[str, str]) -> list[dict[str, object]]:
    manifests = [text for path, text in rendered.items() if path.endswith((".yaml", ".yml"))]
    docs = [doc for text in manifests for doc in yaml.safe_load_all(text) if doc]
    return [doc for doc in docs if doc.get("kind") == "CustomResourceDefinition"]


def test_chart_lints_clean_in_strict_mode() -> None:
    report = lint(CHART, strict=True, kube_version="v1.31.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert errors == [] and report["errors"] == []


def test_crds_render_with_the_keep_policy_by_default(chart: Chart) -> None:
    crds = _crds(chart.render(name="kp", namespace="kubepilot"))
    names = sorted(str(crd["metadata"]["name"]) for crd in crds)  # type: ignore[index]
    assert names == [
        "generationjobs.kubepilot.io",
        "modelpulls.kubepilot.io",
        "serviceinstances.kubepilot.io",
        "trainingruns.kubepilot.io",
    ]
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}  # type: ignore[index]


def test_crds_are_left_out_or_not_kept_when_asked(chart: Chart) -> None:
    assert _crds(chart.render({"crds": {"enabled": False}}, name="kp")) == []
    crds = _crds(chart.render({"crds": {"keep": False}}, name="kp"))
    assert len(crds) == 4
    assert all("annotations" not in crd["metadata"] for crd in crds)  # type: ignore[operator]


def test_the_rendered_crds_equal_the_plain_ones(chart: Chart) -> None:
    plain = {
        path.name: yaml.safe_load(path.read_text()) for path in (CHART.parents[1] / "crds").glob("*.yaml")
    }
    for crd in _crds(chart.render({"crds": {"keep": False}}, name="kp")):
        name = f"kubepilot.io_{crd['spec']['names']['plural']}.yaml"  # type: ignore[index]
        assert crd == plain[name]


def test_values_outside_the_schema_are_refused() -> None:
    report = lint(CHART, {"crds": {"enabled": "yes"}}, strict=True)
    assert any("'/crds/enabled': got string, want boolean" in error for error in report["errors"])
