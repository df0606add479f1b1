"""The latest progress report of each workload, between the intake and the reconcilers.

Last value wins (reports carry absolute progress), stale sequences are dropped, and
acknowledgements are accumulated until a status write has recorded them: coalescing a burst of
reports down to one status write must not lose the ``acks`` of the reports in between.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from kubepilot_api.workers.progress import ActionAck, AnyReport
from kubepilot_operator.workqueue import WorkKey


@dataclass
class _Entry:
    report: AnyReport
    acks: list[ActionAck] = field(default_factory=list)
    subject: str = ""
    """The token subject the report was accepted under (a GenerationJob's attempt changes it)."""


class ReportStore:
    """Latest report and pending acks per workload key; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[WorkKey, _Entry] = {}

    def put(self, key: WorkKey, report: AnyReport, subject: str = "") -> bool:
        """Store a report; False when it is older than the one held (and so dropped)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.subject == subject and _stale(report, entry.report):
                entry.acks.extend(report.acks)
                return False
            acks = [*(entry.acks if entry and entry.subject == subject else []), *report.acks]
            self._entries[key] = _Entry(report, acks, subject)
            return True

    def latest(self, key: WorkKey, subject: str | None = None) -> AnyReport | None:
        """The latest report; with ``subject``, only one accepted under that subject."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (subject is not None and entry.subject != subject):
                return None
            return entry.report

    def acks(self, key: WorkKey) -> list[ActionAck]:
        with self._lock:
            entry = self._entries.get(key)
            return list(entry.acks) if entry else []

    def recorded(self, key: WorkKey, acks: list[ActionAck]) -> None:
        """The status now holds these acks: forget them."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.acks = [a for a in entry.acks if a not in acks]

    def forget(self, key: WorkKey) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def acked_nonces(self, key: WorkKey) -> set[tuple[str, str]]:
        with self._lock:
            entry = self._entries.get(key)
            return {(a.name, a.nonce) for a in entry.acks} if entry else set()


def _stale(new: AnyReport, held: AnyReport) -> bool:
    """An older report of the same worker process, delivered late.

    Each worker process numbers its reports from 1, so a lower sequence alone does not make a
    report old: after a held final report, or with a later timestamp, it is a new process (a
    retried Job pod, a restarted service) starting over.
    """
    if new.final or held.final:
        return False
    return new.sequence < held.sequence and new.time <= held.time
