"""Fixtures for the operator tests: one devcluster with our CRDs, storage folders, the operator."""

from __future__ import annotations

from kubepilot_devcluster.testing import devcluster, kube_api
from tests.operator.harness import crds
from tests.operator.stack_fixtures import hub, objects, operator, storage, tiny_sd

__all__ = ["crds", "devcluster", "hub", "kube_api", "objects", "operator", "storage", "tiny_sd"]
