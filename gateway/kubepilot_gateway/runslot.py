"""One active TrainingRun at a time per "slot", without races, for profiles whose product runs
one training process at a time (ControlPilot's TrainPilot and diffusion-pipe, OneTrainer).

A slot's runs are named ``<prefix>-1``, ``<prefix>-2``, ... A start checks the cache for an active
run, then creates the next number. Concurrent starts all try the same name and the API server
lets exactly one create succeed: a loser reads that run back and answers "already running" while
it is active, or tries the next number when it had finished unseen. Names are never reused (a
re-created object must not meet its predecessor's reports or children), history is kept, and
finished runs beyond a limit are pruned after each start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from kubepilot_gateway.kube import AlreadyExists, CrStore, KubeError, NotFound, ResourceType

JsonObject = dict[str, Any]

TERMINAL_PHASES = frozenset({"Succeeded", "Failed", "Stopped"})
MAX_NAME_TRIES = 5


class SlotBusy(Exception):
    """A run of the slot is active: the start is refused."""


def phase(run: JsonObject | None) -> str:
    return str(((run or {}).get("status") or {}).get("phase") or "")


def is_finished(run: JsonObject) -> bool:
    """No longer holds the slot: a terminal phase, or stopped before it ever got a Job."""
    if phase(run) in TERMINAL_PHASES:
        return True
    stopped = bool((run.get("spec") or {}).get("stop"))
    never_started = not ((run.get("status") or {}).get("jobName"))
    return stopped and never_started and phase(run) in ("", "Pending")


def is_active(run: JsonObject | None) -> bool:
    """A run that exists, is not being deleted, and has not finished: the product's "running"."""
    if run is None or (run.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return not is_finished(run)


def run_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index}"


def run_index(prefix: str, run: JsonObject) -> int | None:
    """The run's number in its slot; None for an object that is not one of the slot's runs."""
    name = str((run.get("metadata") or {}).get("name") or "")
    suffix = name.removeprefix(f"{prefix}-")
    if suffix == name or not suffix.isdigit() or suffix.startswith("0"):
        return None
    return int(suffix)


def slot_runs(prefix: str, runs: list[JsonObject]) -> list[tuple[int, JsonObject]]:
    """The slot's runs by number, oldest first."""
    numbered = [(run_index(prefix, run), run) for run in runs]
    return sorted(((i, r) for i, r in numbered if i is not None), key=lambda item: item[0])


def current_run(prefix: str, runs: list[JsonObject]) -> JsonObject | None:
    """The slot's newest run: the one the product calls its training process."""
    numbered = slot_runs(prefix, runs)
    return numbered[-1][1] if numbered else None


def prunable(prefix: str, runs: list[JsonObject], keep: int) -> list[str]:
    """Names of finished runs beyond the newest ``keep`` finished ones (never an active run)."""
    finished = [run for _, run in slot_runs(prefix, runs) if is_finished(run)]
    return [str(run["metadata"]["name"]) for run in finished[: max(0, len(finished) - keep)]]


async def start_next(
    store: CrStore,
    resource: ResourceType,
    prefix: str,
    runs: Callable[[], list[JsonObject]],
    body_for: Callable[[str], JsonObject],
    *,
    keep_finished: int,
) -> JsonObject:
    """Create the slot's next run from ``body_for(name)``; ``SlotBusy`` while one is active.

    ``runs`` lists the slot's objects from the cache (read again for pruning). API server errors
    other than the name being taken reach the caller, which answers them in its profile's shape.
    """
    numbered = slot_runs(prefix, runs())
    if any(is_active(run) for _, run in numbered):
        raise SlotBusy(prefix)
    index = numbered[-1][0] + 1 if numbered else 1
    for _ in range(MAX_NAME_TRIES):
        name = run_name(prefix, index)
        try:
            created = await store.create(resource, body_for(name))
        except AlreadyExists:
            pass
        else:
            for old in prunable(prefix, runs(), keep_finished):
                # Best effort: history beyond the limit; a failure here must not fail the start.
                with contextlib.suppress(KubeError):
                    await store.delete(resource, old, missing_ok=True)
            return created
        # Taken: by a concurrent start (active: we lost), or a run our cache has not seen yet.
        try:
            existing = await store.get(resource, name)
        except NotFound:
            continue  # deleted meanwhile: the name is free again
        if is_active(existing):
            raise SlotBusy(prefix)
        index += 1
    raise SlotBusy(prefix)
