"""The operator's Kubernetes permissions: one table, least privilege, rendered into the chart.

``kubepilot rbac generate`` writes :data:`RULES` into the Helm chart (the ClusterRole reads the
file) and a test fails when the two differ, so a handler that needs a new verb changes this table
and nothing else. Worker pods get no rights at all: the operator gives them a ServiceAccount of
their own and binds nothing to it (DESIGN §3, §4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GROUP = "kubepilot.io"
CORE = ""
KINDS = ("modelpulls", "trainingruns", "generationjobs", "serviceinstances")


@dataclass(frozen=True)
class Rule:
    """One ClusterRole rule: these verbs on these resources of one API group."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    # kopf lists and watches the four kinds into the operator's cache.
    Rule(GROUP, KINDS, ("list", "watch")),
    # ModelPulls carry the files finalizer; ServiceInstances are stopped by culling and the
    # schedule, and started for a GenerationJob that asks for it.
    Rule(GROUP, ("modelpulls", "serviceinstances"), ("patch",)),
    # Finished GenerationJobs with ttlSecondsAfterFinished are deleted; those that do not retain
    # their images carry the files finalizer.
    Rule(GROUP, ("generationjobs",), ("patch", "delete")),
    # Status is a separate subresource; the operator is its only writer (merge patches).
    Rule(GROUP, tuple(f"{kind}/status" for kind in KINDS), ("patch",)),
    # Children point at their CR with blockOwnerDeletion, which needs update on the owner's finalizers.
    Rule(GROUP, tuple(f"{kind}/finalizers" for kind in KINDS), ("update",)),
    # ModelPulls, TrainingRuns and one-shot GenerationJobs run as Jobs: suspended to pause, deleted
    # to cancel; read back when a create finds one already there.
    Rule("batch", ("jobs",), ("get", "list", "watch", "create", "patch", "delete")),
    # A ServiceInstance is a Deployment (replicas 0 or 1) ...
    Rule("apps", ("deployments",), ("get", "list", "watch", "create", "patch")),
    # ... with a Service; multi-pod TrainingRuns get one in front of rank 0. Garbage collection
    # removes both with their owner, so no delete.
    Rule(CORE, ("services",), ("get", "create")),
    # The intake key, a token-and-config Secret per workload (DESIGN §4), and the credentials
    # Secret a ModelPull names (checked to exist, never read by value); by name, no list or watch.
    Rule(CORE, ("secrets",), ("get", "create", "patch")),
    # Pod phases, exit codes and termination messages are how a workload's outcome is read.
    Rule(CORE, ("pods",), ("list", "watch")),
    # The rights-less kubepilot-worker ServiceAccount is created in each namespace that runs workloads.
    Rule(CORE, ("serviceaccounts",), ("get", "create")),
    # The shutdown schedule is a ConfigMap the operator reads and marks once it has acted on it.
    Rule(CORE, ("configmaps",), ("get", "patch")),
    # Events on the CR for every transition.
    Rule(CORE, ("events",), ("create",)),
    # Leader election among operator replicas holds a Lease.
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update")),
)


def policy_rules(rules: Iterable[Rule] = RULES) -> list[dict[str, Any]]:
    """The rules as ``rbac.authorization.k8s.io/v1`` PolicyRule dicts, in table order."""
    return [
        {"apiGroups": [rule.api_group], "resources": list(rule.resources), "verbs": list(rule.verbs)}
        for rule in rules
    ]


def cluster_role(name: str) -> dict[str, Any]:
    """A ClusterRole granting exactly :data:`RULES`."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": policy_rules(),
    }


def covers(rules: Iterable[Rule], api_group: str, resource: str, verb: str) -> bool:
    """Whether ``rules`` allow ``verb`` on ``resource`` (``kind/subresource`` for a subresource).

    Exact matches only: the table holds no wildcards, and a test keeps it that way.
    """
    return any(
        rule.api_group == api_group and resource in rule.resources and verb in rule.verbs for rule in rules
    )
