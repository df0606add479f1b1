"""kopf's diff base and progress storage are off for the operator's registry (event handlers only).

``NoDiffBase`` spares kopf a deep copy of every event's body that nothing reads (the operator's
CPU per object in ``bench/operator_bench.py``). What the handlers see does not depend on it: the
end-to-end lifecycle tests (``test_*_lifecycle.py``) run the real operator with it. These tests
pin the guard that keeps it safe: a change handler, which would need the real diff base, is refused.
``NoProgressStorage`` likewise spares kopf's per-event cleaning of its own annotations, which only
change handlers and daemons write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kubernetes import client

from kubepilot_operator import kube
from kubepilot_operator.app import Operator
from kubepilot_operator.handlers import NoDiffBase, NoProgressStorage, build_registry, only_event_handlers
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


def test_no_progress_storage_keeps_nothing_and_patches_nothing() -> None:
    body = kopf.Body({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
    storage = NoProgressStorage()
    essence = kopf.BodyEssence(metadata={"annotations": {"kopf.zalando.org/x": "1"}})
    assert storage.clear(essence=essence) is essence  # no deep copy, nothing removed: none was written
    assert storage.fetch(key=kopf.HandlerId("h"), body=body) is None
    patch = kopf.Patch()
    storage.store(key=kopf.HandlerId("h"), record=kopf.ProgressRecord(retries=1), body=body, patch=patch)
    storage.purge(key=kopf.HandlerId("h"), body=body, patch=patch)
    storage.touch(body=body, patch=patch, value="now")
    assert not patch  # kopf's apply would have nothing to send


def test_the_operator_configures_both_storages() -> None:
    """The startup handler installs them; it runs before kopf watches anything."""
    registry = build_registry(_operator())
    settings = kopf.OperatorSettings()
    handlers = registry._activities.get_all_handlers()
    startup = next(h for h in handlers if h.activity == "startup")

    async def run() -> None:
        fn: Any = startup.fn
        # Settings come first; the operator's own start then fails: no cluster answers here.
        with pytest.raises(Exception):  # noqa: B017  # which one is the client's business
            await fn(settings=settings)

    asyncio.run(run())
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    assert isinstance(settings.persistence.progress_storage, NoProgressStorage)
