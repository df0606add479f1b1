"""kopf's diff base is off for the operator's registry, which has event handlers only.

``NoDiffBase`` spares kopf a deep copy of every event's body that nothing reads (the operator's
CPU per object in ``bench/operator_bench.py``). What the handlers see does not depend on it: the
end-to-end lifecycle tests (``test_*_lifecycle.py``) run the real operator with it. These tests
pin the guard that keeps it safe: a change handler, which would need the real diff base, is refused.
"""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from kubernetes import client

from kubepilot_operator import kube
from kubepilot_operator.app import Operator
from kubepilot_operator.handlers import NoDiffBase, build_registry, only_event_handlers
from kubepilot_operator.settings import Settings


def _operator() -> Operator:
    """An operator that is never started: building its registry makes no API call."""
    configuration = client.Configuration(host="http://127.0.0.1:9")
    return Operator(Settings(), kube.Kube(client.ApiClient(configuration)))


def test_the_registry_has_event_handlers_only() -> None:
    registry = build_registry(_operator())
    assert only_event_handlers(registry)
    assert len(registry._watching.get_all_handlers()) == 7  # four CRDs, Jobs, Deployments, Pods


def test_a_change_handler_is_detected() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.event("v1", "configmaps", registry=registry)
    def on_event(**_: Any) -> None:
        return None

    assert only_event_handlers(registry)

    @kopf.on.update("v1", "configmaps", registry=registry)
    def on_update(**_: Any) -> None:
        return None

    assert not only_event_handlers(registry)


def test_a_daemon_is_detected() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.daemon("v1", "configmaps", registry=registry)
    def daemon(**_: Any) -> None:
        return None

    assert not only_event_handlers(registry)


def test_build_registry_refuses_a_change_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later change handler must take NoDiffBase out, not silently see no changes."""
    original = kopf.OperatorRegistry

    def with_update_handler() -> kopf.OperatorRegistry:
        registry = original()
        kopf.on.update("v1", "configmaps", registry=registry)(lambda **_: None)
        return registry

    monkeypatch.setattr(kopf, "OperatorRegistry", with_update_handler)
    with pytest.raises(RuntimeError, match="diff base"):
        build_registry(_operator())


def test_no_diff_base_builds_and_stores_nothing() -> None:
    raw: kopf.RawBody = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a"},
        "spec": {"k": "v"},
    }
    body = kopf.Body(raw)
    storage = NoDiffBase()
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=kopf.BodyEssence(spec={"k": "v"}))
    assert not patch
