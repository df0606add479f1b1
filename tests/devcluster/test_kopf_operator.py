"""kopf, unmodified, runs an operator against the devcluster: finalizers, status, adoption, progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubernetes import client

from kubepilot_devcluster.testing import DevCluster

OPERATOR = Path(__file__).with_name("kopf_widget_operator.py")
GROUP, VERSION, PLURAL = "example.kubepilot.io", "v1", "widgets"


def _wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except client.ApiException as error:
            if error.status != 404:
                raise
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except client.ApiException as error:
        return error.status == 404
    return False


def test_kopf_operator_handles_a_widget_lifecycle(
    devcluster: DevCluster, kube_api: Any, namespace: str, widget_crd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(devcluster.kubeconfig))
    custom = client.CustomObjectsApi(kube_api)
    core = client.CoreV1Api(kube_api)
    args = ["run", "--standalone", "--namespace", namespace, str(OPERATOR)]
    with KopfRunner(args, timeout=60) as runner:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"size": "small"},
            },
        )

        def ready() -> dict[str, Any] | None:
            widget = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
            return widget if widget.get("status", {}).get("phase") == "Ready" else None

        widget = _wait_for(ready)
        assert "kubepilot.io/widget-cleanup" in widget["metadata"]["finalizers"]
        assert any(key.startswith("kubepilot.io/") for key in widget["metadata"]["annotations"])
        child = core.read_namespaced_config_map("w-config", namespace)
        assert child.metadata.owner_references[0].uid == widget["metadata"]["uid"]
        assert child.data == {"size": "small"}

        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "w", {"spec": {"size": "large"}}
        )
        _wait_for(lambda: core.read_namespaced_config_map("w-config", namespace).data == {"size": "large"})
        _wait_for(
            lambda: (
                custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
                .get("status", {})
                .get("phase")
                == "Resized-large"
            )
        )

        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w")
        _wait_for(
            lambda: _gone(lambda: custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w"))
        )
        assert core.read_namespaced_config_map("w-deleted", namespace).data == {"by": "kopf"}
        _wait_for(lambda: _gone(lambda: core.read_namespaced_config_map("w-config", namespace)))
    assert runner.exception is None
    assert runner.exit_code == 0
    assert "Traceback" not in runner.output
