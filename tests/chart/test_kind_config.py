"""kind-config.yaml: a one-node kind cluster with the gateway ports and the volumes from the host."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.chart.chart_tools import ROOT

KIND_CONFIG = ROOT / "kind-config.yaml"
GATEWAY_PORTS = {7878, 8080, 8000, 3000, 8001, 9000}


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load(KIND_CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_kind_config_is_a_single_control_plane_cluster() -> None:
    config = _config()
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [node["role"] for node in config["nodes"]] == ["control-plane"]


def test_every_gateway_port_reaches_the_host_at_the_same_port_on_loopback() -> None:
    [node] = _config()["nodes"]
    mappings = node["extraPortMappings"]
    assert {m["hostPort"] for m in mappings} == GATEWAY_PORTS
    assert len(mappings) == len(GATEWAY_PORTS)
    for mapping in mappings:
        assert mapping["containerPort"] == mapping["hostPort"]
        assert mapping.get("listenAddress") == "127.0.0.1"
        assert mapping.get("protocol", "TCP") == "TCP"


def test_the_host_models_folder_is_mounted_into_the_node() -> None:
    [node] = _config()["nodes"]
    mounts = {m["containerPath"]: m["hostPath"] for m in node["extraMounts"]}
    assert mounts["/models"] == "./.kind/models"
    assert set(mounts) == {"/models", "/datasets", "/outputs"}
    assert all(path.startswith("./.kind/") for path in mounts.values())


def test_the_commented_gpu_worker_example_parses_with_the_gpu_label() -> None:
    # The example stays commented out (kind cannot start it without GPUs), so uncomment and parse it.
    block = re.search(r"^  # - role: worker\n(?:  #.*\n?)+", KIND_CONFIG.read_text(), re.MULTILINE)
    assert block, "no commented worker example"
    text = re.sub(r"^  # ?", "  ", block[0], flags=re.MULTILINE)
    [worker] = yaml.safe_load(text)
    assert worker["role"] == "worker"
    assert worker["labels"] == {"nvidia.com/gpu.present": "true"}
    assert {m["containerPath"] for m in worker["extraMounts"]} >= {"/models", "/datasets", "/outputs"}
