"""kopf registrations: thin watch handlers that hand every event to the operator's cache and queue.

Handlers are registered on a registry of their own (not kopf's global one), so importing this
module has no side effects and tests can run operators side by side.

Only ``on.event`` handlers are registered: kopf's change detection (its diff base, a deep copy of
every event's body, cleaned of kopf's progress fields, diffed against the last-handled state) is
never read, so :class:`NoDiffBase` makes it free. That was about a tenth of the operator's CPU in
``bench/operator_bench.py``; :func:`build_registry` refuses a change or daemon handler, which
would need the real diff base back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import kopf

from kubepilot_api.constants import GROUP, VERSION
from kubepilot_operator.app import Operator
from kubepilot_operator.intake import KIND_BY_PLURAL
from kubepilot_operator.naming import MANAGED_BY

log = logging.getLogger(__name__)
CHILD_RESOURCES = (("batch", "v1", "jobs"), ("apps", "v1", "deployments"), ("", "v1", "pods"))
WATCHED = (*((GROUP, VERSION, plural) for plural in KIND_BY_PLURAL), *CHILD_RESOURCES)
"""Every resource the operator lists and watches through kopf."""


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base for a registry of ``on.event`` handlers only: nothing is built or stored.

    kopf builds an "essence" of every event's body (a deep copy) to detect changes for
    ``on.create``/``on.update``/``on.resume`` handlers and daemons' idle timers; event handlers get
    every event regardless, so an empty essence changes nothing they see.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class NoProgressStorage(kopf.ProgressStorage):
    """kopf's handler-progress storage for a registry of ``on.event`` handlers only: none is kept.

    kopf records the progress of change handlers and daemons (retries, delays) in annotations or
    status; event handlers have none. The default storage still cleans kopf's stanzas out of every
    event's essence and touches a dummy annotation on every patch kopf applies: per-event work
    for nothing here (4 to 5 % of the operator's CPU under py-spy in ``bench/operator_bench.py``).
    """

    def fetch(self, *, key: kopf.HandlerId, body: kopf.Body) -> kopf.ProgressRecord | None:
        return None

    def store(
        self, *, key: kopf.HandlerId, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch
    ) -> None:
        return None

    def purge(self, *, key: kopf.HandlerId, body: kopf.Body, patch: kopf.Patch) -> None:
        return None

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        return None

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        return essence


def only_event_handlers(registry: kopf.OperatorRegistry) -> bool:
    """Whether ``registry`` has no change, daemon or timer handlers (those read the diff base)."""
    return not registry._changing.get_all_handlers() and not registry._spawning.get_all_handlers()


def build_registry(operator: Operator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our own Events tell the story; kopf's would duplicate them
        settings.scanning.disabled = True  # our CRDs are installed before the operator starts
        settings.watching.server_timeout = 60
        settings.watching.client_timeout = 90
        settings.networking.request_timeout = 30
        settings.persistence.finalizer = "kubepilot.io/kopf"
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.persistence.progress_storage = NoProgressStorage()
        await operator.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await operator.stop()

    for plural in KIND_BY_PLURAL:
        _watch(registry, operator, GROUP, VERSION, plural, labels=None)
    for group, version, plural in CHILD_RESOURCES:
        _watch(
            registry, operator, group, version, plural, labels={"app.kubernetes.io/managed-by": MANAGED_BY}
        )
    if not only_event_handlers(registry):  # NoDiffBase would hide every change from them
        raise RuntimeError(
            "a change or daemon handler needs kopf's diff base and progress storage: "
            "drop NoDiffBase and NoProgressStorage"
        )
    return registry


def _watch(
    registry: kopf.OperatorRegistry,
    operator: Operator,
    group: str,
    version: str,
    plural: str,
    labels: dict[str, str] | None,
) -> None:
    # async: kopf runs it on the event loop, where the work queue lives (a sync handler would run
    # in a worker thread and touch the asyncio queue from outside its loop).
    async def on_event(**kwargs: Any) -> None:
        event = kwargs["event"]
        body = event.get("object")
        if body is not None:
            operator.observe(plural, str(event.get("type") or "ADDED"), dict(body))

    kopf.on.event(group, version, plural, registry=registry, labels=labels)(on_event)
