"""Scheduling decisions, quantities, node.yaml parsing and loopback address pools."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from kubepilot_devcluster.controllers import run_control_plane
from kubepilot_devcluster.kubelet.config import NodeConfigError, load_node_config, parse_node_config
from kubepilot_devcluster.kubelet.network import POD_NETWORK, AddressPool
from kubepilot_devcluster.kubelet.paths import container_log_path
from kubepilot_devcluster.kubelet.quantity import parse_quantity
from kubepilot_devcluster.kubelet.scheduler import pod_requests, unschedulable_reason, used_resources

CAPACITY = {"cpu": "2", "memory": "4Gi", "pods": "3", "nvidia.com/gpu": "0"}
LABELS = {"kubernetes.io/hostname": "devcluster-node"}


def _pod(requests: dict[str, str], node: str = "", phase: str = "Pending") -> dict[str, object]:
    return {
        "spec": {"nodeName": node, "containers": [{"resources": {"requests": requests}}]},
        "status": {"phase": phase},
    }


def test_quantities_parse_suffixes_and_reject_garbage() -> None:
    assert parse_quantity("500m") == Decimal("0.5")
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("1e3") == 1000
    assert parse_quantity(3) == 3
    with pytest.raises(ValueError, match="invalid quantity '2 cores'"):
        parse_quantity("2 cores")


def test_gpu_request_beyond_capacity_is_unschedulable_with_the_scheduler_message() -> None:
    reason = unschedulable_reason(_pod({"nvidia.com/gpu": "1"}), CAPACITY, {}, LABELS)
    assert reason == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."


def test_used_resources_count_only_bound_unfinished_pods() -> None:
    pods = [
        _pod({"cpu": "1500m"}, "devcluster-node", "Running"),
        _pod({"cpu": "2"}, "devcluster-node", "Succeeded"),
    ]
    used = used_resources(pods, "devcluster-node")
    assert used["cpu"] == Decimal("1.5") and used["pods"] == 1
    assert unschedulable_reason(_pod({"cpu": "1"}), CAPACITY, used, LABELS) == (
        "0/1 nodes are available: 1 Insufficient cpu."
    )
    assert unschedulable_reason(_pod({"cpu": "500m"}), CAPACITY, used, LABELS) is None


def test_node_selector_mismatch_and_init_container_requests() -> None:
    pod = {"spec": {"nodeSelector": {"gpu": "yes"}, "containers": [{}]}}
    assert "didn't match Pod's node affinity/selector" in str(unschedulable_reason(pod, CAPACITY, {}, LABELS))
    init_heavy = {
        "spec": {
            "initContainers": [{"resources": {"limits": {"memory": "3Gi"}}}],
            "containers": [{"resources": {"requests": {"memory": "1Gi"}}}],
        }
    }
    assert pod_requests(init_heavy)["memory"] == 3 * 2**30


def test_node_yaml_is_written_with_defaults_and_validated(tmp_path: Path) -> None:
    config = load_node_config(tmp_path)
    assert (tmp_path / "node.yaml").exists()
    assert config.node_name == "devcluster-node" and config.capacity["nvidia.com/gpu"] == "0"
    assert config.image_mapping("kubepilot/worker:0.1") is not None
    assert config.image_mapping("busybox:1.36") is None
    assert load_node_config(tmp_path) == config
    custom = parse_node_config({"capacity": {"nvidia.com/gpu": 2}, "images": ["busybox:*"]})
    assert custom.capacity["nvidia.com/gpu"] == "2" and custom.image_mapping("busybox:1.36") is not None
    with pytest.raises(NodeConfigError, match=r"capacity\.cpu"):
        parse_node_config({"capacity": {"cpu": "lots"}})
    with pytest.raises(NodeConfigError, match=r"images\[0\]"):
        parse_node_config({"images": [{"prefix": ["x"]}]})
    (tmp_path / "node.yaml").write_text("nodeName: [unclosed")
    with pytest.raises(NodeConfigError, match="not valid YAML"):
        load_node_config(tmp_path)


def test_address_pool_skips_used_and_reserved_addresses() -> None:
    pool = AddressPool(POD_NETWORK, start_offset=2)
    pool.reserve("127.1.0.3")
    assert [pool.allocate(), pool.allocate()] == ["127.1.0.2", "127.1.0.4"]
    assert "127.1.9.9" in pool and "10.96.0.1" not in pool and "garbage" not in pool


def test_log_path_convention_is_stable() -> None:
    path = container_log_path(Path("/data"), "ns", "pod", "uid", "main")
    assert path == Path("/data/pods/ns_pod_uid/main.log")


async def test_control_plane_refuses_a_bad_node_yaml_with_a_clear_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "node.yaml").write_text("capacity: {cpu: lots}\n")
    stop = asyncio.Event()
    # The API URL is never contacted: the configuration is rejected first.
    await asyncio.wait_for(run_control_plane("http://127.0.0.1:9", tmp_path, stop), 5)
    assert "control plane not started" in caplog.text and "capacity.cpu" in caplog.text
