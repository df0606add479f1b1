"""ControlPilot's TrainPilot and diffusion-pipe runs, translated to and from TrainingRuns. Pure: no I/O.

**Paths.** ControlPilot's clients send paths as LoRA Pilot's container sees them, under
``/workspace``. Each of the three storage volumes stands for one folder there:

=========================  ================  ==========================================
ControlPilot path          volume            example
=========================  ================  ==========================================
``/workspace/models/…``    models            ``/workspace/models/sdxl/base.safetensors``
``/workspace/datasets/…``  datasets          ``/workspace/datasets/1_cats``
``/workspace/outputs/…``   outputs           ``/workspace/outputs/my_lora``
=========================  ================  ==========================================

Anything else (another absolute folder, a relative path, ``..`` leaving the volume, a NUL byte)
is refused with a 400 naming the path: it is a folder no trainer pod can see, and reading it in
the gateway would expose the gateway's own files. :func:`map_path` does the lexical part; the
routes also resolve symlinks on the gateway's copy of the volume and refuse what ends up outside.

**One run at a time.** A trainer's runs are numbered: ``<prefix>-1``, ``<prefix>-2``, … (prefix
from the settings: ``controlpilot-trainpilot``, ``controlpilot-dpipe``), labelled with their slot.
The current run is the highest number in the cache. A start creates the next number, and only
when every run of the slot it knows has finished (``Succeeded``, ``Failed``, ``Stopped``, or stopped
before it ever got a Job). The name is the lock: two concurrent starts (on any gateway replica)
both try the same next name and the API server lets exactly one create succeed; the loser reads
that run back and answers ControlPilot's 400. A start whose cache lags meets an existing name,
reads it: active means 400, finished means it tries the number after it. So a run ``k`` is only
created once ``k-1`` has finished, and two runs of one slot are never active together.

Why numbered names rather than one fixed name deleted and re-created: a re-created name reaches
the operator as the same work item, and a report of the deleted run (its final "Stopped") could
be applied to the new one before the operator has seen the delete; fresh names cannot meet old
reports, need no wait for a deletion, and keep the history (the oldest finished runs beyond
``keepFinishedRuns`` are deleted after a start). A Lease or "slot" object would add a claim that
goes stale when a gateway dies between claiming and creating; a name never does.

**TrainPilot.** A start is a ``kohya`` TrainingRun with ``spec.tool.profile`` (the worker applies
TrainPilot's profile and step plan). From the TOML, ``pretrained_model_name_or_path`` must be a
file or folder under ``/workspace/models`` (it is the run's base model; a Hub id would need a
ModelPull first, so it is refused); ``vae`` is passed as the pod sees it; the base TOML's other
plain settings go to ``spec.tool.config`` (keys the profile sets, the run's own paths and names,
tables and other absolute paths are left out). ``dataset_name`` is a folder of the datasets volume,
or ControlPilot's ``1_<name>`` folder; output goes to ``/workspace/outputs/<output_name>``.

**pid.** A pod's process id means nothing outside the pod. ``status.pid`` is returned when a
worker reports one; otherwise :func:`run_pid` derives a stable positive int from the run's uid, so
the same run always answers the same pid and a new run a different one.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kubepilot_api.constants import API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_api.trainingrun import KohyaProfile, TrainerKind
from kubepilot_gateway.runslot import is_active

JsonObject = dict[str, Any]

PROFILE_NAME = "controlpilot"
LABEL_TRAINER = f"{LABEL_PREFIX}trainer"
LABEL_SLOT = f"{LABEL_PREFIX}controlpilot-slot"
"""The run's slot (its name prefix): one active run per slot."""
ANNOTATION_REQUEST = f"{LABEL_PREFIX}controlpilot-request"
"""The ControlPilot request a run was made from (its paths as the client sent them), for people."""
WORKSPACE = "/workspace"
OUTPUT_NAME = re.compile(r"^[A-Za-z0-9][-_.A-Za-z0-9]*$")
MAX_OUTPUT_NAME = 200

DEFAULT_TOML_PATH = "/opt/pilot/apps/TrainPilot/newlora.toml"
"""TrainPilot's own default TOML; it stands for the default template (ConfigMap or built-in)."""
DEFAULT_PROFILE = KohyaProfile.REGULAR.value

TRAINPILOT_ALREADY_RUNNING = "TrainPilot already running"
DATASET_NAME_REQUIRED = "dataset_name is required"
INVALID_PROFILE = "Invalid profile"
DPIPE_ALREADY_RUNNING = "A training process is already running."
DATASET_PATH_MISSING = "dataset_path does not exist"
"""ControlPilot's own texts (seed-api-inventory §6.1)."""


class Volume(StrEnum):
    """The three storage volumes, named as their ``/workspace`` folders."""

    MODELS = "models"
    DATASETS = "datasets"
    OUTPUTS = "outputs"


class PathRefused(ValueError):
    """A client path that does not map onto a volume (the message is the 400's detail)."""


@dataclass(frozen=True)
class VolumePath:
    """A path on one volume: ``relative`` is '' for the volume's root, never absolute, never ``..``."""

    volume: Volume
    relative: str

    @property
    def workspace(self) -> str:
        """The path as ControlPilot's clients write it."""
        base = f"{WORKSPACE}/{self.volume.value}"
        return f"{base}/{self.relative}" if self.relative else base


def map_path(raw: str, *, allowed: tuple[Volume, ...] = tuple(Volume)) -> VolumePath:
    """``/workspace/<volume>/<rest>`` → (volume, rest), normalised; PathRefused for anything else."""
    text = raw.strip()
    where = " or ".join(f"{WORKSPACE}/{v.value}" for v in allowed)
    if not text or "\x00" in text or not text.startswith("/"):
        raise PathRefused(f"Path must be absolute and under {where}: {raw!r}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        # No lexical resolution of '..': '/workspace/models/../../etc' must not become anything valid.
        raise PathRefused(f"Path must not contain '..': {raw!r}")
    if len(parts) < 2 or parts[0] != WORKSPACE.strip("/") or parts[1] not in {v.value for v in allowed}:
        raise PathRefused(f"Path must be under {where}: {raw!r}")
    return VolumePath(Volume(parts[1]), "/".join(parts[2:]))


# -- runs and their state ----------------------------------------------------------------------


def run_pid(run: JsonObject) -> int:
    """``status.pid`` when a worker reported one, else a stable positive int from the uid."""
    reported = (run.get("status") or {}).get("pid")
    if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
        return reported
    uid = str((run.get("metadata") or {}).get("uid") or "").replace("-", "")
    try:
        # 28 bits of the uid: positive, fits every pid field, differs between runs.
        return int(uid[:7], 16) or 1
    except ValueError:
        return 1


def uid(run: JsonObject) -> str:
    return str((run.get("metadata") or {}).get("uid") or "")


def stop_patch() -> JsonObject:
    """The TrainingRun's own stop: save where the trainer can, then exit (one-way)."""
    return {"spec": {"stop": True}}


def training_run(
    name: str,
    trainer: TrainerKind,
    *,
    slot: str,
    base_model: str,
    dataset: str,
    output: str,
    tool: JsonObject,
    gpu: JsonObject | None,
    env: dict[str, str],
    request: str,
    resume_from: str = "",
) -> JsonObject:
    """A TrainingRun body for one of ControlPilot's trainers."""
    spec: JsonObject = {
        "trainer": trainer.value,
        "baseModel": {"path": base_model},
        "dataset": {"path": dataset},
        "output": {"name": output},
        "tool": tool,
    }
    if gpu is not None:
        spec["resources"] = {"gpu": gpu}
    if env:
        spec["env"] = [{"name": key, "value": value} for key, value in sorted(env.items())]
    if resume_from:
        spec["resumeFrom"] = resume_from
    metadata: JsonObject = {
        "name": name,
        "labels": {LABEL_PROFILE: PROFILE_NAME, LABEL_TRAINER: trainer.value, LABEL_SLOT: slot},
        "annotations": {ANNOTATION_REQUEST: request},
    }
    return {"apiVersion": API_VERSION, "kind": "TrainingRun", "metadata": metadata, "spec": spec}


def output_name_for(output_name: str, dataset_name: str) -> str:
    """TrainPilot's output name: the one given, else the dataset's basename; 400 text when unusable."""
    name = output_name.strip() or posixpath.basename(dataset_name.strip().rstrip("/"))
    if len(name) > MAX_OUTPUT_NAME or not OUTPUT_NAME.match(name):
        raise PathRefused(
            f"Invalid output_name {name!r}: use letters, digits, '-', '_' and '.' "
            "(it becomes the folder /workspace/outputs/<output_name>)"
        )
    return name


# -- TrainPilot (kohya sd-scripts with TrainPilot's profiles) ----------------------------------

BASE_MODEL_KEY = "pretrained_model_name_or_path"
VAE_KEY = "vae"
PROFILE_KEYS = frozenset(
    {
        "network_dim",
        "network_alpha",
        "network_args",
        "network_train_unet_only",
        "gradient_accumulation_steps",
        "max_token_length",
        "learning_rate",
        "unet_lr",
        "text_encoder_lr",
        "max_train_epochs",
        "max_train_steps",
        "mixed_precision",
        "full_bf16",
        "train_batch_size",
        "resolution",
    }
)
"""What TrainPilot's profile sets over its base TOML (the worker applies the profile)."""
RUN_KEYS = frozenset(
    {
        BASE_MODEL_KEY,
        VAE_KEY,
        "output_dir",
        "output_name",
        "train_data_dir",
        "reg_data_dir",
        "dataset_config",
        "logging_dir",
        "resume",
        "network_weights",
        "sample_prompts",
        "script",
        "config_file",
    }
)
"""Paths and names that belong to the run, not to the base TOML."""


def parse_toml(text: str) -> JsonObject:
    """The TOML as a dict; ValueError with tomllib's message when it does not parse."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(str(error)) from error


def _plain(value: Any) -> bool:
    """A value that means the same inside the trainer pod: no tables, no absolute paths."""
    if isinstance(value, str):
        return not value.startswith("/")
    if isinstance(value, bool | int | float):
        return True
    if isinstance(value, list):
        return all(_plain(item) and not isinstance(item, list) for item in value)
    return False


def base_toml_settings(document: JsonObject) -> JsonObject:
    """The base TOML's own training settings, for ``spec.tool.config`` (applied under the profile).

    Keys the profile sets, the run's paths and names, tables and absolute paths (folders of the
    gateway's view, not the pod's) are left out.
    """
    return {
        key: value
        for key, value in document.items()
        if key not in PROFILE_KEYS and key not in RUN_KEYS and _plain(value)
    }


def base_model_of(document: JsonObject) -> VolumePath:
    """The TOML's base model on the models volume; PathRefused when it has none or one elsewhere."""
    value = document.get(BASE_MODEL_KEY)
    if not isinstance(value, str) or not value.strip():
        raise PathRefused(f"The TOML sets no {BASE_MODEL_KEY}")
    return map_path(value, allowed=(Volume.MODELS,))


def vae_of(document: JsonObject, pod_models: str) -> str | None:
    """The TOML's VAE as the trainer pod sees it: a Hub id as is, a models-volume file under the
    pod's mount ``pod_models``; None when it sets none; PathRefused for a file off the volume."""
    value = document.get(VAE_KEY)
    if not isinstance(value, str) or not value.strip():
        return None
    if not is_local_path(value.strip()):
        return value.strip()
    relative = map_path(value, allowed=(Volume.MODELS,)).relative
    return f"{pod_models.rstrip('/')}/{relative}" if relative else pod_models


def trainpilot_tool(profile: str, document: JsonObject, vae: str | None = None) -> JsonObject:
    """``spec.tool``: the profile, over the base TOML's own settings (and its VAE, as the pod sees it)."""
    config = base_toml_settings(document)
    if vae:
        config[VAE_KEY] = vae
    return {"profile": profile, "config": config}


def valid_profile(profile: str) -> bool:
    return profile in {p.value for p in KohyaProfile}


@dataclass(frozen=True)
class ModelCheckItem:
    """One TOML-referenced model file (CP-30)."""

    kind: str
    key: str
    value: str
    is_local_path: bool
    exists: bool
    model_name: str | None
    reason: str

    def to_dict(self) -> JsonObject:
        return {
            "kind": self.kind,
            "key": self.key,
            "value": self.value,
            "is_local_path": self.is_local_path,
            "exists": self.exists,
            "model_name": self.model_name,
            "reason": self.reason,
        }


MODEL_CHECK_KEYS = ((BASE_MODEL_KEY, "checkpoint"), (VAE_KEY, "vae"))


def is_local_path(value: str) -> bool:
    """A file path rather than a Hub repository id (``org/name``), as TrainPilot tells them apart."""
    return value.startswith(("/", "./", "../", "~")) or value.endswith((".safetensors", ".ckpt", ".pt"))


def model_check_targets(document: JsonObject) -> list[tuple[str, str, str]]:
    """(kind, key, value) for each checkpoint/VAE entry the TOML sets."""
    targets = []
    for key, kind in MODEL_CHECK_KEYS:
        value = document.get(key)
        if isinstance(value, str) and value.strip():
            targets.append((kind, key, value.strip()))
    return targets


def model_check_response(toml_path: str, items: list[ModelCheckItem]) -> JsonObject:
    return {
        "toml_path": toml_path,
        "items": [item.to_dict() for item in items],
        "missing": [item.to_dict() for item in items if item.is_local_path and not item.exists],
    }


DEFAULT_TOML = """\
# kubepilot's default TrainPilot TOML: the base sd-scripts settings TrainPilot's profiles start from.
# The profile (quick_test / regular / high_quality) sets ranks, steps, batch and learning rates.
# The base model is where the model manifest's sdxl-base-1.0 entry lands when pulled.
pretrained_model_name_or_path = "/workspace/models/checkpoints/sd_xl_base_1.0.safetensors"
network_module = "networks.lora"
network_dropout = 0.05
optimizer_type = "AdamW"
optimizer_args = ["betas=(0.9,0.99)", "eps=1e-8", "weight_decay=0.01"]
lr_scheduler = "cosine_with_restarts"
lr_scheduler_num_cycles = 2
lr_warmup_steps = 100
min_snr_gamma = 5.0
noise_offset = 0.02
max_grad_norm = 0.8
caption_dropout_rate = 0.1
save_every_n_epochs = 1
save_precision = "bf16"
save_model_as = "safetensors"
gradient_checkpointing = true
no_half_vae = true
sdpa = true
"""
"""Served by ``/api/trainpilot/toml`` and used for the default ``toml_path`` when no ConfigMap holds one."""


# -- responses ---------------------------------------------------------------------------------


def trainpilot_logs(lines: list[str], run: JsonObject | None) -> JsonObject:
    return {"lines": lines, "running": is_active(run)}


def tail(lines: list[str], limit: int) -> list[str]:
    return lines[-limit:] if limit > 0 else []
