"""Deterministic names and labels of child objects.

A child's name is a function of its owner alone, so an operator restarted mid-flight finds the
children it made instead of making new ones. Names stay DNS labels of at most 63 characters: a
long owner name is cut and a hash of the full name keeps two long names apart.
"""

from __future__ import annotations

import hashlib
import re

from kubepilot_api.constants import KUEUE_QUEUE_LABEL, LABEL_COMPONENT, LABEL_KIND, LABEL_NAME

MAX_NAME = 63
HASH_LENGTH = 8
MANAGED_BY = "kubepilot-operator"
FINALIZER = "kubepilot.io/files"
"""Held by ModelPulls until their files are removed (or retained), and by GenerationJobs with
``retainFilesOnDelete: false`` until their images are removed."""
RESTART_ANNOTATION = "kubepilot.io/restartedAt"
"""Pod-template annotation whose change rolls a Deployment, as ``kubectl rollout restart`` does."""
ACTION_PARAMS_SUFFIX = "-params"
"""``kubepilot.io/action-<name>-params``: optional JSON parameters of an action."""


def short_hash(text: str, length: int = HASH_LENGTH) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def child_name(owner: str, suffix: str, uid: str = "") -> str:
    """``<owner>-<suffix>``, or ``<owner cut>-<hash>-<suffix>`` when that would exceed 63 characters.

    The hash covers the owner's full name (and uid when given), so cut names never collide.
    """
    plain = f"{owner}-{suffix}"
    if len(plain) <= MAX_NAME:
        return plain
    digest = short_hash(f"{owner}/{uid}")
    room = MAX_NAME - len(suffix) - len(digest) - 2
    return f"{owner[:room].rstrip('-.')}-{digest}-{suffix}"


def service_name(owner: str, suffix: str, uid: str = "") -> str:
    """A Service name: a DNS-1035 label (letters first, no dots), which a CR name need not be.

    A name that must change to qualify carries a hash of the original, so two CRs whose names
    differ only in a dot or a leading digit never share a Service.
    """
    name = child_name(owner, suffix, uid)
    if re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        return name
    cleaned = re.sub(r"[^a-z0-9-]", "-", owner.lower())
    digest = short_hash(f"{owner}/{uid}")
    room = MAX_NAME - len(suffix) - len(digest) - 4
    return f"s-{cleaned[:room].strip('-')}-{digest}-{suffix}"


def label_value(name: str) -> str:
    """A label value (at most 63 characters) that stays unique for long names."""
    if len(name) <= MAX_NAME:
        return name
    return f"{name[: MAX_NAME - HASH_LENGTH - 1].rstrip('-._')}-{short_hash(name)}"


def labels(
    kind: str, name: str, component: str, owner_labels: dict[str, str] | None = None
) -> dict[str, str]:
    """Labels every child carries: the standard app.kubernetes.io set and ours."""
    result = {
        "app.kubernetes.io/name": "kubepilot",
        "app.kubernetes.io/instance": label_value(name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_KIND: kind,
        LABEL_NAME: label_value(name),
        f"kubepilot.io/{kind.lower()}": label_value(name),
        LABEL_COMPONENT: component,
    }
    if owner_labels and KUEUE_QUEUE_LABEL in owner_labels:
        result[KUEUE_QUEUE_LABEL] = owner_labels[KUEUE_QUEUE_LABEL]
    return result


def selector(kind: str, name: str, component: str) -> dict[str, str]:
    """The labels that pick one owner's pods (a subset of :func:`labels`, stable across versions)."""
    return {LABEL_KIND: kind, LABEL_NAME: label_value(name), LABEL_COMPONENT: component}
