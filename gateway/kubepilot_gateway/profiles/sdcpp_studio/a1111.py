"""Pure translation for the Automatic1111-compatible API (``/sdapi/v1``), in A1111's own shapes.

A1111 clients (SillyTavern, scripts) read A1111's shapes, not the seed's short examples: samplers
as ``[{name, aliases, options}]``, sd-models as ``[{title, model_name, hash, sha256, filename,
config}]``, progress with ``state.job_count`` / ``state.job_no``, and txt2img answering
``{images, parameters, info}`` with ``info`` a JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from kubepilot_gateway.profiles.sdcpp_studio import jobs as tr
from kubepilot_gateway.profiles.sdcpp_studio.config import CatalogModel, SdcppSettings

JsonObject = dict[str, Any]

# The generator's samplers (kubepilot_workers.generator.pipelines), in A1111's spelling. A name
# outside this list runs with the model's own scheduler rather than failing the job.
SAMPLERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Euler a", ("k_euler_a", "k_euler_ancestral")),
    ("Euler", ("k_euler",)),
    ("LMS", ("k_lms",)),
    ("Heun", ("k_heun",)),
    ("DPM++ 2M", ("k_dpmpp_2m",)),
    ("DPM++ 2M Karras", ("k_dpmpp_2m_ka",)),
    ("DPM++ SDE", ("k_dpmpp_sde",)),
    ("DDIM", ()),
    ("DDPM", ()),
    ("PLMS", ()),
    ("PNDM", ()),
    ("UniPC", ()),
    ("LCM", ()),
)
SCHEDULERS: tuple[tuple[str, str], ...] = (("automatic", "Automatic"), ("karras", "Karras"))


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


_BY_NAME = {_norm(name): name for name, _ in SAMPLERS} | {
    _norm(alias): name for name, aliases in SAMPLERS for alias in aliases
}


def samplers() -> list[JsonObject]:
    return [{"name": name, "aliases": list(aliases), "options": {}} for name, aliases in SAMPLERS]


def schedulers() -> list[JsonObject]:
    return [
        {
            "name": name,
            "label": label,
            "aliases": None,
            "options": {},
            "default_rho": -1,
            "need_inner_model": False,
        }
        for name, label in SCHEDULERS
    ]


def sampler_for(sampler_name: Any, scheduler: Any) -> str:
    """The generator's sampler for an A1111 sampler and scheduler; "" (the model's own) when unknown."""
    name = _BY_NAME.get(_norm(str(sampler_name or "")), "")
    if name == "DPM++ 2M" and _norm(str(scheduler or "")) == "karras":
        return "DPM++ 2M Karras"
    return name


def sd_model(entry: CatalogModel) -> JsonObject:
    return {
        "title": entry.id,
        "model_name": entry.id,
        "hash": None,
        "sha256": None,
        "filename": entry.path,
        "config": None,
    }


def sd_models(catalog: Iterable[CatalogModel]) -> list[JsonObject]:
    return [sd_model(entry) for entry in catalog]


def requested_model(body: JsonObject) -> str:
    """``override_settings.sd_model_checkpoint``, then ``sd_model_checkpoint``; "" for neither."""
    override = body.get("override_settings")
    if isinstance(override, dict) and override.get("sd_model_checkpoint"):
        return str(override["sd_model_checkpoint"])
    return str(body.get("sd_model_checkpoint") or "")


def txt2img_request(
    body: Any, model: CatalogModel, settings: SdcppSettings
) -> tuple[tr.Generation, JsonObject]:
    """The generation an A1111 txt2img body asks for, and the parameters A1111 echoes back."""
    return _request(body, model, settings, img2img=False)


def img2img_request(
    body: Any, model: CatalogModel, settings: SdcppSettings
) -> tuple[tr.Generation, JsonObject]:
    """An A1111 img2img body: txt2img's fields plus ``denoising_strength`` (default 0.75); the images
    (``init_images``, ``mask``) are checked and staged by the caller. Echoed parameters carry
    ``init_images`` and ``mask`` as null, as A1111 answers them."""
    return _request(body, model, settings, img2img=True)


def _request(
    body: Any, model: CatalogModel, settings: SdcppSettings, *, img2img: bool
) -> tuple[tr.Generation, JsonObject]:
    if not isinstance(body, dict):
        raise tr.BadRequest("Invalid JSON body", "the body must be a JSON object")
    prompt = body.get("prompt") or ""
    negative = body.get("negative_prompt") or ""
    if not isinstance(prompt, str) or not isinstance(negative, str):
        raise tr.BadRequest("Invalid prompt", "prompt and negative_prompt must be strings")
    tr.check_length("prompt", prompt, tr.MAX_PROMPT)
    tr.check_length("negative_prompt", negative, tr.MAX_PROMPT)
    width = tr.as_int("width", body.get("width", 512) or 512, 1, 100_000)
    height = tr.as_int("height", body.get("height", 512) or 512, 1, 100_000)
    tr.check_dimensions(width, height)
    steps = tr.as_int("steps", body.get("steps") or settings.defaultSteps, 1, 500)
    cfg = tr.as_float(
        "cfg_scale", body.get("cfg_scale", 7.0) if body.get("cfg_scale") is not None else 7.0, 0, 50
    )
    batch_size = tr.as_int("batch_size", body.get("batch_size") or 1, 1, tr.MAX_N)
    n_iter = tr.as_int("n_iter", body.get("n_iter") or body.get("n") or 1, 1, tr.MAX_N)
    if batch_size * n_iter > tr.MAX_N:
        raise tr.BadRequest("Too many images", f"batch_size * n_iter must be at most {tr.MAX_N}")
    seed = tr.as_seed(body.get("seed"))
    styles = body.get("styles")
    if styles is not None and not (isinstance(styles, list) and all(isinstance(s, str) for s in styles)):
        raise tr.BadRequest("Invalid styles", "styles must be a list of style names")
    sampler_name = str(body.get("sampler_name") or body.get("sampler_index") or "Euler a")
    scheduler = str(body.get("scheduler") or "automatic")
    tr.check_length("sampler_name", sampler_name, tr.MAX_NAME)  # both are kept in the job's annotation
    tr.check_length("scheduler", scheduler, tr.MAX_NAME)
    parameters: JsonObject = {
        **body,
        "prompt": prompt,
        "negative_prompt": negative,
        "width": width,
        "height": height,
        "steps": steps,
        "cfg_scale": cfg,
        "sampler_name": sampler_name,
        "scheduler": scheduler,
        "seed": seed,
        "batch_size": batch_size,
        "n_iter": n_iter,
    }
    strength = 0.75
    if img2img:
        raw = body.get("denoising_strength")
        strength = tr.as_float("denoising_strength", raw, 0, 1) if raw is not None else 0.75
        parameters.update(denoising_strength=strength, init_images=None, mask=None)
    generation = tr.Generation(
        kind="edit" if img2img else "generate",
        model=model,
        prompt=prompt,
        negative_prompt=negative,
        width=width,
        height=height,
        n=batch_size * n_iter,
        seed=seed,
        steps=steps,
        cfg_scale=cfg,
        sampler=sampler_for(sampler_name, scheduler),
        source="sdapi",
        extra={
            "sampler_name": sampler_name,
            "scheduler": scheduler,
            "batch_size": batch_size,
            "n_iter": n_iter,
        },
        strength=strength,
    )
    return generation, parameters


def info(cr: JsonObject, parameters: JsonObject, model_id: str) -> str:
    """A1111's ``info``: a JSON string describing what ran (the seeds actually used)."""
    seeds = [int(o.get("seed", -1)) for o in tr.outputs(cr)]
    count = len(seeds)
    created = tr.epoch((cr.get("metadata") or {}).get("creationTimestamp"), "document") or 0
    prompt, negative = parameters["prompt"], parameters["negative_prompt"]
    infotexts = [
        f"{prompt}\nNegative prompt: {negative}\nSteps: {parameters['steps']}, Sampler: "
        f"{parameters['sampler_name']}, CFG scale: {parameters['cfg_scale']}, Seed: {seed}, "
        f"Size: {parameters['width']}x{parameters['height']}, Model: {model_id}"
        for seed in seeds
    ]
    document = {
        "prompt": prompt,
        "all_prompts": [prompt] * count,
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * count,
        "seed": seeds[0] if seeds else parameters["seed"],
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": parameters["width"],
        "height": parameters["height"],
        "sampler_name": parameters["sampler_name"],
        "cfg_scale": parameters["cfg_scale"],
        "steps": parameters["steps"],
        "batch_size": parameters["batch_size"],
        "restore_faces": False,
        "sd_model_name": model_id,
        "sd_model_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": parameters.get("denoising_strength"),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": list(parameters.get("styles") or []),
        "job_timestamp": _stamp(created),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": "kubepilot",
    }
    return json.dumps(document)


def upscalers(settings: SdcppSettings, models_root: str) -> list[JsonObject]:
    """A1111's ``/sdapi/v1/upscalers``: the configured names; ``model_path`` is the file on the models
    volume where the operator's name is a file (a bare file name lives in ``upscale_models/``)."""
    models_prefix = "upscale_models/"
    answer = []
    for entry in settings.upscalers:
        target = entry.upscaler
        is_file = "/" in target or target.lower().endswith(WEIGHT_SUFFIXES)
        relative = target if "/" in target else models_prefix + target
        path = f"{models_root.rstrip('/')}/{relative}" if is_file else None
        answer.append(
            {
                "name": entry.name,
                "model_name": target,
                "model_path": path,
                "model_url": None,
                "scale": entry.scale,
            }
        )
    return answer


WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin", ".onnx", ".gguf")


def _stamp(epoch_seconds: int) -> str:
    """A1111's job timestamp, ``YYYYmmddHHMMSS``."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y%m%d%H%M%S")


def progress(jobs: list[JsonObject]) -> JsonObject:
    """A1111's progress over this profile's active jobs: the running one's fraction and ETA."""
    active = [cr for cr in jobs if tr.phase(cr) in tr.ACTIVE_PHASES]
    running = [cr for cr in active if tr.phase(cr) == "Processing"]
    current = running[-1] if running else None  # newest-first list: the oldest running job
    state: JsonObject = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": "",
        "job_count": len(active),
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    fraction, eta = 0.0, 0.0
    if current is not None:
        report = (current.get("status") or {}).get("progress") or {}
        fraction = tr.progress_fraction(current)
        eta = float(max(int(report.get("etaSeconds", -1)), 0))
        created = tr.epoch((current.get("metadata") or {}).get("creationTimestamp"), "document") or 0
        state.update(
            job=str(current["metadata"]["name"]),
            job_timestamp=_stamp(created),
            job_no=int(report.get("imagesDone", 0)),
            sampling_step=int(report.get("step", 0)),
            sampling_steps=max(int(report.get("totalSteps", 0)), 0),
        )
    return {
        "progress": fraction,
        "eta_relative": eta,
        "state": state,
        "current_image": None,
        "textinfo": None,
    }
