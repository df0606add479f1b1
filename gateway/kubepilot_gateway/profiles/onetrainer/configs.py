"""OneTrainer's config format as this profile knows it: defaults, a JSON Schema, validation. Pure.

A OneTrainer config is one JSON object (its ``TrainConfig`` serialised) with a few hundred keys; the
keys below are the ones a LoRA or fine-tuning session is driven by and the ones kubepilot reads
(``base_model_name``, ``concepts``, ``output_model_destination``) or the OneTrainer adapter sets
(``workspace_dir``, ``cache_dir``, ``concept_file_name``, ``sample_definition_file_name``). Every
other key is passed to OneTrainer untouched, so the schema allows additional properties.

Validation answers ``{valid, errors, warnings}`` (an invalid config is still a 200, as the seed
shows): errors are wrong types, unknown enum values and out-of-range numbers of the known keys, and
a config no session could start from (no base model, no concept); warnings are legal but unusual
values, like OneTrainer's own "Learning rate is higher than recommended".
"""

from __future__ import annotations

import copy
import math
from typing import Any

JsonObject = dict[str, Any]

MODEL_TYPES = (
    "STABLE_DIFFUSION_15",
    "STABLE_DIFFUSION_15_INPAINTING",
    "STABLE_DIFFUSION_20",
    "STABLE_DIFFUSION_21",
    "STABLE_DIFFUSION_3",
    "STABLE_DIFFUSION_35",
    "STABLE_DIFFUSION_XL_10_BASE",
    "STABLE_DIFFUSION_XL_10_BASE_INPAINTING",
    "WUERSTCHEN_2",
    "STABLE_CASCADE_1",
    "PIXART_ALPHA",
    "PIXART_SIGMA",
    "FLUX_DEV_1",
    "FLUX_FILL_DEV_1",
    "SANA",
    "HUNYUAN_VIDEO",
    "HI_DREAM_FULL",
)
TRAINING_METHODS = ("FINE_TUNE", "LORA", "EMBEDDING", "FINE_TUNE_VAE")
DTYPES = ("FLOAT_32", "FLOAT_16", "BFLOAT_16", "FLOAT_8", "NFLOAT_4")
SCHEDULERS = (
    "CONSTANT",
    "LINEAR",
    "COSINE",
    "COSINE_WITH_RESTARTS",
    "COSINE_WITH_HARD_RESTARTS",
    "REX",
    "ADAFACTOR",
)
TIME_UNITS = ("EPOCH", "STEP", "SECOND", "MINUTE", "HOUR", "NEVER", "ALWAYS")
HIGH_LEARNING_RATE = {"LORA": 1e-3, "EMBEDDING": 1e-2, "FINE_TUNE": 1e-5, "FINE_TUNE_VAE": 1e-5}
"""Above these OneTrainer's presets never go: a warning, not an error."""


def _string(description: str, enum: tuple[str, ...] | None = None) -> JsonObject:
    schema: JsonObject = {"type": "string", "description": description}
    if enum:
        schema["enum"] = list(enum)
    return schema


def _number(description: str, minimum: float, *, exclusive: bool = False) -> JsonObject:
    key = "exclusiveMinimum" if exclusive else "minimum"
    return {"type": "number", "description": description, key: minimum}


def _integer(description: str, minimum: int) -> JsonObject:
    return {"type": "integer", "description": description, "minimum": minimum}


CONCEPT_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "name": _string("Concept name."),
        "path": _string("Folder of the concept's images (on the datasets volume)."),
        "enabled": {"type": "boolean", "description": "Whether the concept is trained."},
        "include_subdirectories": {"type": "boolean", "description": "Read images from sub-folders too."},
        "balancing": _number("Repeats (or samples) of this concept per epoch.", 0),
        "balancing_strategy": _string("How balancing counts.", ("REPEATS", "SAMPLES")),
    },
    "required": ["path"],
    "additionalProperties": True,
}

PROPERTIES: JsonObject = {
    "model_type": _string("The model family being trained.", MODEL_TYPES),
    "training_method": _string("What is trained.", TRAINING_METHODS),
    "base_model_name": _string("Base model: a file or folder on the models volume."),
    "output_model_destination": _string("Final model file; its stem names the run's output folder."),
    "output_model_format": _string("Format of the saved model.", ("SAFETENSORS", "CKPT", "DIFFUSERS")),
    "workspace_dir": _string("Set by kubepilot: the run's workspace (samples, backups, saves)."),
    "cache_dir": _string("Set by kubepilot: the run's latent cache."),
    "concepts": {"type": "array", "items": CONCEPT_SCHEMA, "description": "Training data, one per folder."},
    "concept_file_name": _string("Set by kubepilot: the concepts file built from the dataset."),
    "learning_rate": _number("Peak learning rate.", 0, exclusive=True),
    "learning_rate_scheduler": _string("Learning-rate schedule.", SCHEDULERS),
    "learning_rate_warmup_steps": _number("Warm-up steps.", 0),
    "epochs": _integer("Epochs to train.", 1),
    "batch_size": _integer("Images per step.", 1),
    "gradient_accumulation_steps": _integer("Micro-batches per optimizer step.", 1),
    "resolution": _string('Training resolution, e.g. "512" or "768,1024".'),
    "train_dtype": _string("Training precision.", DTYPES),
    "seed": _integer("Random seed.", 0),
    "lora_rank": _integer("LoRA rank.", 1),
    "lora_alpha": _number("LoRA alpha.", 0, exclusive=True),
    "sample_after": _number("Sample every N units.", 0),
    "sample_after_unit": _string("Unit of sample_after.", TIME_UNITS),
    "samples": {"type": "array", "items": {"type": "object"}, "description": "Sample prompts."},
    "sample_definition_file_name": _string("Set by kubepilot: the sample prompts file."),
    "save_every": _number("Save every N units (0: only at the end).", 0),
    "save_every_unit": _string("Unit of save_every.", TIME_UNITS),
    "backup_after": _number("Back up every N units.", 0),
    "backup_after_unit": _string("Unit of backup_after.", TIME_UNITS),
}

SCHEMA: JsonObject = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "OneTrainer training config",
    "type": "object",
    "properties": PROPERTIES,
    "required": ["base_model_name"],
    "additionalProperties": True,
}

DEFAULTS: JsonObject = {
    "model_type": "STABLE_DIFFUSION_15",
    "training_method": "LORA",
    "base_model_name": "",
    "output_model_destination": "models/lora.safetensors",
    "output_model_format": "SAFETENSORS",
    "concepts": [],
    "learning_rate": 0.0001,
    "learning_rate_scheduler": "CONSTANT",
    "learning_rate_warmup_steps": 200,
    "epochs": 10,
    "batch_size": 1,
    "gradient_accumulation_steps": 1,
    "resolution": "512",
    "train_dtype": "BFLOAT_16",
    "seed": 42,
    "lora_rank": 16,
    "lora_alpha": 1.0,
    "sample_after": 10,
    "sample_after_unit": "MINUTE",
    "samples": [],
    "save_every": 0,
    "save_every_unit": "NEVER",
    "backup_after": 30,
    "backup_after_unit": "MINUTE",
}


def schema() -> JsonObject:
    return copy.deepcopy(SCHEMA)


def defaults() -> JsonObject:
    return copy.deepcopy(DEFAULTS)


def _type_error(key: str, value: Any, spec: JsonObject) -> str | None:
    kind = spec.get("type")
    if kind == "string" and not isinstance(value, str):
        return f"{key} must be a string"
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{key} must be a number"
        if kind == "integer" and not isinstance(value, int):
            return f"{key} must be an integer"
        if "minimum" in spec and value < spec["minimum"]:
            return f"{key} must be at least {spec['minimum']}"
        if "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]:
            return f"{key} must be greater than {spec['exclusiveMinimum']}"
    if kind == "array" and not isinstance(value, list):
        return f"{key} must be a list"
    if kind == "object" and not isinstance(value, dict):
        return f"{key} must be an object"
    if kind == "boolean" and not isinstance(value, bool):
        return f"{key} must be true or false"
    enum = spec.get("enum")
    if enum and isinstance(value, str) and value not in enum:
        return f"{key} must be one of {', '.join(enum)}"
    return None


def non_finite(value: Any, where: str = "") -> list[str]:
    """Where ``value`` holds NaN or an infinity (Python's JSON reads them; JSON itself, the API server
    included, has no such numbers, so no run can carry them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [where or "the config"]
    if isinstance(value, dict):
        return [
            found for key, item in value.items() for found in non_finite(item, f"{where}.{key}".strip("."))
        ]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in non_finite(item, f"{where}[{index}]")]
    return []


def validate(config: JsonObject) -> JsonObject:
    """``{valid, errors, warnings}`` for a config object."""
    errors: list[str] = [f"{where} must be a finite number" for where in non_finite(config)]
    warnings: list[str] = []
    for key, spec in PROPERTIES.items():
        if key in config and config[key] is not None:
            problem = _type_error(key, config[key], spec)
            if problem:
                errors.append(problem)
    if not str(config.get("base_model_name") or "").strip():
        errors.append("base_model_name is required")
    concepts = config.get("concepts")
    if isinstance(concepts, list):
        for index, concept in enumerate(concepts):
            if not isinstance(concept, dict):
                errors.append(f"concepts[{index}] must be an object")
                continue
            for key, spec in CONCEPT_SCHEMA["properties"].items():
                if key in concept and concept[key] is not None:
                    problem = _type_error(f"concepts[{index}].{key}", concept[key], spec)
                    if problem:
                        errors.append(problem)
            if not str(concept.get("path") or "").strip():
                errors.append(f"concepts[{index}].path is required")
        if not any(isinstance(c, dict) and c.get("enabled", True) is not False for c in concepts):
            errors.append("at least one enabled concept is required")
    elif "concepts" not in config and not config.get("concept_file_name"):
        errors.append("at least one enabled concept is required")
    rate = config.get("learning_rate")
    method = str(config.get("training_method") or "LORA")
    limit = HIGH_LEARNING_RATE.get(method)
    if isinstance(rate, int | float) and not isinstance(rate, bool) and limit and rate > limit:
        warnings.append("Learning rate is higher than recommended")
    return {"valid": not errors, "errors": errors, "warnings": warnings}
