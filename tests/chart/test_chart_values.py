"""values.yaml and values.schema.json: every key documented, typed, and lint-clean in any combination."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from helm_python import HelmRenderError, lint

from tests.chart.chart_tools import CHART, render

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())

NON_DEFAULT_VALUES: dict[str, dict[str, Any]] = {
    "existing claims": {
        "storage": {name: {"existingClaim": f"pre-{name}"} for name in ("models", "datasets", "outputs")}
    },
    "no claims created": {
        "storage": {"keep": False, "models": {"create": False}, "outputs": {"create": False}}
    },
    "grafana off, service monitor on": {
        "grafana": {"dashboard": {"enabled": False}},
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "1m", "labels": {"release": "prom"}}},
    },
    "custom operator": {
        "crds": {"enabled": False},
        "operator": {
            "image": {"repository": "registry.example/operator", "tag": "dev", "pullPolicy": "Always"},
            "replicas": 2,
            "ports": {"intake": 9443, "health": 9090},
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"cpu": 2, "memory": "2Gi"},
            },
            "serviceAccount": {"create": False, "name": "operator-sa"},
            "rbac": {"create": False},
            "settings": {"namespaces": ["ml"], "gpuProfiles": {"a100": {"resourceName": "nvidia.com/gpu"}}},
        },
    },
    "comfyui-docker data": {
        "gateway": {
            "data": {
                "comfyuiDocker": {
                    "presets": "presets:\n  X: {name: X, files: []}\n",
                    "workflows": {"t2i": {"9": {"class_type": "SaveImage", "inputs": {}}}},
                    "auth": {
                        "create": True,
                        "signingKey": "k" * 40,
                        "users": [{"username": "admin", "password_hash": "pbkdf2$1$s$h", "role": "admin"}],
                    },
                }
            }
        }
    },
    "kind": {
        "storage": {
            name: {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "size": "5Gi"}
            for name in ("models", "datasets", "outputs")
        }
    },
}


def _errors(report: dict[str, Any]) -> list[str]:
    return [m["error"] for m in report["messages"] if m["severity"] >= 2] + list(report["errors"])


@pytest.mark.parametrize("values", NON_DEFAULT_VALUES.values(), ids=NON_DEFAULT_VALUES.keys())
def test_the_chart_lints_clean_in_strict_mode_with_non_default_values(values: dict[str, Any]) -> None:
    assert _errors(lint(CHART, values, strict=True, namespace="ai", kube_version="v1.31.0")) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"operator": {"imag": {}}}, "additional properties 'imag' not allowed"),
        ({"storage": {"models": {"sise": "1Gi"}}}, "additional properties 'sise' not allowed"),
        ({"storage": {"models": {"accessModes": ["RWX"]}}}, "'/storage/models/accessModes/0'"),
        ({"storage": {"datasets": {"size": "lots"}}}, "'/storage/datasets/size'"),
        ({"operator": {"ports": {"intake": 0}}}, "'/operator/ports/intake'"),
        ({"operator": {"replicas": "two"}}, "'/operator/replicas'"),
        ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "'/metrics/serviceMonitor/interval'"),
        ({"grafana": {"dashboard": {"enabled": "yes"}}}, "'/grafana/dashboard/enabled'"),
    ],
)
def test_values_outside_the_schema_are_refused(values: dict[str, Any], message: str) -> None:
    errors = lint(CHART, values, strict=True)["errors"]
    assert any(message in error for error in errors), errors


def test_a_missing_service_account_name_fails_the_render() -> None:
    with pytest.raises(HelmRenderError, match=r"operator\.serviceAccount\.name is required"):
        render({"operator": {"serviceAccount": {"create": False}}})


def _leaves(node: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths to every value that is not a non-empty mapping."""
    if isinstance(node, dict) and node:
        return [leaf for key, child in node.items() for leaf in _leaves(child, (*path, key))]
    return [path]


def _schema_at(path: tuple[str, ...]) -> dict[str, Any]:
    """The schema of the value at ``path``; free-form maps (resources, settings) end the walk."""
    node: dict[str, Any] = SCHEMA
    for depth, key in enumerate(path):
        if "properties" not in node:
            assert node["type"] == "object", path[:depth]
            return node
        assert node.get("additionalProperties") is False, f"{'.'.join(path[:depth])} allows unknown keys"
        node = node["properties"][key]
        if "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


@pytest.mark.parametrize("path", _leaves(VALUES), ids=lambda path: ".".join(path))
def test_every_value_is_in_the_schema_with_a_type_and_a_description(path: tuple[str, ...]) -> None:
    schema = _schema_at(path)
    assert "type" in schema
    assert "description" in schema


def _documented_keys(text: str) -> set[tuple[str, ...]]:
    """Keys whose line follows a ``# -- `` comment block, by path (indentation gives the nesting)."""
    documented: set[tuple[str, ...]] = set()
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if match:
            indent = len(match[1])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match[2]))
            if any(c.startswith("# -- ") for c in comment):
                documented.add(tuple(key for _, key in stack))
        comment = []
    return documented


@pytest.mark.parametrize("path", _leaves(VALUES), ids=lambda path: ".".join(path))
def test_every_value_is_documented_in_values_yaml(path: tuple[str, ...]) -> None:
    # A map documented as a whole (operator.resources) covers the keys of its default.
    documented = _documented_keys(VALUES_TEXT)
    assert any(path[:depth] in documented for depth in range(2, len(path) + 1))
