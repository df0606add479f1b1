"""HomePilot's image requests as GenerationJobs: build the spec, create, wait, turn outputs into URLs.

- ``imagine_spec`` maps ``/chat`` (mode ``imagine``) fields onto a txt2img spec: ``imgWidth`` /
  ``imgHeight`` (rounded down to a multiple of 8, clamped to 64..maxOutputEdge), ``imgSteps``
  (capped), ``imgCfg``, ``imgSeed`` (HomePilot's 0 = random is our -1), ``imgBatchSize``. The
  message is the prompt as written: HomePilot refines it with its LLM first, which needs the
  application (see the package docstring).
- ``run_job`` creates the object with ``generateName`` and waits for a terminal phase on the
  event bus (subscribed before the create, so no event is missed); the job runs on after a
  client leaves or the wait ends. Labels: ``kubepilot.io/profile=homepilot`` and the HomePilot
  feature (``kubepilot.io/homepilot-feature``).
- Images are served by the profile from the outputs volume at ``/files/kubepilot/<path>``; only
  ``generations/`` (the operator's job folders) and the profile's own staged inputs are served,
  and the relative path is found from the job (``generations/<ns>/<name>-<uid8>/<file>``), so no
  path a client sends reaches the filesystem unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from kubepilot_api.constants import LABEL_PREFIX, LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import resource_for
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME, ImageSettings

JsonObject = dict[str, Any]
GENERATION_JOBS = resource_for("GenerationJob")
LABEL_FEATURE = f"{LABEL_PREFIX}homepilot-feature"
TERMINAL = frozenset({"Completed", "Failed", "Cancelled"})
FILES_PREFIX = "/files/kubepilot/"
"""Where the profile serves images from the outputs volume (other ``/files/`` are the application's)."""
SERVED_ROOTS = ("generations", "homepilot")
"""Folders of the outputs volume served under FILES_PREFIX: job outputs, and staged inputs."""
STAGING = "homepilot/inputs"
MAX_INT64 = 2**63 - 1
"""The largest integer an object of the API server holds (a seed beyond it is refused, 422)."""


def _dimension(value: int | None, default: int, limit: int) -> int:
    size = default if value is None or value <= 0 else value
    return max(64, min(limit, size - size % 8))


def imagine_spec(body: JsonObject, settings: ImageSettings, model: str) -> JsonObject:
    """The txt2img GenerationJob spec for a HomePilot imagine request (``ChatIn`` fields)."""
    steps = body.get("imgSteps") or settings.steps
    seed = body.get("imgSeed")
    cfg = body.get("imgCfg")
    return {
        "type": "txt2img",
        "model": model,
        "prompt": str(body.get("message") or ""),
        "width": _dimension(body.get("imgWidth"), settings.width, settings.maxOutputEdge),
        "height": _dimension(body.get("imgHeight"), settings.height, settings.maxOutputEdge),
        "count": max(1, min(4, int(body.get("imgBatchSize") or 1))),
        "seed": int(seed) if seed is not None and seed > 0 else -1,
        "steps": max(1, min(settings.maxSteps, int(steps))),
        "cfgScale": float(cfg) if cfg is not None else settings.cfgScale,
        "params": {"homepilot": {"mode": "imagine"}},
    }


def job_body(spec: JsonObject, feature: str, settings: ImageSettings) -> JsonObject:
    """The GenerationJob object (``generateName``) for ``spec``."""
    if settings.ttlSecondsAfterFinished is not None:
        spec = {**spec, "ttlSecondsAfterFinished": settings.ttlSecondsAfterFinished}
    return {
        "metadata": {
            "generateName": f"homepilot-{feature}-",
            "labels": {LABEL_PROFILE: PROFILE_NAME, LABEL_FEATURE: feature},
        },
        "spec": spec,
    }


def phase_of(obj: JsonObject | None) -> str:
    return str(((obj or {}).get("status") or {}).get("phase") or "")


def failure_of(obj: JsonObject) -> str:
    """Why a job or pull failed: ``status.error``, else the Failed or Cancelled condition's message."""
    status = obj.get("status") or {}
    error = status.get("error") or {}
    if isinstance(error, dict) and (error.get("message") or error.get("code")):
        return str(error.get("message") or error.get("code"))
    for wanted in ("Failed", "Cancelled"):
        for condition in status.get("conditions") or []:
            if condition.get("type") == wanted and condition.get("status") == "True":
                return str(condition.get("message") or condition.get("reason") or wanted)
    return str(status.get("message") or status.get("phase") or "unknown failure")


async def run_job(ctx: GatewayContext, body: JsonObject, wait_seconds: float) -> JsonObject:
    """Create the job and return it once it finished (or as it stands when ``wait_seconds`` pass)."""
    namespace = ctx.store.namespace
    async with ctx.bus.subscribe(kinds=[GENERATION_JOBS.kind], namespace=namespace) as events:
        created = await ctx.store.create(GENERATION_JOBS, body)
        name = str(created["metadata"]["name"])
        deadline = time.monotonic() + wait_seconds
        while True:
            current = ctx.cache.get(GENERATION_JOBS, name, namespace) or created
            if phase_of(current) in TERMINAL:
                return current
            left = deadline - time.monotonic()
            if left <= 0:
                return current
            # Woken by any job event (a Lagged marker too); a quiet spell re-reads the cache.
            with contextlib.suppress(TimeoutError, StopAsyncIteration):
                await asyncio.wait_for(anext(events), timeout=min(left, 5.0))


def output_folder(obj: JsonObject) -> str:
    """The job's folder relative to the outputs volume (the operator's naming: name and uid)."""
    meta = obj.get("metadata") or {}
    return posixpath.join(
        "generations",
        str(meta.get("namespace") or ""),
        f"{meta.get('name')}-{str(meta.get('uid') or '')[:8]}",
    )


def output_paths(obj: JsonObject) -> list[str]:
    """The job's images, relative to the outputs volume, in batch order."""
    folder = output_folder(obj)
    outputs = sorted(
        (o for o in (obj.get("status") or {}).get("outputs") or [] if isinstance(o, dict)),
        key=lambda o: int(o.get("index") or 0),
    )
    return [posixpath.join(folder, PurePosixPath(str(o.get("path") or "")).name) for o in outputs]


def imagine_media(obj: JsonObject, urls: list[str]) -> JsonObject:
    """HomePilot's imagine ``media``: the images and what made them (``final_prompt``, the seeds the
    generator recorded, size, steps, cfg, model), as its orchestrator answers them."""
    spec = obj.get("spec") or {}
    outputs = sorted(
        (o for o in (obj.get("status") or {}).get("outputs") or [] if isinstance(o, dict)),
        key=lambda o: int(o.get("index") or 0),
    )
    seeds = [int(o["seed"]) for o in outputs if isinstance(o.get("seed"), int)]
    return {
        "images": urls,
        "final_prompt": spec.get("prompt", ""),
        "seed": seeds[0] if seeds else None,
        "seeds": seeds,
        "width": spec.get("width"),
        "height": spec.get("height"),
        "steps": spec.get("steps"),
        "cfg": spec.get("cfgScale"),
        "model": spec.get("model"),
    }


def file_url(base_url: str, relative: str) -> str:
    """The absolute URL the profile serves ``relative`` (under the outputs volume) at."""
    return base_url.rstrip("/") + FILES_PREFIX + relative


def served_file(outputs_root: Path, relative: str) -> Path | None:
    """The file under the outputs volume for a ``/files/kubepilot/<relative>`` URL, or None when the
    path leaves the served folders (``..``, absolute, symlinks), cannot be a path (a NUL byte, a
    name too long) or no such file exists."""
    if "\x00" in relative:
        return None
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] not in SERVED_ROOTS or any(p in ("..", ".", "") for p in parts):
        return None
    if PurePosixPath(relative).is_absolute():
        return None
    try:
        root = outputs_root.resolve()
        candidate = (outputs_root / Path(*parts)).resolve()
        if not candidate.is_relative_to(root / parts[0]) or not candidate.is_file():
            return None
    except (OSError, ValueError):
        return None
    return candidate


def relative_from_url(url: str) -> str | None:
    """``<relative>`` of a URL whose path holds ``/files/kubepilot/<relative>``, else None."""
    path = unquote(urlsplit(url).path)
    index = path.find(FILES_PREFIX)
    if index < 0:
        return None
    return path[index + len(FILES_PREFIX) :]
