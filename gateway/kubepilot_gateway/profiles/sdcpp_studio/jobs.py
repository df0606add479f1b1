"""Pure translation between sd.cpp Studio's REST shapes and GenerationJobs (no I/O, tested alone).

A queue job and a generation are the same GenerationJob, named by the UUID the client sees. What
the CR spec cannot hold as written (the size string, quality, style, the model id, the seed as
sent, the sd.cpp job type) travels in one annotation, so every answer is rebuilt from the CR alone
and a gateway restart loses nothing. Image ids are ``<generation id>-<index>``: stable, and
resolved through the CR's ``status.outputs`` (never through a path the client sends).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubepilot_api.constants import API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_gateway.app.jsontext import has_lone_surrogate, nested_deeper_than
from kubepilot_gateway.profiles.sdcpp_studio.config import PROFILE_NAME, CatalogModel, Compat, SdcppSettings

JsonObject = dict[str, Any]

ANNOTATION_REQUEST = f"{LABEL_PREFIX}sdcpp-request"
"""The request fields the spec has no place for, as JSON."""
LABEL_SOURCE = f"{LABEL_PREFIX}sdcpp-source"
"""``api`` (the REST API) or ``sdapi`` (the A1111 API): where a job came from."""
PROFILE_LABELS = {LABEL_PROFILE: PROFILE_NAME}

STATUS_OF_PHASE = {
    "Pending": "pending",
    "Processing": "processing",
    "Completed": "completed",
    "Failed": "failed",
    "Cancelled": "cancelled",
}
JOB_STATUSES = frozenset(STATUS_OF_PHASE.values())
ACTIVE_PHASES = frozenset({"Pending", "Processing"})
TERMINAL_PHASES = frozenset({"Completed", "Failed", "Cancelled"})
STATS_KEYS = ("pending", "processing", "completed", "failed")
QUALITIES = frozenset({"auto", "high", "medium", "low", "hd", "standard"})
STYLES = frozenset({"vivid", "natural"})
MAX_N = 10
DEFAULT_SIZE = "512x512"
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_INDEX = re.compile(r"[0-9]{1,3}")
MAX_PROMPT = 32768
"""Longest prompt or negative prompt (characters): the GenerationJob schema's limit."""
MAX_NAME = 100
"""Longest sampler or scheduler name (the schema's limit for ``spec.sampler``)."""
MAX_JSON_DEPTH = 64
"""Deepest nesting a JSON body may have (A1111's deepest, ``alwayson_scripts``, has a handful)."""
MAX_MESSAGE = 200
MAX_DETAIL = 1000
"""Longest ``error`` and ``detail`` texts: a refusal that quotes the client's value (a 5,000-digit
``limit``) quotes its start only, in the answer and in the log."""


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class BadRequest(ValueError):
    """Invalid parameters: answered 400 ``{"error": message}`` (plus ``detail`` when set)."""

    def __init__(self, message: str, detail: str = "") -> None:
        message, detail = clip(message, MAX_MESSAGE), clip(detail, MAX_DETAIL)
        super().__init__(message)
        self.message = message
        self.detail = detail


# -- requests ------------------------------------------------------------------------------------


def parse_json(raw: bytes | str) -> Any:
    """A request body's JSON, or BadRequest ``Invalid JSON body``: not JSON, nested deeper than
    ``MAX_JSON_DEPTH`` (Python's parser would raise RecursionError past its own limit), or holding
    a lone surrogate escape (``"\\ud800"``: Python reads it, but the text cannot be encoded as UTF-8,
    so a job carrying it could never be answered again)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("Invalid JSON body") from None
    if has_lone_surrogate(value):
        raise BadRequest("Invalid JSON body", "the body holds a lone surrogate escape (\\ud800-\\udfff)")
    if nested_deeper_than(value, MAX_JSON_DEPTH):
        raise BadRequest("Invalid JSON body", f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def check_length(name: str, value: str, limit: int) -> str:
    """``value`` when it has at most ``limit`` characters (what the GenerationJob schema holds)."""
    if len(value) > limit:
        raise BadRequest(f"Invalid {name}", f"{name} is longer than {limit} characters")
    return value


def parse_size(value: Any) -> tuple[int, int]:
    """``"WxH"`` → (W, H); both must be 64-4096 and multiples of 8 (what the generator accepts)."""
    match = _SIZE.match(str(value)) if isinstance(value, str | int) else None
    if match is None:
        raise BadRequest(f"Invalid size: {value!r}", "size must look like 512x512")
    width, height = int(match[1]), int(match[2])
    check_dimensions(width, height)
    return width, height


def check_dimensions(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if not 64 <= value <= 4096 or value % 8:
            raise BadRequest(f"Invalid {name}: {value}", f"{name} must be 64-4096 and a multiple of 8")


def as_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer parameter (JSON number or numeric string) within [low, high]."""
    if isinstance(value, bool):
        raise BadRequest(f"Invalid {name}: {value!r}")
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None or not low <= number <= high:
        raise BadRequest(f"Invalid {name}: {value!r}", f"{name} must be an integer from {low} to {high}")
    return number


def as_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise BadRequest(f"Invalid {name}: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid {name}: {value!r}") from None
    if not low <= number <= high:
        raise BadRequest(f"Invalid {name}: {value!r}", f"{name} must be from {low} to {high}")
    return number


def as_seed(value: Any) -> int:
    """A seed: a number (or numeric string); negative or absent means random (-1)."""
    if value is None or value == "":
        return -1
    seed = as_int("seed", value, -(2**63), 2**63 - 1)
    return seed if seed >= 0 else -1


def unknown_model(model_id: str, catalog: Iterable[CatalogModel]) -> BadRequest:
    available = ", ".join(entry.id for entry in catalog)
    return BadRequest(
        f"Invalid model: {model_id}",
        f"Model '{model_id}' not found in configuration. Available models: {available}",
    )


@dataclass(frozen=True)
class Generation:
    """A validated generation request, as both APIs produce it."""

    kind: str  # generate / edit / variation / upscale (the product's job types)
    model: CatalogModel | None  # None for an upscale (no diffusion model)
    prompt: str
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    n: int = 1
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    sampler: str = ""
    quality: str | None = None
    style: str | None = None
    source: str = "api"
    extra: Mapping[str, Any] | None = None
    """More request fields to keep in the annotation (the A1111 request's own)."""
    strength: float = 0.75
    image: str = ""
    """The input image, relative to the outputs volume (staged by the gateway)."""
    mask: str = ""
    images: tuple[str, ...] = ()
    """More input images (a batch upscale)."""
    upscaler: str = ""
    """The operator's upscaler (name or file) for an upscale."""
    upscaler_name: str = ""
    """The upscaler as the client named it."""
    factor: float = 2.0

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def spec_type(self) -> str:
        """The GenerationJob type: an edit with a mask is an inpaint, without one an img2img."""
        if self.kind == "edit":
            return "inpaint" if self.mask else "img2img"
        return {"generate": "txt2img", "variation": "variation", "upscale": "upscale"}[self.kind]


def generate_request(
    body: Any, models: list[CatalogModel], find: Any, *, default_steps: int = 20
) -> Generation:
    """``/api/generate`` and ``/api/queue/generate``: the body checked as the product checks it.

    ``find`` maps a model id to its catalog entry (None when unknown).
    """
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON body", "the body must be a JSON object")
    prompt = body.get("prompt")
    if not prompt:
        raise BadRequest("Missing required field: prompt")
    if not isinstance(prompt, str):
        raise BadRequest("Invalid prompt", "prompt must be a string")
    model_id = body.get("model")
    if not model_id:
        raise BadRequest("Missing required field: model")
    model = find(str(model_id))
    if model is None:
        raise unknown_model(str(model_id), models)
    check_length("prompt", prompt, MAX_PROMPT)
    negative = body.get("negative_prompt") or ""
    if not isinstance(negative, str):
        raise BadRequest("Invalid negative_prompt", "negative_prompt must be a string")
    check_length("negative_prompt", negative, MAX_PROMPT)
    width, height = parse_size(body.get("size") or DEFAULT_SIZE)
    n = as_int("n", body["n"], 1, MAX_N) if body.get("n") is not None else 1
    quality = body.get("quality")
    if quality is not None and quality not in QUALITIES:
        raise BadRequest(f"Invalid quality: {quality!r}", f"quality is one of {', '.join(sorted(QUALITIES))}")
    style = body.get("style")
    if style is not None and style not in STYLES:
        raise BadRequest(f"Invalid style: {style!r}", "style is vivid or natural")
    steps = body.get("sample_steps")
    cfg = body.get("cfg_scale")
    return Generation(
        kind="generate",
        model=model,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        n=n,
        seed=as_seed(body.get("seed")),
        steps=as_int("sample_steps", steps, 1, 500) if steps is not None else default_steps,
        cfg_scale=as_float("cfg_scale", cfg, 0, 50) if cfg is not None else 7.0,
        sampler=check_length("sampling_method", str(body.get("sampling_method") or ""), MAX_NAME),
        quality=quality,
        style=style,
    )


def _optional_text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise BadRequest(f"Invalid {name}", f"{name} must be a string")
    return check_length(name, value, MAX_PROMPT)


def fitted_size(width: int, height: int) -> tuple[int, int]:
    """An input image's size as a generation size: multiples of 8 within 64-4096."""

    def fit(value: int) -> int:
        return min(max(value - value % 8, 64), 4096)

    return fit(width), fit(height)


def image_request(
    kind: str,
    body: Mapping[str, Any],
    image_size: tuple[int, int],
    models: list[CatalogModel],
    find: Any,
    default: CatalogModel | None,
    *,
    default_steps: int = 20,
) -> Generation:
    """``/api/edit``, ``/api/variation`` and their queue forms (fields as strings from multipart, or
    JSON values), checked as the product checks them; the staged images are set by the caller.

    The document lists no ``model`` for these (the product requires one): a missing model is the
    default model. ``size`` defaults to the input image's own size (fitted to multiples of 8), not
    512x512: an edit keeps its picture's shape. ``strength`` (default 0.75) applies to both.
    """
    prompt = _optional_text(body, "prompt")
    if kind == "edit" and not prompt:
        raise BadRequest("Missing required field: prompt")
    model_id = body.get("model")
    if model_id:
        model = find(str(model_id))
        if model is None:
            raise unknown_model(str(model_id), models)
    elif default is not None:
        model = default
    else:
        raise BadRequest("Missing required field: model")
    width, height = parse_size(body["size"]) if body.get("size") else fitted_size(*image_size)
    steps = body.get("sample_steps")
    cfg = body.get("cfg_scale")
    strength = body.get("strength")
    return Generation(
        kind=kind,
        model=model,
        prompt=prompt,
        negative_prompt=_optional_text(body, "negative_prompt"),
        width=width,
        height=height,
        n=as_int("n", body["n"], 1, MAX_N) if body.get("n") not in (None, "") else 1,
        seed=as_seed(body.get("seed")),
        steps=as_int("sample_steps", steps, 1, 500) if steps not in (None, "") else default_steps,
        cfg_scale=as_float("cfg_scale", cfg, 0, 50) if cfg not in (None, "") else 7.0,
        sampler=check_length("sampling_method", str(body.get("sampling_method") or ""), MAX_NAME),
        strength=as_float("strength", strength, 0, 1) if strength not in (None, "") else 0.75,
    )


@dataclass(frozen=True)
class UpscaleFields:
    """Where an upscale request keeps its settings: the product's multipart names or A1111's JSON ones."""

    upscaler: str
    factor: str
    width: str
    height: str


PRODUCT_UPSCALE = UpscaleFields("upscaler", "upscale_factor", "target_width", "target_height")
A1111_UPSCALE = UpscaleFields("upscaler_1", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h")


def upscale_request(
    body: Mapping[str, Any],
    image_size: tuple[int, int],
    settings: SdcppSettings,
    names: UpscaleFields = PRODUCT_UPSCALE,
) -> Generation:
    """An upscale (SD-09, SD-43, SD-44): the upscaler by the client's name (``settings.upscalers``)
    and the factor: ``resize_mode`` 0 takes it as sent (default 2.0), 1 derives it from
    ``target_width``/``target_height`` (both required) as the factor that covers the target; the
    image keeps its aspect ratio (no crop). The factor must lie within 1-8 (the generator's range).
    """
    asked = str(body.get(names.upscaler) or "")
    entry = settings.upscaler(asked)
    if entry is None:
        known = ", ".join(e.name for e in settings.upscalers)
        raise BadRequest(
            f"Upscaler not found: {asked or settings.defaultUpscaler}", f"Available upscalers: {known}"
        )
    mode = body.get("resize_mode")
    resize_mode = as_int("resize_mode", mode, 0, 1) if mode not in (None, "") else 0
    width, height = image_size
    if resize_mode == 0:
        raw = body.get(names.factor)
        factor = as_float(names.factor, raw, 1, 8) if raw not in (None, "") else 2.0
    else:
        targets = []
        for name in (names.width, names.height):
            if body.get(name) in (None, ""):
                raise BadRequest(f"Missing required field: {name}", "required when resize_mode is 1")
            targets.append(as_int(name, body[name], 1, 8 * 4096))
        factor = max(targets[0] / width, targets[1] / height)
        if not 1 <= factor <= 8:
            raise BadRequest(
                "Invalid target size",
                f"{targets[0]}x{targets[1]} from {width}x{height} needs a factor of {factor:.2f}; "
                "upscaling goes from 1 to 8 times",
            )
    out_w, out_h = max(1, round(width * factor)), max(1, round(height * factor))
    return Generation(
        kind="upscale",
        model=None,
        prompt="",
        width=out_w,
        height=out_h,
        upscaler=entry.upscaler,
        upscaler_name=entry.name,
        factor=factor,
    )


def new_job_id() -> str:
    return str(uuid.uuid4())


def generation_job(job_id: str, request: Generation, outputs_root: str = "") -> JsonObject:
    """The GenerationJob for ``request``, named ``job_id``; ``outputs_root`` is the gateway's path of
    the outputs volume (shown as the job's ``input_image_path``)."""
    spec: JsonObject = {"type": request.spec_type}
    kept: JsonObject = {"kind": request.kind, "size": request.size}
    if request.kind == "upscale":
        spec.update(upscale={"upscaler": request.upscaler, "factor": request.factor})
        kept.update(upscaler=request.upscaler_name or request.upscaler, factor=request.factor)
    else:
        assert request.model is not None
        spec.update(
            model=request.model.path,
            prompt=request.prompt,
            negativePrompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            count=request.n,
            seed=request.seed,
            steps=request.steps,
            cfgScale=request.cfg_scale,
            sampler=request.sampler,
        )
        kept.update(
            model=request.model.id,
            quality=request.quality,
            style=request.style,
            seed=request.seed if request.seed >= 0 else None,
        )
        if request.image:
            spec["strength"] = request.strength
            kept["strength"] = request.strength
    if request.image:
        inputs: JsonObject = {"image": request.image}
        if request.mask:
            inputs["mask"] = request.mask
        if request.images:
            inputs["images"] = list(request.images)
        spec["inputs"] = inputs
        kept["input_image_path"] = (
            f"{outputs_root.rstrip('/')}/{request.image}" if outputs_root else request.image
        )
    if request.extra:
        kept["extra"] = dict(request.extra)
    return {
        "apiVersion": API_VERSION,
        "kind": "GenerationJob",
        "metadata": {
            "name": job_id,
            "labels": {**PROFILE_LABELS, LABEL_SOURCE: request.source},
            "annotations": {ANNOTATION_REQUEST: json.dumps(kept, separators=(",", ":"))},
        },
        "spec": spec,
    }


def input_paths(cr: JsonObject) -> list[str]:
    """The job's input images (relative to the outputs volume), as its spec names them."""
    inputs = (cr.get("spec") or {}).get("inputs") or {}
    found = [inputs.get("image"), inputs.get("mask"), *(inputs.get("images") or [])]
    return [str(path) for path in found if path]


# -- answers -------------------------------------------------------------------------------------


def is_ours(cr: JsonObject) -> bool:
    return ((cr.get("metadata") or {}).get("labels") or {}).get(LABEL_PROFILE) == PROFILE_NAME


def looks_like_id(value: str) -> bool:
    return bool(_UUID.match(value))


def kept_request(cr: JsonObject) -> JsonObject:
    raw = ((cr.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REQUEST) or "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def phase(cr: JsonObject) -> str:
    return str((cr.get("status") or {}).get("phase") or "Pending")


def job_status(cr: JsonObject) -> str:
    return STATUS_OF_PHASE.get(phase(cr), "pending")


def epoch(stamp: Any, compat: Compat) -> int | None:
    """An RFC 3339 time as the product's epoch: seconds (document) or milliseconds (product)."""
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    seconds = moment.timestamp()
    return int(seconds * 1000) if compat == "product" else int(seconds)


def progress_fraction(cr: JsonObject) -> float:
    status = cr.get("status") or {}
    if status.get("phase") == "Completed":
        return 1.0
    percent = int(((status.get("progress") or {}).get("percent")) or -1)
    return round(percent / 100, 4) if percent >= 0 else 0.0


def error_text(cr: JsonObject) -> str | None:
    error = (cr.get("status") or {}).get("error") or {}
    if not error:
        return None
    return str(error.get("message") or error.get("code") or "Generation failed")


def _updated(cr: JsonObject) -> Any:
    status = cr.get("status") or {}
    return (
        status.get("completedAt")
        or ((status.get("progress") or {}).get("lastUpdatedTime"))
        or status.get("startedAt")
        or (cr.get("metadata") or {}).get("creationTimestamp")
    )


def _base(cr: JsonObject, compat: Compat) -> JsonObject:
    meta = cr.get("metadata") or {}
    spec = cr.get("spec") or {}
    kept = kept_request(cr)
    seed = kept.get("seed")
    return {
        "id": meta.get("name"),
        "type": kept.get("kind") or "generate",
        "model": kept.get("model") or spec.get("model"),
        "prompt": spec.get("prompt", ""),
        "negative_prompt": spec.get("negativePrompt") or None,
        "size": kept.get("size") or f"{spec.get('width', 512)}x{spec.get('height', 512)}",
        "seed": str(seed) if seed is not None else None,
        "n": spec.get("count", 1),
        "created_at": epoch(meta.get("creationTimestamp"), compat),
        "updated_at": epoch(_updated(cr), compat),
    }


def job_object(cr: JsonObject, compat: Compat) -> JsonObject:
    """A queue job (SD-10/11/12)."""
    status = cr.get("status") or {}
    kept = kept_request(cr)
    return {
        **_base(cr, compat),
        "quality": kept.get("quality"),
        "style": kept.get("style"),
        "input_image_path": kept.get("input_image_path"),
        "status": job_status(cr),
        "progress": progress_fraction(cr),
        "error": error_text(cr),
        "started_at": epoch(status.get("startedAt"), compat),
        "completed_at": epoch(status.get("completedAt"), compat),
    }


def image_id(generation_id: str, index: int) -> str:
    return f"{generation_id}-{index}"


def split_image_id(value: str) -> tuple[str, int] | None:
    """(generation id, index) of an image id; None when it is not one of ours."""
    generation, _, index = value.rpartition("-")
    if not looks_like_id(generation) or not _INDEX.fullmatch(index):  # ASCII: "²" is a digit to isdigit()
        return None
    return generation, int(index)


def outputs(cr: JsonObject) -> list[JsonObject]:
    found = (cr.get("status") or {}).get("outputs") or []
    return sorted((o for o in found if isinstance(o, dict)), key=lambda o: int(o.get("index", 0)))


def image_object(cr: JsonObject, output: JsonObject, outputs_root: str) -> JsonObject:
    """One image of a generation (SD-16/19); ``file_path`` is where the gateway reads it."""
    name = str((cr.get("metadata") or {}).get("name"))
    index = int(output.get("index", 0))
    return {
        "id": image_id(name, index),
        "generation_id": name,
        "index_in_batch": index,
        "file_path": f"{outputs_root.rstrip('/')}/{output.get('path', '')}",
        "mime_type": output.get("mimeType") or "image/png",
        "width": output.get("width"),
        "height": output.get("height"),
        "revised_prompt": None,
    }


def generation_summary(cr: JsonObject, compat: Compat) -> JsonObject:
    """A generations-list row (SD-15); the product's rows also carry the job's status."""
    row = {**_base(cr, compat), "image_count": len(outputs(cr))}
    if compat == "product":
        row.update(status=job_status(cr), progress=progress_fraction(cr), error=error_text(cr))
    return row


def generation_detail(cr: JsonObject, compat: Compat, outputs_root: str) -> JsonObject:
    """A generation with its images (SD-16)."""
    images = [image_object(cr, output, outputs_root) for output in outputs(cr)]
    detail = {**generation_summary(cr, compat), "images": images}
    if compat == "document":
        detail.pop("image_count", None)
    return detail


def sync_answer(cr: JsonObject) -> JsonObject:
    """What the synchronous endpoints answer (SD-03/04/05): OpenAI-style ids of the images."""
    name = str((cr.get("metadata") or {}).get("name"))
    return {
        "id": name,
        "created": epoch((cr.get("metadata") or {}).get("creationTimestamp"), "document"),
        "data": [
            {
                "id": image_id(name, int(o.get("index", 0))),
                "index": int(o.get("index", 0)),
                "revised_prompt": None,
            }
            for o in outputs(cr)
        ],
    }


def generation_logs(cr: JsonObject) -> JsonObject:
    """SD-34 from the job's conditions (what the operator recorded), oldest first; ISO times."""
    entries = []
    for condition in (cr.get("status") or {}).get("conditions") or []:
        if not isinstance(condition, dict) or not condition.get("message"):
            continue
        failed = condition.get("type") == "Failed" and condition.get("status") == "True"
        entries.append(
            {
                "timestamp": str(condition.get("lastTransitionTime") or ""),
                "level": "error" if failed else "info",
                "message": f"{condition.get('type')}: {condition.get('message')}",
            }
        )
    return {"logs": sorted(entries, key=lambda entry: entry["timestamp"])}


def stats(jobs: Iterable[JsonObject]) -> dict[str, int]:
    """Counts by status; exactly the document's four keys (no ``cancelled``)."""
    counts = dict.fromkeys(STATS_KEYS, 0)
    for cr in jobs:
        status = job_status(cr)
        if status in counts:
            counts[status] += 1
    return counts


def newest_first(jobs: Iterable[JsonObject]) -> list[JsonObject]:
    """Newest first by creation time (name breaks ties, so pages are stable)."""

    def key(cr: JsonObject) -> tuple[str, str]:
        meta = cr.get("metadata") or {}
        return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")

    return sorted(jobs, key=key, reverse=True)
