"""Label and field selectors, parsed from the query string the way the real server reads them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubepilot_devcluster.apiserver.errors import bad_request

JsonObject = dict[str, Any]
Predicate = Callable[[JsonObject], bool]

_SET_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` value lists."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    equality = _EQ_TERM.match(term)
    if equality:
        key, op, value = equality.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    set_based = _SET_TERM.match(term)
    if set_based:
        negated, key, op, values_text = set_based.groups()
        if op is None:
            if negated:
                return lambda labels: key not in labels
            return lambda labels: key in labels
        if negated:
            raise bad_request(f"unable to parse requirement: {term!r}")
        values = {v.strip() for v in values_text.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    raise bad_request(f"unable to parse requirement: found '{term.strip()}', expected a label selector term")


def label_selector(selector: str | None) -> Predicate | None:
    """A predicate over objects for ``labelSelector`` (=, ==, !=, in, notin, exists, !exists)."""
    if not selector:
        return None
    checks = [_label_term(term) for term in _split_terms(selector)]

    def matches(obj: JsonObject) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return matches


def _field_value(obj: JsonObject, path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    return str(current)


# Field paths each kind may select on besides metadata.name and metadata.namespace.
_SELECTABLE: dict[str, set[str]] = {
    "Pod": {"status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "status.podIP"},
    "Event": {
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "type",
        "source",
        "regarding.kind",
        "regarding.name",
        "regarding.namespace",
        "regarding.uid",
    },
    "Secret": {"type"},
    "Node": {"spec.unschedulable"},
    "Namespace": {"status.phase"},
    "Job": {"status.successful"},
}


def field_selector(selector: str | None, kind: str, extra: set[str] | None = None) -> Predicate | None:
    """A predicate for ``fieldSelector``; unsupported fields get 400 like the real server."""
    if not selector:
        return None
    allowed = {"metadata.name", "metadata.namespace"} | _SELECTABLE.get(kind, set()) | (extra or set())
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        match = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = match.groups()
        if path not in allowed:
            raise bad_request(f"field label not supported: {path}")
        checks.append((path, op == "!=", value))

    def matches(obj: JsonObject) -> bool:
        for path, negated, value in checks:
            actual = _field_value(obj, path)
            if (actual == value) == negated:
                return False
        return True

    return matches
