"""``kubepilot operator``: run the operator against the cluster in use (in-cluster or $KUBECONFIG)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from pathlib import Path

import kopf

from kubepilot_operator.app import Operator
from kubepilot_operator.handlers import WATCHED, build_registry
from kubepilot_operator.kube import Kube, api_client_from_environment
from kubepilot_operator.settings import load_settings


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubepilot operator", description=__doc__)
    parser.add_argument(
        "--settings", default=None, help="settings YAML (default: $KUBEPILOT_OPERATOR_SETTINGS)"
    )
    parser.add_argument(
        "--namespace", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


RECORD_ENV = "KUBEPILOT_OPERATOR_RECORD_API_USE"
"""A file to write every (group, resource, verb) the operator used, on exit: the RBAC test reads it."""


def record_api_use(operator: Operator, path: str) -> None:
    used = set(operator.api.used)
    # kopf's watches: a LIST then a WATCH of every watched resource.
    for group, _version, plural in WATCHED:
        used.update({(group, plural, "list"), (group, plural, "watch")})
    Path(path).write_text(json.dumps(sorted(used)))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kopf.objects", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = load_settings(args.settings)
    if args.namespace:
        settings.namespaces = list(args.namespace)
    operator = Operator(settings, Kube(api_client_from_environment()))
    registry = build_registry(operator)
    liveness = f"http://0.0.0.0:{settings.healthPort}/healthz" if settings.healthPort else None
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not settings.namespaces,
                namespaces=settings.namespaces,
                liveness_endpoint=liveness,
            )
        )
    finally:
        if os.environ.get(RECORD_ENV):
            record_api_use(operator, os.environ[RECORD_ENV])
    return 0
