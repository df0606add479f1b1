"""Rendering the chart into manifests, and finding objects in them, for the chart tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from helm_python import Chart

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubepilot"
RELEASE = "kp"
NAMESPACE = "kubepilot"

Manifest = dict[str, Any]


def render(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[Manifest]:
    """Every object the chart renders except the CRDs (test_render.py covers those)."""
    with Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=name, namespace=namespace)
    texts = [
        text
        for path, text in rendered.items()
        if path.endswith((".yaml", ".yml")) and "/templates/crds/" not in path
    ]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The single object of ``kind`` (and ``name``); fails when there is none or several."""
    found = [doc for doc in of_kind(manifests, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def operator_container(manifests: list[Manifest]) -> Manifest:
    pod = one(manifests, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return dict(container)


def settings_document(manifests: list[Manifest]) -> dict[str, Any]:
    """The operator's settings file, as the operator would read it from the ConfigMap."""
    [config_map] = [doc for doc in of_kind(manifests, "ConfigMap") if "settings.yaml" in doc["data"]]
    loaded = yaml.safe_load(config_map["data"]["settings.yaml"])
    assert isinstance(loaded, dict)
    return loaded
