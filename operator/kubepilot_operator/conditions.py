"""metav1.Condition bookkeeping: one place that keeps lastTransitionTime when nothing changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubepilot_api.common import now

Condition = dict[str, Any]


def timestamp(moment: datetime | None = None) -> str:
    """A Kubernetes timestamp (RFC 3339, UTC, seconds)."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConditionSet:
    """The conditions of one status being computed, starting from those already stored.

    ``set`` records a condition; its ``lastTransitionTime`` is kept when ``status`` is unchanged,
    so a pass that changes nothing writes nothing. Conditions not set in this pass are kept.
    """

    def __init__(self, existing: list[Condition] | None, generation: int) -> None:
        self._by_type: dict[str, Condition] = {c["type"]: dict(c) for c in existing or [] if "type" in c}
        self._generation = generation

    def set(self, type_: str, status: bool | None, reason: str, message: str = "") -> None:
        value = "Unknown" if status is None else ("True" if status else "False")
        old = self._by_type.get(type_)
        changed = old is None or old.get("status") != value
        self._by_type[type_] = {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message[:32768],
            "lastTransitionTime": timestamp() if changed else old["lastTransitionTime"],  # type: ignore[index]
            "observedGeneration": self._generation,
        }

    def remove(self, type_: str) -> None:
        self._by_type.pop(type_, None)

    def get(self, type_: str) -> Condition | None:
        return self._by_type.get(type_)

    def is_true(self, type_: str) -> bool:
        condition = self._by_type.get(type_)
        return condition is not None and condition.get("status") == "True"

    def to_list(self) -> list[Condition]:
        return sorted(self._by_type.values(), key=lambda c: str(c["type"]))
