"""OneTrainer sessions as TrainingRuns, and TrainingRuns rendered as OneTrainer's answers. Pure: no I/O.

**The current session** is the newest of this profile's numbered runs (``<prefix>-1``,
``<prefix>-2``, …, labelled with the profile and the slot), read from the informer cache: it lives
in the cluster, so a restarted gateway or a second replica sees the same session. A start creates
the next number only when every run it knows has finished; the name is the lock (two concurrent
starts try the same name and the API server lets one create succeed), exactly as ControlPilot's
TrainPilot slot does and for the same reasons (fresh names never meet old reports; no Lease to go
stale).

**Rendering** (seed-api-inventory §4.2): Pending / Starting / Running / Stopping / Suspended are
``"running"`` with ``is_training`` true; Stopped and Succeeded are ``"idle"`` with the progress kept;
Failed is ``"idle"`` with ``error`` the run's error message; no run at all is the seed's idle
object. ``progress`` maps ``status.progress`` as ``epoch`` / ``epoch_step`` / ``global_step``;
``epoch_sample`` (images seen in the epoch, which the status does not carry) is ``epoch_step``
times the config's ``batch_size``. ``max_step`` / ``max_epoch`` are the worker's maxima (0 while
unknown; ``max_epoch`` falls back to the config's ``epochs``). A run of either trainer (the
OneTrainer adapter, or the built-in trainer for a translated config) reports these the same way,
so one rendering serves both.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from kubepilot_api.constants import ACTION_ANNOTATION_PREFIX, API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_api.trainingrun import TrainerKind
from kubepilot_gateway.runslot import is_active, phase

JsonObject = dict[str, Any]

PROFILE_NAME = "onetrainer"
LABEL_TRAINER = f"{LABEL_PREFIX}trainer"
LABEL_SLOT = f"{LABEL_PREFIX}onetrainer-slot"
ANNOTATION_SOURCE = f"{LABEL_PREFIX}onetrainer-source"
"""Where the session's config came from (``config_path`` or ``config_dict``), for people."""
ANNOTATION_BACKEND = f"{LABEL_PREFIX}onetrainer-backend"
"""Which trainer runs the session: ``onetrainer`` (the OneTrainer image) or ``builtin``."""
ANNOTATION_WARNINGS = f"{LABEL_PREFIX}onetrainer-warnings"
"""A built-in session's translation warnings, a JSON list of strings."""
BACKEND_ONETRAINER, BACKEND_BUILTIN = "onetrainer", "builtin"
MAX_WARNINGS_CHARS = 65536
PARAMS_SUFFIX = "-params"
"""``kubepilot.io/action-<name>-params``: the JSON parameters of an action (the operator's convention)."""
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][-_.A-Za-z0-9]{0,199}$")

NO_TRAINING = "No training in progress"
ALREADY_TRAINING = "Training already in progress"
CONFIG_REQUIRED = "Either config_path or config_dict is required"
"""Texts of the 400s (seed-api-inventory §6.3: inferred, the seed shows only success shapes)."""

IDLE: JsonObject = {
    "is_training": False,
    "status": "idle",
    "progress": None,
    "max_step": 0,
    "max_epoch": 0,
    "error": None,
}
"""OT-01 with no session at all, as the seed shows it."""


class StartRefused(ValueError):
    """A start request that cannot become a TrainingRun (the message is the 400's detail)."""


# -- the slot ----------------------------------------------------------------------------------


# -- rendering ---------------------------------------------------------------------------------


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _config(run: JsonObject) -> JsonObject:
    tool = (run.get("spec") or {}).get("tool") or {}
    config = tool.get("config")
    return config if isinstance(config, dict) else {}


def progress_of(run: JsonObject) -> JsonObject | None:
    """OT's ``progress`` object; None before the worker reported any."""
    progress = (run.get("status") or {}).get("progress")
    if not isinstance(progress, dict):
        return None
    batch = max(1, _int(_config(run).get("batch_size"), 1))
    epoch_step = _int(progress.get("epochStep"))
    return {
        "epoch": _int(progress.get("epoch")),
        "epoch_step": epoch_step,
        "epoch_sample": epoch_step * batch,
        "global_step": _int(progress.get("step")),
    }


def maxima(run: JsonObject) -> tuple[int, int]:
    """(max_step, max_epoch): the worker's, else the config's epochs, else 0."""
    progress = (run.get("status") or {}).get("progress") or {}
    max_step = max(0, _int(progress.get("maxSteps")))
    max_epoch = max(0, _int(progress.get("maxEpochs")))
    if not max_epoch:
        max_epoch = max(0, _int(_config(run).get("epochs")))
    return max_step, max_epoch


def error_of(run: JsonObject) -> str | None:
    if phase(run) != "Failed":
        return None
    status = run.get("status") or {}
    error = status.get("error") or {}
    message = str(error.get("message") or "") if isinstance(error, dict) else ""
    return message or str(error.get("code") or "") or "Training failed"


def training_state(run: JsonObject | None) -> JsonObject:
    """OT-01 / OT-WS-02 / OT-WS-04: the session as OneTrainer shows it."""
    if run is None:
        return dict(IDLE)
    active = is_active(run)
    max_step, max_epoch = maxima(run)
    return {
        "is_training": active,
        "status": "running" if active else "idle",
        "progress": progress_of(run),
        "max_step": max_step,
        "max_epoch": max_epoch,
        "error": error_of(run),
    }


def progress_response(run: JsonObject | None) -> JsonObject:
    """OT-06: the state without ``status`` and ``error``."""
    state = training_state(run)
    return {key: state[key] for key in ("is_training", "progress", "max_step", "max_epoch")}


# -- starting ----------------------------------------------------------------------------------


def output_name(config: JsonObject, fallback: str) -> str:
    """The run's output folder: the stem of ``output_model_destination`` when usable, else ``fallback``."""
    destination = config.get("output_model_destination")
    if isinstance(destination, str) and destination.strip():
        stem = posixpath.splitext(posixpath.basename(destination.strip().rstrip("/")))[0]
        if OUTPUT_NAME.match(stem):
            return stem
    return fallback


def training_run(
    name: str,
    *,
    slot: str,
    config: JsonObject,
    base_model: str | JsonObject,
    dataset: str,
    output: str,
    source: str,
    gpu: JsonObject | None,
    env: dict[str, str],
    image: str = "",
    hyperparameters: JsonObject | None = None,
    warnings: list[str] | None = None,
) -> JsonObject:
    """A session's TrainingRun. Without ``hyperparameters``: ``trainer: onetrainer``, the config in
    ``spec.tool.config`` as written (the adapter sets the run's own paths over it). With them: the
    built-in trainer (``kubepilot-lora``) with those hyper-parameters (``builtin.translate``); the
    config is kept in ``spec.tool.config`` as the record of what was asked (the built-in trainer
    does not read it), ``image`` (the OneTrainer image) is not used, and the run is annotated
    ``kubepilot.io/onetrainer-backend: builtin`` with the translation's ``warnings``.
    ``base_model`` is a path on the models volume or a ``baseModel`` object (``modelPullRef``)."""
    builtin = hyperparameters is not None
    trainer = TrainerKind.KUBEPILOT_LORA if builtin else TrainerKind.ONETRAINER
    spec: JsonObject = {
        "trainer": trainer.value,
        "baseModel": {"path": base_model} if isinstance(base_model, str) else dict(base_model),
        "dataset": {"path": dataset},
        "output": {"name": output},
        "tool": {"config": config},
    }
    if builtin:
        spec["hyperparameters"] = hyperparameters
    if gpu is not None:
        spec["resources"] = {"gpu": gpu}
    if env:
        spec["env"] = [{"name": key, "value": value} for key, value in sorted(env.items())]
    if image and not builtin:
        spec["image"] = image
    annotations: JsonObject = {
        ANNOTATION_SOURCE: source[:4096],
        ANNOTATION_BACKEND: BACKEND_BUILTIN if builtin else BACKEND_ONETRAINER,
    }
    if builtin:
        annotations[ANNOTATION_WARNINGS] = warnings_annotation(list(warnings or []))
    metadata: JsonObject = {
        "name": name,
        "labels": {
            LABEL_PROFILE: PROFILE_NAME,
            LABEL_TRAINER: trainer.value,
            LABEL_SLOT: slot,
        },
        "annotations": annotations,
    }
    return {"apiVersion": API_VERSION, "kind": "TrainingRun", "metadata": metadata, "spec": spec}


def warnings_annotation(warnings: list[str]) -> str:
    """The warnings as a JSON list within ``MAX_WARNINGS_CHARS`` (the last ones summed up if need be)."""
    kept = list(warnings)
    text = json.dumps(kept)
    while len(text) > MAX_WARNINGS_CHARS and kept:
        kept.pop()
        text = json.dumps([*kept, f"... and {len(warnings) - len(kept)} more"])
    return text


def backend_of(run: JsonObject | None) -> str:
    """``builtin`` for a session the built-in trainer runs, else ``onetrainer``."""
    trainer = ((run or {}).get("spec") or {}).get("trainer")
    return BACKEND_BUILTIN if trainer == TrainerKind.KUBEPILOT_LORA.value else BACKEND_ONETRAINER


def warnings_of(run: JsonObject | None) -> list[str]:
    """The translation warnings a built-in session was started with ([] for none or unreadable)."""
    raw = (((run or {}).get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_WARNINGS)
    try:
        value = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


# -- actions -----------------------------------------------------------------------------------

SAMPLE_KEYS = ("prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height")


def action_patch(name: str, nonce: str, params: JsonObject | None = None) -> JsonObject:
    """The merge patch requesting action ``name`` with a fresh ``nonce``. The params annotation is
    set or removed with it, so a default sample after a custom one carries no stale prompt."""
    key = f"{ACTION_ANNOTATION_PREFIX}{name}"
    annotations: JsonObject = {key: nonce, f"{key}{PARAMS_SUFFIX}": json.dumps(params) if params else None}
    return {"metadata": {"annotations": annotations}}


def stop_patch() -> JsonObject:
    return {"spec": {"stop": True}}
