"""ControlPilot's diffusion-pipe start request (CP-34) → a diffusion-pipe TrainingRun's tool settings. Pure.

ControlPilot's ``/dpipe/train/start`` writes ``dataset_config.toml`` and ``training_config.toml``
into ``config_dir`` and launches DeepSpeed. Here the request becomes ``spec.tool.config`` (the
training TOML as an object) and ``spec.tool.datasetConfig`` (the dataset TOML) of a TrainingRun
with ``trainer: diffusion-pipe``; the worker writes both files into the run's own
``<outputs>/<name>/_config/`` and launches ``deepspeed … train.py --deepspeed --config …``.

The four model paths are HunyuanVideo's (``transformer_path``, ``vae_path``, ``llm_path``,
``clip_path``), so the model table is ``type = "hunyuan-video"``; the transformer is the run's
base model. How the request maps, and where it differs from ControlPilot:

- ``output_dir`` must be one folder directly under ``/workspace/outputs`` (its name is the run's
  output name); ``config_dir`` is checked to be on a volume but the configs go to
  ``<output_dir>/_config/training.toml``, which is the ``config`` answered.
- Model paths are written into the TOML as the client sent them with ``/workspace/models``
  replaced by ``{models}``, the volume's mount path in the trainer pod (``modelsMountPath`` in the
  settings), because the gateway's view of the volume is not the pod's.
- ``num_repeats`` cannot be set per request: the dataset's ``N_name`` folders carry their repeats
  (the worker builds the ``[[directory]]`` list from the folder it mounts).
- ``wandb_api_key`` is not stored in the TrainingRun (a spec is readable by anyone who can list
  runs); W&B logging gets the run and tracker names, and the key from the pod's environment.
- ``resume_from_checkpoint`` resumes the newest run folder of this output.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

JsonObject = dict[str, Any]

INVALID_JSON = "Invalid JSON in resolutions/frame/ar buckets"
"""ControlPilot's prefix for a bad ``resolutions_input`` / ``frame_buckets`` / ``ar_buckets``."""
MODEL_FIELDS = ("transformer_path", "vae_path", "llm_path", "clip_path")


class DpipeValidateRequest(BaseModel):
    """CP-33 body: the four model paths, all required (422 when one is missing)."""

    transformer_path: str
    vae_path: str
    llm_path: str
    clip_path: str


class DpipeStartRequest(BaseModel):
    """CP-34 body: seven required paths, the rest with ControlPilot's defaults."""

    model_config = ConfigDict(extra="ignore")

    dataset_path: str
    config_dir: str
    output_dir: str
    transformer_path: str
    vae_path: str
    llm_path: str
    clip_path: str
    epochs: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=1, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    save_every: int = Field(default=2, ge=1)
    eval_every: int = Field(default=1, ge=1)
    rank: int = Field(default=32, ge=1)
    dtype: str = "bfloat16"
    optimizer_type: str = "adamw_optimi"
    betas: str | list[float] = "[0.9, 0.99]"
    weight_decay: float = Field(default=0.01, ge=0)
    eps: float = Field(default=1e-8, gt=0)
    gradient_accumulation_steps: int = Field(default=4, ge=1)
    num_repeats: int = Field(default=10, ge=1)
    resolutions_input: str = "[512]"
    enable_ar_bucket: bool = True
    min_ar: float = Field(default=0.5, gt=0)
    max_ar: float = Field(default=2.0, gt=0)
    num_ar_buckets: int = Field(default=7, ge=1)
    ar_buckets: str = ""
    frame_buckets: str = "[1, 33]"
    gradient_clipping: float = Field(default=1.0, ge=0)
    warmup_steps: int = Field(default=100, ge=0)
    eval_before_first_step: bool = True
    eval_micro_batch_size_per_gpu: int = Field(default=1, ge=1)
    eval_gradient_accumulation_steps: int = Field(default=1, ge=1)
    checkpoint_every_n_minutes: int = Field(default=120, ge=0)
    activation_checkpointing: bool = True
    partition_method: str = "parameters"
    save_dtype: str = "bfloat16"
    caching_batch_size: int = Field(default=1, ge=1)
    steps_per_print: int = Field(default=1, ge=1)
    video_clip_mode: str = "single_middle"
    resume_from_checkpoint: bool = False
    only_double_blocks: bool = False
    enable_wandb: bool = False
    wandb_run_name: str | None = None
    wandb_tracker_name: str | None = None
    wandb_api_key: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _learning_rate_alias(cls, data: Any) -> Any:
        """``learning_rate`` is the documented name; ``lr`` is accepted too, ``learning_rate`` winning."""
        if isinstance(data, dict) and "learning_rate" in data:
            data = {**data, "lr": data["learning_rate"]}
        return data


class RequestError(ValueError):
    """A request value ControlPilot answers with a 400 (the message is the detail)."""


def _json_list(name: str, text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(f"{INVALID_JSON}: {name}: {error}") from error
    if not isinstance(value, list):
        raise RequestError(f"{INVALID_JSON}: {name} must be a JSON list")
    return value


def _numbers(name: str, values: list[Any]) -> list[float | int]:
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise RequestError(f"{INVALID_JSON}: {name} must hold numbers only")
    return list(values)


def betas(request: DpipeStartRequest) -> list[float]:
    """``betas`` from a JSON string or a list: exactly two numbers."""
    raw: Any = request.betas
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise RequestError(f"Invalid betas: {error}") from error
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
    ):
        raise RequestError("Invalid betas: expected two numbers, e.g. [0.9, 0.99]")
    return [float(v) for v in raw]


def dataset_config(request: DpipeStartRequest) -> JsonObject:
    """The dataset TOML (without ``[[directory]]``, which the worker writes for its mount)."""
    resolutions = _numbers("resolutions_input", _json_list("resolutions_input", request.resolutions_input))
    frames = _numbers("frame_buckets", _json_list("frame_buckets", request.frame_buckets))
    document: JsonObject = {
        "resolutions": resolutions,
        "enable_ar_bucket": request.enable_ar_bucket,
        "min_ar": request.min_ar,
        "max_ar": request.max_ar,
        "num_ar_buckets": request.num_ar_buckets,
        "frame_buckets": frames,
    }
    if request.ar_buckets.strip():
        document["ar_buckets"] = _json_list("ar_buckets", request.ar_buckets)
    return document


def training_config(request: DpipeStartRequest, model_paths: dict[str, str]) -> JsonObject:
    """The training TOML; ``model_paths`` are the four paths as the trainer pod sees them."""
    adapter: JsonObject = {"type": "lora", "rank": request.rank, "dtype": request.dtype}
    if request.only_double_blocks:
        adapter["only_double_blocks"] = True
    document: JsonObject = {
        "epochs": request.epochs,
        "micro_batch_size_per_gpu": request.batch_size,
        "pipeline_stages": 1,
        "gradient_accumulation_steps": request.gradient_accumulation_steps,
        "gradient_clipping": request.gradient_clipping,
        "warmup_steps": request.warmup_steps,
        "eval_every_n_epochs": request.eval_every,
        "eval_before_first_step": request.eval_before_first_step,
        "eval_micro_batch_size_per_gpu": request.eval_micro_batch_size_per_gpu,
        "eval_gradient_accumulation_steps": request.eval_gradient_accumulation_steps,
        "save_every_n_epochs": request.save_every,
        "checkpoint_every_n_minutes": request.checkpoint_every_n_minutes,
        "activation_checkpointing": request.activation_checkpointing,
        "partition_method": request.partition_method,
        "save_dtype": request.save_dtype,
        "caching_batch_size": request.caching_batch_size,
        "steps_per_print": request.steps_per_print,
        "video_clip_mode": request.video_clip_mode,
        "model": {"type": "hunyuan-video", **model_paths, "dtype": request.dtype},
        "adapter": adapter,
        "optimizer": {
            "type": request.optimizer_type,
            "lr": request.lr,
            "betas": betas(request),
            "weight_decay": request.weight_decay,
            "eps": request.eps,
        },
    }
    if request.enable_wandb:
        monitoring: JsonObject = {"enable_wandb": True}
        if request.wandb_run_name:
            monitoring["wandb_run_name"] = request.wandb_run_name
        if request.wandb_tracker_name:
            monitoring["wandb_tracker_name"] = request.wandb_tracker_name
        document["monitoring"] = monitoring
    return document


def tool_settings(request: DpipeStartRequest, model_paths: dict[str, str]) -> JsonObject:
    """``spec.tool`` for the run (400-worthy values raise RequestError)."""
    return {"config": training_config(request, model_paths), "datasetConfig": dataset_config(request)}


def request_summary(request: DpipeStartRequest) -> str:
    """The request for the run's annotation, without the W&B key."""
    return json.dumps(request.model_dump(exclude={"wandb_api_key"}), sort_keys=True)


def validate_response(missing: list[tuple[str, str]]) -> JsonObject:
    return {"ok": not missing, "missing": [{"field": f, "path": p} for f, p in missing]}
