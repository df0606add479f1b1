"""Container and pod status bookkeeping: container states, conditions and the pod phase."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JsonObject = dict[str, Any]


def now_iso() -> str:
    """The current time in Kubernetes' RFC 3339 form (seconds precision, Z suffix)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    """The kubelet's view of one container: its current state, last termination and restart count."""

    name: str
    image: str
    state: JsonObject = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JsonObject = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    # True once the container has exited and will not be restarted.
    final: bool = False
    # True once the startupProbe (if any) of the current run succeeded.
    startup_passed: bool = False
    container_id: str = ""

    def set_waiting(self, reason: str, message: str = "") -> bool:
        """Enter the waiting state; False when the record was already waiting for the same reason."""
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        changed = state != self.state or self.ready
        self.state = state
        self.ready = False
        return changed

    def set_running(self, pid: int) -> None:
        self.container_id = f"process://{pid}"
        self.state = {"running": {"startedAt": now_iso()}}
        self.started = True
        self.startup_passed = False
        self.final = False

    def set_terminated(self, exit_code: int, reason: str, message: str, started_at: str) -> None:
        terminated: JsonObject = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": now_iso(),
            "containerID": self.container_id,
        }
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        self.ready = False

    def begin_restart(self, reason: str, message: str) -> None:
        """Move the terminated state to lastState and wait (CrashLoopBackOff) before the next run."""
        self.last_state = self.state
        self.restart_count += 1
        self.set_waiting(reason, message)

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def to_status(self) -> JsonObject:
        status: JsonObject = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running and self.startup_passed,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def termination_reason(exit_code: int) -> str:
    """Completed for 0, Error otherwise (the devcluster cannot tell an OOM kill from another SIGKILL)."""
    return "Completed" if exit_code == 0 else "Error"


def pod_phase(init: list[ContainerRecord], main: list[ContainerRecord], init_failed: bool) -> str:
    """The pod phase Kubernetes would report for these container records."""
    if init_failed:
        return "Failed"
    if any(not c.final or c.exit_code != 0 for c in init):
        return "Pending"
    if main and all(c.final for c in main):
        return "Succeeded" if all(c.exit_code == 0 for c in main) else "Failed"
    if any(c.started for c in main):
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, since: dict[str, tuple[bool, str]], reason: str = "") -> JsonObject:
    previous = since.get(kind)
    if previous is None or previous[0] != ok:
        since[kind] = (ok, now_iso())
    cond: JsonObject = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": since[kind][1],
    }
    if reason and not ok:
        cond["reason"] = reason
    return cond


def pod_conditions(
    phase: str, init: list[ContainerRecord], main: list[ContainerRecord], since: dict[str, tuple[bool, str]]
) -> list[JsonObject]:
    """PodScheduled, Initialized, ContainersReady and Ready; ``since`` keeps transition times stable."""
    initialized = all(c.final and c.exit_code == 0 for c in init)
    ready = bool(main) and all(c.ready for c in main) and phase == "Running"
    not_ready_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    return [
        _condition("PodScheduled", True, since),
        _condition("Initialized", initialized, since, "ContainersNotInitialized"),
        _condition("ContainersReady", ready, since, not_ready_reason),
        _condition("Ready", ready, since, not_ready_reason),
    ]
