"""A OneTrainer config's LoRA settings as a run of the built-in trainer (``kubepilot-lora``).

Used where the OneTrainer image is not available (``backend``: see the package docstring). The
translation is pure except :func:`scan_folder`, which lists one dataset folder. Every key of the
config is accounted for: mapped (the table in the package docstring), checked (``model_type``,
``training_method``), replaced by kubepilot (``workspace_dir``, ``cache_dir``, ``__version``), or
named in a warning that says what the built-in trainer does instead. Warnings never stop a start;
errors (a model family or training method the built-in trainer cannot train, values out of its
range, a concept folder it would not read) are a 400 at start and ``valid: false`` on validate.

**Epochs.** The built-in trainer counts optimizer steps (``maxSteps``); an epoch there is one pass
over the dataset folder (each ``N_name`` sub-folder N times). The gateway counts the images the
trainer will read and sets
``maxSteps = epochs * ceil(ceil(images / batch_size) / gradient_accumulation_steps)``.
That is exact for ``batch_size`` 1 or without bucketing; with aspect-ratio buckets and a larger batch
each bucket's last batch may be short, so an epoch can hold a few more steps than counted and the
trainer's own ``maxEpochs`` (what ``max_epoch`` shows) can come out below ``epochs``.
"""

from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubepilot_api.trainingrun import Hyperparameters
from kubepilot_gateway.profiles.onetrainer.configs import DEFAULTS

JsonObject = dict[str, Any]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
"""What the built-in trainer reads as images (its ``dataset`` module)."""
REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")
"""``N_name``: a sub-folder the built-in trainer repeats N times per epoch."""

SUPPORTED_MODEL_TYPES = ("STABLE_DIFFUSION_15", "STABLE_DIFFUSION_20", "STABLE_DIFFUSION_21")
"""What the built-in trainer loads (a Stable Diffusion 1.x / 2.x pipeline)."""
SCHEDULERS = {
    "CONSTANT": "constant",
    "LINEAR": "linear",
    "COSINE": "cosine",
    "COSINE_WITH_RESTARTS": "cosine_with_restarts",
    "COSINE_WITH_HARD_RESTARTS": "cosine_with_restarts",
}
PRECISIONS = {"FLOAT_32": "no", "BFLOAT_16": "bf16", "FLOAT_16": "fp16"}
STEP_UNITS = ("STEP", "EPOCH", "ALWAYS", "NEVER")
MAX_SAMPLE_PROMPTS = 32

MAPPED = frozenset(
    {
        "base_model_name",
        "concepts",
        "output_model_destination",
        "learning_rate",
        "learning_rate_scheduler",
        "learning_rate_warmup_steps",
        "epochs",
        "batch_size",
        "gradient_accumulation_steps",
        "resolution",
        "aspect_ratio_bucketing",
        "lora_rank",
        "lora_alpha",
        "train_dtype",
        "seed",
        "gradient_checkpointing",
        "sample_after",
        "sample_after_unit",
        "samples",
        "save_every",
        "save_every_unit",
        "backup_after",
        "backup_after_unit",
        "output_model_format",
        "model_type",
        "training_method",
    }
)
"""Keys the translation reads (each may still add a warning for a value it cannot honour)."""
REPLACED = frozenset({"workspace_dir", "cache_dir", "__version"})
"""Keys kubepilot replaces with the run's own folders (or that only version the file): no warning."""
CONCEPT_KEYS = frozenset(
    {"name", "path", "enabled", "include_subdirectories", "balancing", "balancing_strategy"}
)
SAMPLE_KEYS = frozenset({"enabled", "prompt"})


@dataclass(frozen=True)
class FolderScan:
    """What the built-in trainer would read in one dataset folder."""

    direct_images: int
    """Images straight in the folder (each counted once per epoch)."""
    subfolders: dict[str, int]
    """Images of each non-hidden sub-folder, by its name."""


@dataclass(frozen=True)
class Concept:
    """An enabled concept of the config: its index, the entry itself and its path on the volume."""

    index: int
    entry: JsonObject
    relative: str


@dataclass
class Translation:
    """The run's ``spec.hyperparameters`` and what the user must know about them."""

    hyperparameters: JsonObject = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    steps_per_epoch: int = 1


# -- the dataset -------------------------------------------------------------------------------


def scan_folder(folder: Path) -> FolderScan:
    """List ``folder`` as the built-in trainer reads it (one level of ``N_name`` sub-folders)."""

    def images(path: Path) -> int:
        try:
            return sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        except OSError:
            return 0

    subfolders: dict[str, int] = {}
    try:
        children = sorted(folder.iterdir())
    except OSError:
        children = []
    for child in children:
        if child.is_dir() and not child.name.startswith("."):
            subfolders[child.name] = images(child)
    return FolderScan(direct_images=images(folder), subfolders=subfolders)


def repeats_of(name: str) -> int:
    match = REPEATS_FOLDER.match(name)
    return max(1, int(match.group(1))) if match else 1


def images_per_epoch(scan: FolderScan) -> int:
    """Images the built-in trainer shows per epoch: the folder's own once, each sub-folder's N times."""
    return scan.direct_images + sum(count * repeats_of(name) for name, count in scan.subfolders.items())


def dataset_notes(folder: str, concepts: list[Concept], scan: FolderScan) -> tuple[list[str], list[str]]:
    """(errors, warnings) of training the concepts as the dataset folder ``folder`` (relative)."""
    errors: list[str] = []
    warnings: list[str] = []
    covered: set[str] = set()
    root_is_concept = False
    for concept in concepts:
        where = f"concepts[{concept.index}]"
        entry = concept.entry
        if concept.relative == folder:
            root_is_concept, repeats = True, 1
        elif posixpath.dirname(concept.relative) == folder:
            name = posixpath.basename(concept.relative)
            covered.add(name)
            repeats = repeats_of(name)
        else:
            errors.append(
                f"{where}.path: the built-in trainer reads the dataset folder {folder or '/'} and its direct "
                f"sub-folders only, not {concept.relative}"
            )
            continue
        strategy = str(entry.get("balancing_strategy") or "REPEATS")
        balancing = entry.get("balancing", 1)
        if strategy != "REPEATS":
            warnings.append(
                f"{where}.balancing_strategy {strategy}: not supported; "
                f"the folder is repeated {repeats} times"
            )
        elif isinstance(balancing, int | float) and not isinstance(balancing, bool) and balancing != repeats:
            warnings.append(
                f"{where}.balancing {balancing}: the built-in trainer repeats a folder by its N_ prefix; "
                f"{concept.relative} is repeated {repeats} times"
            )
        if entry.get("include_subdirectories") is True and concept.relative != folder:
            warnings.append(f"{where}.include_subdirectories: sub-folders of a concept folder are not read")
        text = entry.get("text")
        source = text.get("prompt_source") if isinstance(text, dict) else None
        if source not in (None, "sample"):
            warnings.append(
                f"{where}.text.prompt_source {source}: captions come from the .txt file next to each image"
            )
        for key in sorted(set(entry) - CONCEPT_KEYS - {"text"}):
            warnings.append(f"{where}.{key}: not used by the built-in trainer")
        if isinstance(text, dict):
            for key in sorted(set(text) - {"prompt_source", "prompt_path"}):
                warnings.append(f"{where}.text.{key}: not used by the built-in trainer")
    extra = [name for name, count in scan.subfolders.items() if count and name not in covered]
    if extra and not (root_is_concept and len(concepts) == 1):
        warnings.append(
            f"trained too (the built-in trainer reads the whole dataset folder {folder or '/'}): "
            + ", ".join(extra)
        )
    elif extra:
        warnings.append(f"sub-folders of the concept folder are trained too: {', '.join(extra)}")
    if scan.direct_images and not root_is_concept:
        warnings.append(f"images straight in the dataset folder {folder or '/'} are trained too")
    return errors, warnings


# -- the hyper-parameters ------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite number's value, else None (NaN and infinities, which Python's JSON reads, too)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _value(config: JsonObject, key: str) -> Any:
    """The config's value, else the profile's default (``/api/config/defaults``)."""
    value = config.get(key)
    return DEFAULTS.get(key) if value is None else value


def _whole(key: str, value: Any, errors: list[str]) -> int:
    number = _number(value)
    if number is None or number != int(number):
        errors.append(f"{key} must be a whole number")
        return 1
    return int(number)


def resolution_of(value: Any, errors: list[str], warnings: list[str]) -> int:
    """OneTrainer's ``resolution`` string ("512", "768x512", "512,768") as one base side."""
    text = str(value).strip()
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        errors.append("resolution must be a number of pixels, e.g. 512")
        return 512
    if len(parts) > 1:
        warnings.append(f"resolution {text}: the built-in trainer trains at one resolution, {parts[0]}")
    first = parts[0].lower()
    try:
        if "x" in first:
            width, height = (int(side) for side in first.split("x", 1))
            side = round(math.sqrt(width * height))
            warnings.append(f"resolution {first}: trained at {side}² pixels with aspect-ratio buckets")
            return side
        return int(first)
    except ValueError:
        errors.append(f"resolution {text} is not a number of pixels")
        return 512


def every(
    config: JsonObject, key: str, unit_key: str, steps_per_epoch: int, warnings: list[str], what: str
) -> int:
    """``<key>`` every ``<unit_key>`` as a step interval (0: never)."""
    if key not in config and unit_key not in config:
        return 0
    number = _number(_value(config, key))
    if number is None:
        warnings.append(f"{key}: not a number; not scheduled")
        return 0
    value = number
    unit = str(_value(config, unit_key) or "NEVER")
    if unit == "NEVER" or value <= 0:
        return 0
    if unit == "ALWAYS":
        return 1
    if unit == "STEP":
        return max(1, round(value))
    if unit == "EPOCH":
        return max(1, round(value * steps_per_epoch))
    warnings.append(
        f"{key} {value:g} {unit}: the built-in trainer {what} by steps only; not scheduled (request it "
        "with the API instead)"
    )
    return 0


def translate(config: JsonObject, *, images: int | None, gpus: int) -> Translation:
    """The hyper-parameters for ``config`` on a dataset of ``images`` per epoch (``images_per_epoch``);
    ``images`` None (no dataset at hand, as on validate) still finds every key-level error and warning."""
    result = Translation()
    errors, warnings = result.errors, result.warnings
    model_type = str(config.get("model_type") or "STABLE_DIFFUSION_15")
    if model_type not in SUPPORTED_MODEL_TYPES:
        errors.append(
            f"model_type {model_type}: the built-in trainer trains Stable Diffusion 1.5 / 2.x only "
            f"({', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    method = config.get("training_method")
    if method is None:
        warnings.append("training_method not set: trained as LORA")
    elif method != "LORA":
        errors.append(f"training_method {method}: the built-in trainer trains LORA only")

    batch = _whole("batch_size", _value(config, "batch_size"), errors)
    accumulation = _whole(
        "gradient_accumulation_steps", _value(config, "gradient_accumulation_steps"), errors
    )
    epochs = _whole("epochs", _value(config, "epochs"), errors)
    per_epoch = max(1, math.ceil(math.ceil((images or 1) / max(1, batch)) / max(1, accumulation)))
    result.steps_per_epoch = per_epoch
    max_steps = max(1, epochs) * per_epoch

    scheduler_name = str(config.get("learning_rate_scheduler") or "CONSTANT")
    scheduler = SCHEDULERS.get(scheduler_name)
    if scheduler is None:
        warnings.append(f"learning_rate_scheduler {scheduler_name}: not supported; a constant rate is used")
        scheduler = "constant"
    elif scheduler_name == "COSINE_WITH_HARD_RESTARTS":
        warnings.append("learning_rate_scheduler COSINE_WITH_HARD_RESTARTS: trained as COSINE_WITH_RESTARTS")
    warmup_value = _number(config.get("learning_rate_warmup_steps")) or 0.0
    warmup = max(0, round(warmup_value))
    if warmup and scheduler == "constant":
        scheduler = "constant_with_warmup"

    dtype = str(config.get("train_dtype") or "FLOAT_32")
    precision = PRECISIONS.get(dtype)
    if precision is None:
        warnings.append(f"train_dtype {dtype}: not supported; trained in float32")
        precision = "no"
    elif precision == "fp16" and not gpus:
        warnings.append("train_dtype FLOAT_16 needs a GPU; trained in float32 on the CPU")
        precision = "no"

    checkpointing = config.get("gradient_checkpointing")
    if checkpointing == "CPU_OFFLOADED":
        warnings.append("gradient_checkpointing CPU_OFFLOADED: trained with plain gradient checkpointing")

    prompts: list[str] = []
    samples = config.get("samples")
    if isinstance(samples, list):
        for index, sample in enumerate(samples):
            if not isinstance(sample, dict) or sample.get("enabled", True) is False:
                continue
            prompt = str(sample.get("prompt") or "").strip()
            if prompt:
                prompts.append(prompt)
            ignored = sorted(set(sample) - SAMPLE_KEYS)
            if ignored:
                warnings.append(
                    f"samples[{index}]: only the prompt is used, not {', '.join(ignored)} (the built-in "
                    "trainer renders with the run's seed, 20 steps, CFG 7, at the training resolution)"
                )
    elif samples is not None:
        warnings.append("samples: not a list; no sample prompts")
    if len(prompts) > MAX_SAMPLE_PROMPTS:
        warnings.append(f"samples: only the first {MAX_SAMPLE_PROMPTS} prompts are used")
        prompts = prompts[:MAX_SAMPLE_PROMPTS]

    sample_every = every(config, "sample_after", "sample_after_unit", per_epoch, warnings, "samples")
    save_every = every(config, "save_every", "save_every_unit", per_epoch, warnings, "saves")
    backup_value = _number(_value(config, "backup_after")) or 0.0
    backup_unit = str(_value(config, "backup_after_unit") or "NEVER")
    backup_set = "backup_after" in config or "backup_after_unit" in config
    if backup_set and backup_unit != "NEVER" and backup_value > 0:
        warnings.append(
            f"backup_after {backup_value:g} {backup_unit}: the built-in trainer makes no scheduled backups "
            "(POST /api/training/backup makes one)"
        )
    output_format = config.get("output_model_format")
    if output_format not in (None, "SAFETENSORS"):
        warnings.append(f"output_model_format {output_format}: the LoRA is saved as safetensors")

    for key in sorted(config):
        if key not in MAPPED and key not in REPLACED:
            warnings.append(f"{key}: not used by the built-in trainer")

    hyperparameters: JsonObject = {
        "resolution": resolution_of(_value(config, "resolution"), errors, warnings),
        "bucketing": config.get("aspect_ratio_bucketing") is not False,
        "batchSize": batch,
        "gradientAccumulationSteps": accumulation,
        "learningRate": _value(config, "learning_rate"),
        "lrScheduler": scheduler,
        "warmupSteps": warmup,
        "maxSteps": max_steps,
        "rank": _value(config, "lora_rank"),
        "alpha": _value(config, "lora_alpha"),
        "mixedPrecision": precision,
        "seed": _value(config, "seed"),
        "saveEverySteps": save_every,
        "sampleEverySteps": sample_every,
        "samplePrompts": prompts,
        "gradientCheckpointing": checkpointing is True or checkpointing in ("ON", "CPU_OFFLOADED"),
    }
    try:
        checked = Hyperparameters.model_validate(hyperparameters)
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            errors.append(f"{FIELD_KEYS.get(where, where)}: {problem['msg']}")
    else:
        result.hyperparameters = checked.model_dump(mode="json")
    return result


FIELD_KEYS = {
    "resolution": "resolution",
    "batchSize": "batch_size",
    "gradientAccumulationSteps": "gradient_accumulation_steps",
    "learningRate": "learning_rate",
    "maxSteps": "epochs",
    "rank": "lora_rank",
    "alpha": "lora_alpha",
    "seed": "seed",
}
"""A hyper-parameter out of the built-in trainer's range, named by the OneTrainer key it came from."""
