"""ComfyUI-Docker's preset catalog, workflow templates and login Secret, rendered from values and
read back with the profile's own parsers (so the chart and the gateway agree on names and shapes)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from helm_python import HelmRenderError

from kubepilot_gateway.profiles.comfyui_docker.auth import parse_users
from kubepilot_gateway.profiles.comfyui_docker.catalog import parse_catalog
from kubepilot_gateway.profiles.comfyui_docker.tokens import check_password, hash_password
from kubepilot_gateway.profiles.comfyui_docker.workflows import parse_templates
from tests.chart.chart_tools import NAMESPACE, Manifest, of_kind, one, render

FILES = [
    {
        "path": "checkpoints/flux1-schnell-fp8.safetensors",
        "url": "https://x.example/f.safetensors",
        "size": "17.2GB",
    },
    {"path": "vae/ae.safetensors", "url": "https://x.example/ae.safetensors", "size_bytes": 335_304_388},
]
PRODUCT_YAML = """\
metadata: {version: "1.0"}
presets:
  FLUX_SCHNELL_FP8:
    name: FLUX.1 Schnell FP8
    category: Image Generation
    type: image
    files:
      - path: checkpoints/flux1-schnell-fp8.safetensors
        url: https://x.example/f.safetensors
        size: 17.2GB
"""
GRAPH = {"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}}


def _data(comfy: dict[str, Any], settings: dict[str, Any] | None = None) -> list[Manifest]:
    gateway: dict[str, Any] = {"enabled": True, "data": {"comfyuiDocker": comfy}}
    if settings:
        gateway["settings"] = {"profileSettings": {"comfyui-docker": settings}}
    return render({"gateway": gateway})


def test_nothing_is_rendered_by_default() -> None:
    names = {m["metadata"]["name"] for m in render({"gateway": {"enabled": True}})}
    assert not names & {"comfyui-docker-presets", "comfyui-docker-workflows", "comfyui-docker-auth"}


def test_a_catalog_in_kubepilots_shape_is_the_configmap_the_profile_reads() -> None:
    presets = [
        {"id": "FLUX", "name": "FLUX", "category": "Image Generation", "type": "image", "files": FILES}
    ]
    config_map = one(_data({"presets": presets}), "ConfigMap", "comfyui-docker-presets")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    catalog = parse_catalog(config_map["data"]["presets"])
    assert catalog.problems == ()
    [preset] = catalog.presets
    assert [f.path for f in preset.files] == [
        "checkpoints/flux1-schnell-fp8.safetensors",
        "vae/ae.safetensors",
    ]
    assert [f.size_bytes for f in preset.files] == [17_200_000_000, 335_304_388]


def test_the_products_presets_yaml_goes_in_verbatim_under_the_names_the_settings_give() -> None:
    manifests = _data({"presets": PRODUCT_YAML}, {"catalogConfigMap": "my-presets", "catalogKey": "catalog"})
    config_map = one(manifests, "ConfigMap", "my-presets")
    assert config_map["data"]["catalog"].strip() == PRODUCT_YAML.strip()
    [preset] = parse_catalog(config_map["data"]["catalog"]).presets
    assert preset.id == "FLUX_SCHNELL_FP8"


def test_workflow_templates_are_one_json_key_each() -> None:
    config_map = one(_data({"workflows": {"flux_t2i": GRAPH}}), "ConfigMap", "comfyui-docker-workflows")
    assert json.loads(config_map["data"]["flux_t2i.json"]) == GRAPH
    found, problems = parse_templates(config_map["data"])
    assert list(found) == ["flux_t2i"] and problems == []


def test_the_login_secret_holds_the_key_and_users_the_profile_checks_passwords_against() -> None:
    users = [{"username": "admin", "password_hash": hash_password("pw", iterations=1000), "role": "admin"}]
    auth = {"create": True, "signingKey": "k" * 40, "users": users}
    secret = one(_data({"auth": auth}), "Secret", "comfyui-docker-auth")
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    assert data["signing-key"] == b"k" * 40
    parsed = parse_users(data["users"])
    assert check_password("pw", parsed["admin"].password_hash) and parsed["admin"].role == "admin"
    assert not [s for s in of_kind(_data({}), "Secret") if s["metadata"]["name"] == "comfyui-docker-auth"]


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({"create": True, "signingKey": "short", "users": [{"username": "a", "password_hash": "h"}]}, "32"),
        ({"create": True, "signingKey": "k" * 40, "users": []}, "users"),
    ],
)
def test_a_login_secret_without_a_strong_key_or_users_fails_the_render(
    auth: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmRenderError, match=message):
        _data({"auth": auth})
