"""An empty kopf operator: the baseline that ``bench/operator_bench.py`` measures the operator against.

It is configured the way ``kubepilot operator`` configures kopf (standalone, namespaced, the same
login, no kopf Events, no CRD scanning, the same watch timeouts, the same empty diff base as
``kubepilot_operator.handlers.NoDiffBase``, copied so that the baseline imports nothing of the
operator) and registers one synchronous
``on.event`` handler for GenerationJobs, the shape of the operator's own handlers. The handler does
no work: it writes ``<name> <CLOCK_MONOTONIC seconds>`` to stdout the first time it sees an object,
so the bench can tell when each object reached an operator that does nothing with it.

    KUBECONFIG=... .venv/bin/python bench/empty_kopf_operator.py --namespace NS
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import kopf

GROUP, VERSION, PLURAL = "kubepilot.io", "v1alpha1", "generationjobs"


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator's ``NoDiffBase``: with ``on.event`` handlers only, kopf's diff base is never read."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    seen: set[str] = set()
    lock = threading.Lock()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.scanning.disabled = True
        settings.watching.server_timeout = 60
        settings.watching.client_timeout = 90
        settings.networking.request_timeout = 30
        settings.persistence.diffbase_storage = NoDiffBase()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def on_event(**kwargs: Any) -> None:
        arrived = time.monotonic()
        body = kwargs["event"].get("object") or {}
        name = str((body.get("metadata") or {}).get("name", ""))
        with lock:
            if name in seen:
                return
            seen.add(name)
            sys.stdout.write(f"{name} {arrived:.6f}\n")
            sys.stdout.flush()

    return registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", action="append", required=True, help="watch this namespace")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kopf.objects", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            registry=build_registry(),
            standalone=True,
            clusterwide=False,
            namespaces=list(args.namespace),
            liveness_endpoint=None,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
