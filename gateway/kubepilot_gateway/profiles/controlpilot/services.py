"""ControlPilot's services, translated to and from ServiceInstances. Pure: no FastAPI, no I/O.

ControlPilot manages nine supervisor programs by name. Each one (but ``controlpilot``, the
gateway itself) is a ServiceInstance of the same name in the gateway's namespace, labelled
``kubepilot.io/profile=controlpilot`` when this profile created it:

============  =================  ==================  ==============
name          display            serviceType         update source
============  =================  ==================  ==============
jupyter       Jupyter Lab        jupyter             image
code-server   VS Code Server     code-server         image
comfy         Comfy UI           comfyui             git
kohya         Kohya              kohya-ui            git
diffpipe      TensorBoard        tensorboard         git
invoke        Invoke AI          invoke              pip
ai-toolkit    AI Toolkit         ai-toolkit          git
controlpilot  ControlPilot       (the gateway)       image
copilot       Copilot Sidecar    copilot             image
============  =================  ==================  ==============

Supervisor state from the ServiceInstance (``status.phase``, read together with ``spec.running``
because the phase lags the desired state until the operator has acted on it):

- no ServiceInstance: ``STOPPED`` (nothing runs; ``start`` creates it);
- being deleted: ``STOPPING``;
- phase ``Error``: ``BACKOFF`` when the Degraded reason is one the kubelet keeps retrying by
  itself (``CrashLoopBackOff``, ``OOMKilled``: the container restarts, as supervisor retries a
  program that exits too quickly), else ``FATAL`` (``ImagePullBackOff``, ``InvalidSpec``,
  ``Unschedulable``, ``ContainerError``, ``Evicted``, ...: a person must act, as for supervisor's
  FATAL);
- ``spec.running: false``: ``STOPPED`` once the phase is ``Stopped`` (or not reported yet),
  else ``STOPPING``;
- ``spec.running: true``: ``RUNNING`` when the phase is ``Running``, else ``STARTING`` (the
  phases ``Starting``, ``Stopped`` and ``Stopping`` and no status at all: the start is under way).

``EXITED`` is not used: ``status.lastExitCode`` survives an ordinary stop (SIGTERM), so it cannot
tell a crash from a stop. ``UNKNOWN`` is for a phase this module does not know.

Updates (CP-04/05) set ``spec.version`` to the target (an image tag or git ref, which the
operator rolls out) and remember the request in the annotation ``kubepilot.io/controlpilot-update``
so any gateway replica renders the same job: ``done`` once ``status.version.installed`` equals the
target, ``error`` when the service goes to phase ``Error`` first, ``running`` until then; a
finished job reads ``idle`` again 30 minutes after it finished, as ControlPilot's jobs expire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from kubepilot_api.conditions import ConditionReason, ConditionType
from kubepilot_api.constants import ACTION_ANNOTATION_PREFIX, API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_api.serviceinstance import ServicePhase, ServiceType

JsonObject = dict[str, Any]

PROFILE_NAME = "controlpilot"
GATEWAY_SERVICE = "controlpilot"
"""The synthetic entry: ControlPilot's own program is the gateway, always running while it answers."""
RESTART_ANNOTATION = f"{ACTION_ANNOTATION_PREFIX}restart"
UPDATE_ANNOTATION = f"{LABEL_PREFIX}controlpilot-update"
UPDATE_JOB_TTL_SECONDS = 30 * 60
"""ControlPilot forgets a finished update job after 30 minutes; so does this rendering."""


class UpdateSource(StrEnum):
    """How ControlPilot identifies a service's version (CP-02 ``source``)."""

    IMAGE = "image"
    PIP = "pip"
    GIT = "git"


class SupervisorState(StrEnum):
    """supervisord's process states, as ControlPilot reports them (upper-case)."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"
    UNKNOWN = "UNKNOWN"


class ServiceAction(StrEnum):
    """``POST /api/services/{name}/{action}``."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"


@dataclass(frozen=True)
class KnownService:
    """One of ControlPilot's nine services."""

    name: str
    display: str
    service_type: ServiceType | None
    """The ServiceInstance's serviceType; None for the gateway itself (no ServiceInstance)."""
    source: UpdateSource

    @property
    def synthetic(self) -> bool:
        return self.service_type is None

    @property
    def update_supported(self) -> bool:
        """ControlPilot updates invoke (pip) and the four git checkouts; the rest come with the image."""
        return self.source is not UpdateSource.IMAGE


KNOWN_SERVICES: tuple[KnownService, ...] = (
    KnownService("jupyter", "Jupyter Lab", ServiceType.JUPYTER, UpdateSource.IMAGE),
    KnownService("code-server", "VS Code Server", ServiceType.CODE_SERVER, UpdateSource.IMAGE),
    KnownService("comfy", "Comfy UI", ServiceType.COMFYUI, UpdateSource.GIT),
    KnownService("kohya", "Kohya", ServiceType.KOHYA_UI, UpdateSource.GIT),
    KnownService("diffpipe", "TensorBoard", ServiceType.TENSORBOARD, UpdateSource.GIT),
    KnownService("invoke", "Invoke AI", ServiceType.INVOKE, UpdateSource.PIP),
    KnownService("ai-toolkit", "AI Toolkit", ServiceType.AI_TOOLKIT, UpdateSource.GIT),
    KnownService(GATEWAY_SERVICE, "ControlPilot", None, UpdateSource.IMAGE),
    KnownService("copilot", "Copilot Sidecar", ServiceType.COPILOT, UpdateSource.IMAGE),
)
"""In ControlPilot's order, which is the order of its lists."""
SERVICE_NAMES: tuple[str, ...] = tuple(service.name for service in KNOWN_SERVICES)
_BY_NAME = {service.name: service for service in KNOWN_SERVICES}

_BACKOFF_REASONS = frozenset({ConditionReason.CRASH_LOOP_BACK_OFF.value, ConditionReason.OOM_KILLED.value})

IMAGE_MANAGED_DETAIL = "Managed by image build"
NOT_INSTALLED_DETAIL = "Not installed"
VERSION_NOT_REPORTED_DETAIL = "Version not reported yet"
LATEST_UNKNOWN_DETAIL = "Latest version unknown"


def known_service(name: str) -> KnownService | None:
    return _BY_NAME.get(name)


# -- reading a ServiceInstance -------------------------------------------------------------------


def _spec(obj: JsonObject) -> JsonObject:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: JsonObject) -> JsonObject:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _condition(obj: JsonObject, condition_type: str) -> JsonObject | None:
    for condition in _status(obj).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == condition_type:
            return condition
    return None


def failure(obj: JsonObject) -> tuple[str, str]:
    """(reason, message) of a failing service: its Degraded condition, else its Available one."""
    for condition_type in (ConditionType.DEGRADED, ConditionType.AVAILABLE):
        condition = _condition(obj, condition_type.value)
        if condition is not None and condition.get("reason"):
            if condition_type is ConditionType.DEGRADED and condition.get("status") != "True":
                continue
            return str(condition.get("reason")), str(condition.get("message") or "")
    return "", ""


def desired_running(obj: JsonObject) -> bool:
    """``spec.running``, with the CRD's default (true)."""
    return bool(_spec(obj).get("running", True))


def autostart(obj: JsonObject | None) -> bool:
    """``spec.autostart`` (CRD default true); no ServiceInstance: nothing starts on its own."""
    if obj is None:
        return False
    return bool(_spec(obj).get("autostart", True))


def supervisor_state(obj: JsonObject | None) -> SupervisorState:
    """The supervisor state ControlPilot shows for a ServiceInstance (see the module docstring)."""
    if obj is None:
        return SupervisorState.STOPPED
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return SupervisorState.STOPPING
    phase = _status(obj).get("phase")
    known = {p.value for p in ServicePhase}
    if phase is not None and phase not in known:
        return SupervisorState.UNKNOWN
    if phase == ServicePhase.ERROR:
        reason, _ = failure(obj)
        return SupervisorState.BACKOFF if reason in _BACKOFF_REASONS else SupervisorState.FATAL
    if not desired_running(obj):
        return SupervisorState.STOPPED if phase in (None, ServicePhase.STOPPED) else SupervisorState.STOPPING
    return SupervisorState.RUNNING if phase == ServicePhase.RUNNING else SupervisorState.STARTING


# -- CP-01 and CP-02 items -----------------------------------------------------------------------


def service_item(service: KnownService, obj: JsonObject | None) -> JsonObject:
    """A CP-01 entry: ``{name, display, state, state_raw, running, autostart}``.

    ``state_raw`` is the word supervisorctl printed, which ControlPilot's web UI reads for its
    badge; here it is the same supervisor word as ``state``.
    """
    if service.synthetic:
        state, start = SupervisorState.RUNNING, True
    else:
        state, start = supervisor_state(obj), autostart(obj)
    return {
        "name": service.name,
        "display": service.display,
        "state": state.value,
        "state_raw": state.value,
        "running": state is SupervisorState.RUNNING,
        "autostart": start,
    }


def _version(obj: JsonObject | None) -> JsonObject:
    version = _status(obj).get("version") if obj is not None else None
    return version if isinstance(version, dict) else {}


def installed_version(obj: JsonObject | None) -> str | None:
    """``status.version.installed``; None when not reported."""
    return str(_version(obj).get("installed") or "") or None


def version_item(
    service: KnownService, obj: JsonObject | None, *, gateway_version: str | None = None
) -> JsonObject:
    """A CP-02 entry: ``{name, display, source, update_supported, installed, latest,
    update_available, detail}`` from ``status.version`` (the gateway's own version for
    ``controlpilot``)."""
    installed: str | None
    latest: str | None = None
    available = False
    if service.synthetic:
        installed = gateway_version or None
    else:
        version = _version(obj)
        installed = installed_version(obj)
        latest = str(version.get("latest") or "") or None
        available = bool(version.get("updateAvailable")) and installed is not None and latest is not None
    if not service.update_supported:
        detail: str | None = IMAGE_MANAGED_DETAIL
    elif obj is None:
        detail = NOT_INSTALLED_DETAIL
    elif installed is None:
        detail = VERSION_NOT_REPORTED_DETAIL
    elif latest is None:
        detail = LATEST_UNKNOWN_DETAIL
    else:
        detail = None
    return {
        "name": service.name,
        "display": service.display,
        "source": service.source.value,
        "update_supported": service.update_supported,
        "installed": installed,
        "latest": latest,
        "update_available": available,
        "detail": detail,
    }


# -- writes --------------------------------------------------------------------------------------


def new_service_instance(
    service: KnownService,
    *,
    running: bool = True,
    autostart: bool | None = None,
    version: str = "",
    annotations: dict[str, str] | None = None,
) -> JsonObject:
    """The ServiceInstance to create for a service that has none yet (not for the gateway itself)."""
    if service.service_type is None:
        raise ValueError(f"{service.name} is the gateway itself and has no ServiceInstance")
    spec: JsonObject = {
        "serviceType": service.service_type.value,
        "displayName": service.display,
        "running": running,
    }
    if autostart is not None:
        spec["autostart"] = autostart
    if version:
        spec["version"] = version
    metadata: JsonObject = {"name": service.name, "labels": {LABEL_PROFILE: PROFILE_NAME}}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": API_VERSION, "kind": "ServiceInstance", "metadata": metadata, "spec": spec}


def running_patch(running: bool) -> JsonObject:
    """Merge patch for start (true) and stop (false)."""
    return {"spec": {"running": running}}


def restart_patch(nonce: str) -> JsonObject:
    """Merge patch for restart: a new restart nonce (the operator rolls the pod), running true."""
    return {"metadata": {"annotations": {RESTART_ANNOTATION: nonce}}, "spec": {"running": True}}


def autostart_patch(enabled: bool) -> JsonObject:
    return {"spec": {"autostart": enabled}}


# -- updates (CP-04, CP-05) ----------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateRequest:
    """What the gateway remembers of an update it started (in ``UPDATE_ANNOTATION``)."""

    target_version: str
    installed_before: str | None
    started_at: float

    def to_annotation(self) -> str:
        return json.dumps(
            {
                "targetVersion": self.target_version,
                "installedBefore": self.installed_before,
                "startedAt": self.started_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_object(cls, obj: JsonObject | None) -> UpdateRequest | None:
        """The request recorded on the ServiceInstance; None when there is none (or it is unreadable)."""
        if obj is None:
            return None
        raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(UPDATE_ANNOTATION)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            target = str(data["targetVersion"])
            before = data.get("installedBefore")
            started = float(data["startedAt"])
        except (ValueError, TypeError, KeyError):
            return None
        return cls(target, str(before) if before else None, started)


def update_target(requested: str | None, obj: JsonObject | None) -> str | None:
    """The version to install: the one asked for, else the latest the service reports."""
    if requested and requested.strip():
        return requested.strip()
    return str(_version(obj).get("latest") or "").strip() or None


def update_patch(request: UpdateRequest) -> JsonObject:
    """Merge patch starting an update: the target in ``spec.version``, the request remembered."""
    return {
        "metadata": {"annotations": {UPDATE_ANNOTATION: request.to_annotation()}},
        "spec": {"version": request.target_version},
    }


def _epoch(timestamp: object) -> float | None:
    if not isinstance(timestamp, str) or not timestamp:
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _last_transition(obj: JsonObject) -> float | None:
    moments = [
        _epoch(condition.get("lastTransitionTime"))
        for condition in _status(obj).get("conditions") or []
        if isinstance(condition, dict)
    ]
    return max((m for m in moments if m is not None), default=None)


def idle_job(name: str) -> JsonObject:
    return {"name": name, "state": "idle"}


def update_job(name: str, obj: JsonObject | None, *, now: float) -> JsonObject:
    """The CP-04/05 job dict for the update recorded on ``obj`` (``{"name", "state": "idle"}`` if none).

    ``state``: ``done`` once ``status.version.installed`` equals the target, ``error`` when the
    service went to phase Error instead, ``running`` otherwise. ``pid`` is always null (no local
    process); ``updated_at`` of a finished job is its latest condition transition.
    """
    request = UpdateRequest.from_object(obj)
    if obj is None or request is None:
        return idle_job(name)
    installed = installed_version(obj)
    phase = _status(obj).get("phase")
    error: str | None = None
    if installed == request.target_version:
        state = "done"
        last_line = f"Installed version: {installed}"
    elif phase == ServicePhase.ERROR:
        state = "error"
        reason, message = failure(obj)
        error = ": ".join(part for part in (reason, message) if part) or "the service failed"
        last_line = error
    else:
        state = "running"
        last_line = f"Waiting for version {request.target_version} (phase {phase or 'Pending'})"
    updated_at = request.started_at
    if state != "running":
        updated_at = max(updated_at, _last_transition(obj) or updated_at)
        if now - updated_at > UPDATE_JOB_TTL_SECONDS:
            return idle_job(name)
    return {
        "name": name,
        "state": state,
        "target_version": request.target_version,
        "pid": None,
        "last_line": last_line,
        "error": error,
        "installed_before": request.installed_before,
        "installed_after": installed if state != "running" else None,
        "rollback_before": request.installed_before,
        "rollback_after": installed if state != "running" else None,
        "started_at": request.started_at,
        "updated_at": updated_at,
        "output_tail": [last_line],
    }


# -- logs ----------------------------------------------------------------------------------------


def pod_name(obj: JsonObject | None) -> str:
    """``status.podName``: the pod serving now ('' when none)."""
    return "" if obj is None else str(_status(obj).get("podName") or "")


def main_container(pod: JsonObject | None) -> str:
    """The service's own container: the first (an adapter sidecar, if any, comes after it)."""
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    return str(containers[0].get("name") or "") if containers and isinstance(containers[0], dict) else ""


def log_path(namespace: str, pod: str, container: str = "") -> str:
    """CP-07's ``path``: where the log came from, ``k8s://<namespace>/<pod>/<container>``."""
    return f"k8s://{namespace}/{pod}" + (f"/{container}" if container else "")


def tail_lines(lines: int) -> int:
    """``lines`` as a tailLines value; like ``tail -n -K``, a negative count means its magnitude."""
    return abs(lines)
