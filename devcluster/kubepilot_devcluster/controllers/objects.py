"""Helpers shared by the workload controllers: owner references, pods from templates, selectors, hashes."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TERMINAL_PHASES = ("Succeeded", "Failed")


def now_iso() -> str:
    """The current time in Kubernetes' RFC 3339 form."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: JsonObject) -> JsonObject:
    metadata: JsonObject = obj.setdefault("metadata", {})
    return metadata


def uid_of(obj: JsonObject) -> str:
    return str(meta(obj).get("uid", ""))


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SAFE_ALPHABET) for _ in range(length))


def template_hash(template: JsonObject) -> str:
    """A stable short hash of a pod template (the pod-template-hash / controller-revision-hash label)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True, separators=(",", ":")).encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:10])


def owner_reference(owner: JsonObject, api_version: str, kind: str) -> JsonObject:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta(owner)["name"],
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: JsonObject) -> str | None:
    """The uid of the object's controlling owner, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owned_by(objects: list[JsonObject], owner: JsonObject) -> list[JsonObject]:
    owner_uid = uid_of(owner)
    return [o for o in objects if controller_uid(o) == owner_uid]


def pod_from_template(
    owner: JsonObject,
    api_version: str,
    kind: str,
    name: str,
    extra_labels: dict[str, str] | None = None,
    extra_annotations: dict[str, str] | None = None,
) -> JsonObject:
    """A Pod body built from ``owner.spec.template``, controlled by the owner."""
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template_meta = template.get("metadata") or {}
    labels = dict(template_meta.get("labels") or {}) | (extra_labels or {})
    annotations = dict(template_meta.get("annotations") or {}) | (extra_annotations or {})
    pod_meta: JsonObject = {
        "name": name,
        "namespace": meta(owner).get("namespace"),
        "labels": labels,
        "ownerReferences": [owner_reference(owner, api_version, kind)],
    }
    if annotations:
        pod_meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}


def is_active(pod: JsonObject) -> bool:
    """Not finished and not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in TERMINAL_PHASES and not meta(pod).get("deletionTimestamp")


def is_ready(pod: JsonObject) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _match_expression(labels: dict[str, str], expr: JsonObject) -> bool:
    key, operator = str(expr.get("key")), str(expr.get("operator"))
    values = [str(v) for v in expr.get("values") or []]
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False


def selector_matches(selector: JsonObject | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions); an empty or missing selector matches nothing."""
    if not selector:
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    return all(labels.get(k) == v for k, v in match_labels.items()) and all(
        _match_expression(labels, e) for e in expressions
    )


def map_selector_matches(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    """A Service-style selector (plain map); empty matches nothing."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def condition(kind: str, status: bool, reason: str, message: str, now: str) -> JsonObject:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def merge_conditions(existing: list[JsonObject], wanted: list[JsonObject]) -> list[JsonObject]:
    """Replace conditions by type, keeping lastTransitionTime when the status did not change."""
    by_type = {str(c.get("type")): c for c in existing}
    for new in wanted:
        old = by_type.get(str(new["type"]))
        if old is not None and old.get("status") == new["status"] and old.get("reason") == new.get("reason"):
            continue
        if old is not None and old.get("status") == new["status"]:
            new = new | {"lastTransitionTime": old.get("lastTransitionTime", new["lastTransitionTime"])}
        by_type[str(new["type"])] = new
    return list(by_type.values())


def status_changed(obj: JsonObject, new_status: JsonObject) -> bool:
    """Whether writing ``new_status`` would change anything (avoids endless watch → write loops)."""
    current = obj.get("status") or {}
    return any(current.get(k) != v for k, v in new_status.items())
