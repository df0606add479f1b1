"""An empty kopf operator: the baseline that ``bench/operator_bench.py`` measures the operator against.

It is configured the way ``kubepilot operator`` configures kopf (standalone, namespaced, the same
login, no kopf Events, no CRD scanning, the same watch timeouts, the same empty diff base and
progress storage as ``kubepilot_operator.handlers.NoDiffBase`` and ``NoProgressStorage``, copied so
that the baseline imports nothing of the operator) and registers one synchronous ``on.event``
handler for GenerationJobs, the shape of the operator's own handlers. The handler does no work: it
writes ``<name> <CLOCK_MONOTONIC seconds>`` to stdout the first time it sees an object, so the bench
can tell when each object reached an operator that does nothing with it.

With ``--children`` it is the floor instead: the least a kopf operator must do for each new
GenerationJob to meet what the operator's issue asks (a token Secret per workload, a Job owned by
the object, ``status.jobName`` written, the Jobs it owns watched). The Secret and the Job are
created with the official client (plain dicts, no model deserialization, kopf's executor thread
as kopf runs synchronous handlers), the status through kopf's own ``patch``; the status echo and
the Job events reach no-op handlers. It prints ``<name> <seconds>`` when it sees an object first,
as the empty operator does; the bench times the child Job from its own watch.

    KUBECONFIG=... .venv/bin/python bench/empty_kopf_operator.py --namespace NS [--children]
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
from kubernetes import client, config

GROUP, VERSION, PLURAL = "kubepilot.io", "v1alpha1", "generationjobs"
MANAGED = {"app.kubernetes.io/managed-by": "bench-floor"}


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


def _owner(body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GenerationJob",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _secret(body: dict[str, Any]) -> dict[str, Any]:
    name = body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-token", "labels": dict(MANAGED), "ownerReferences": [_owner(body)]},
        "stringData": {"token": f"token-of-{name}"},
    }


def _job(body: dict[str, Any]) -> dict[str, Any]:
    """A one-container Job of the shape a generator Job needs: its config, token and volume."""
    name = body["metadata"]["name"]
    labels = {**MANAGED, "kubepilot.io/generationjob": name}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-gen", "labels": labels, "ownerReferences": [_owner(body)]},
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "generator",
                            "image": "kubepilot/generator:bench",
                            "command": ["kubepilot-generator"],
                            "env": [
                                {"name": "KUBEPILOT_JOB", "value": name},
                                {"name": "KUBEPILOT_PROGRESS_URL", "value": "http://127.0.0.1:1/progress"},
                                {"name": "KUBEPILOT_TOKEN_FILE", "value": "/var/run/kubepilot/token"},
                            ],
                            "volumeMounts": [
                                {"name": "token", "mountPath": "/var/run/kubepilot", "readOnly": True},
                                {"name": "models", "mountPath": "/models", "readOnly": True},
                            ],
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ],
                    "volumes": [
                        {"name": "token", "secret": {"secretName": f"{name}-token"}},
                        {"name": "models", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _register_children(registry: kopf.OperatorRegistry, seen: set[str], lock: threading.Lock) -> None:
    """The floor: a Secret and a Job for each new GenerationJob, its status written, Jobs watched."""
    config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.ApiClient()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def on_event(event: kopf.RawEvent, patch: kopf.Patch, **_: Any) -> None:
        arrived = time.monotonic()
        body: dict[str, Any] = dict(event.get("object") or {})
        name = str((body.get("metadata") or {}).get("name", ""))
        if event.get("type") == "DELETED" or (body.get("status") or {}).get("jobName"):
            return  # the status echo of the patch below, or gone
        with lock:
            if name in seen:
                return
            seen.add(name)
        sys.stdout.write(f"{name} {arrived:.6f}\n")
        sys.stdout.flush()
        namespace = body["metadata"]["namespace"]
        creates: tuple[tuple[Any, dict[str, Any]], ...] = (  # the client takes plain dicts too
            (core.create_namespaced_secret, _secret(body)),
            (batch.create_namespaced_job, _job(body)),
        )
        for create, child in creates:
            response: Any = create(namespace, child, _preload_content=False)
            response.read()
            response.release_conn()
        patch.status["jobName"] = f"{name}-gen"
        patch.status["phase"] = "Pending"

    @kopf.on.event("batch", "v1", "jobs", registry=registry, labels=MANAGED)
    def on_job(**_: Any) -> None:
        return None


class NoProgressStorage(kopf.ProgressStorage):
    """The operator's ``NoProgressStorage``: event handlers keep no progress in kopf's storage."""

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


def build_registry(children: bool = False) -> kopf.OperatorRegistry:
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
        settings.persistence.progress_storage = NoProgressStorage()

    if children:
        _register_children(registry, seen, lock)
        return registry

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
    parser.add_argument("--children", action="store_true", help="the floor: create a Secret and a Job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kopf.objects", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            registry=build_registry(children=args.children),
            standalone=True,
            clusterwide=False,
            namespaces=list(args.namespace),
            liveness_endpoint=None,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
