"""Durable state in ``--data-dir``: a snapshot plus an append-only journal of later changes.

Each write appends one JSON line to ``journal.jsonl`` and flushes it to the OS, so even a killed
process keeps every acknowledged write. On start the snapshot is loaded, the journal replayed, and
a fresh snapshot written (temp file, fsync, atomic rename) before the journal is truncated; the same
happens on clean shutdown with an fsync.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from kubepilot_devcluster.apiserver.store import ObjectStore, StorageKey

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]

SNAPSHOT = "state.json"
JOURNAL = "journal.jsonl"
# After this many journal lines the state is snapshotted again, bounding the journal and restart time.
COMPACT_AFTER = 50_000


class Persistence:
    """Keeps an :class:`ObjectStore` in a data directory."""

    def __init__(self, data_dir: Path, store: ObjectStore) -> None:
        self._dir = data_dir
        self._store = store
        self._journal: IO[str] | None = None
        self._journal_lines = 0

    def open(self) -> None:
        """Load the saved state into the store, compact it, and start journaling writes."""
        self._dir.mkdir(parents=True, exist_ok=True)
        resource_version = self._load_snapshot()
        resource_version = max(resource_version, self._replay_journal())
        self._store.finish_loading(resource_version)
        self.snapshot()
        self._journal = (self._dir / JOURNAL).open("a", encoding="utf-8")
        self._store.journal = self._append

    def close(self) -> None:
        """Write a final snapshot (fsynced) and stop journaling."""
        self._store.journal = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.snapshot()

    def snapshot(self) -> None:
        objects = [
            {"g": storage[0], "r": storage[1], "o": obj}
            for storage in self._store.storages()
            for obj in self._store.list(storage)
        ]
        payload = {"resourceVersion": self._store.resource_version, "objects": objects}
        temp = self._dir / f"{SNAPSHOT}.tmp"
        with temp.open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(self._dir / SNAPSHOT)
        # The snapshot now holds everything the journal said: start it afresh.
        self._journal_lines = 0
        if self._journal is not None:
            self._journal.seek(0)
            self._journal.truncate(0)
        else:
            (self._dir / JOURNAL).write_text("", encoding="utf-8")

    def _append(self, op: str, storage: StorageKey, obj: JsonObject) -> None:
        if self._journal is None:
            return
        self._journal.write(json.dumps({"op": op, "g": storage[0], "r": storage[1], "o": obj}) + "\n")
        self._journal.flush()
        self._journal_lines += 1
        if self._journal_lines >= COMPACT_AFTER:
            self.snapshot()

    def _load_snapshot(self) -> int:
        path = self._dir / SNAPSHOT
        if not path.exists():
            return 0
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise RuntimeError(f"cannot read the devcluster snapshot {path}: {error}") from error
        for entry in payload.get("objects", []):
            self._store.load((entry["g"], entry["r"]), entry["o"])
        return int(payload.get("resourceVersion", 0))

    def _replay_journal(self) -> int:
        path = self._dir / JOURNAL
        if not path.exists():
            return 0
        highest = 0
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    entry = json.loads(line)
                except ValueError:
                    # A torn last line from a killed process: everything before it is intact.
                    log.warning("ignoring a torn journal line %d in %s", number, path)
                    break
                storage = (entry["g"], entry["r"])
                obj = entry["o"]
                meta = obj["metadata"]
                version = int(meta["resourceVersion"])
                highest = max(highest, version)
                if entry["op"] == "put":
                    self._store.load(storage, obj)
                else:
                    self._store.unload(storage, meta.get("namespace", ""), meta["name"], version)
        return highest
