"""Workflows: templates from a ConfigMap plus the user's saved workflows on the outputs volume.

- **Templates** come from the ConfigMap ``workflowTemplatesConfigMap`` (gateway namespace), one key
  per workflow: ``<id>.json`` (Helm renders a folder of workflow files into it). A value is either
  a *document* ``{"name", "category", "description", "preset", "workflow": {graph}}`` or a bare
  graph. A missing ``preset`` is the catalog preset whose ``workflows`` lists ``<id>.json``, a
  missing ``category`` that preset's category (else ``Templates``). Keys that are not valid
  workflow ids or not a JSON object are skipped and logged. When the ConfigMap does not exist,
  :data:`DEFAULT_TEMPLATES` (basic SD 1.5 and SDXL txt2img graphs in ComfyUI's API format, for the
  built-in catalog's presets) serves; a failed read serves the last template set read.
- **User workflows** are files ``<outputs>/<workflowUserFolder>/<id>.json`` holding a document as
  above (a bare graph put there by hand is read as well). Saving writes a temporary file in that
  folder and renames it over the target, so a reader never sees half a file.
- **Ids** (file names without ``.json``) are ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (at most 100
  characters, no ``..``); a trailing ``.json`` is accepted and dropped, so the names a preset's
  ``workflows`` lists resolve too. A saved workflow's id is its ``name`` lower-cased with runs of
  other characters turned into ``_``; a name holding a path separator, ``..`` or a control
  character is refused rather than rewritten. Every user file is opened only when its resolved
  real path lies inside the resolved user folder (a symbolic link out of it is refused / skipped).
- **Graphs**: a non-empty JSON object, either ComfyUI's API format (every value a node with a
  string ``class_type`` and an ``inputs`` object) or its UI format (a ``nodes`` list); anything
  else is ``INVALID_WORKFLOW``. Whether the nodes can run is checked at execution, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, KubeError, NotFound
from kubepilot_gateway.profiles.comfyui_docker import catalog as cat
from kubepilot_gateway.profiles.comfyui_docker.config import ComfyUiDockerSettings
from kubepilot_gateway.profiles.comfyui_docker.errors import (
    MAX_GRAPH_DEPTH,
    api_error,
    nested_deeper_than,
    parse_json,
)

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
TEMPLATE_FOLDER = "workflows/templates"
"""The ``path`` prefix templates are listed under (the seed's ``workflows/templates/<id>.json``)."""
TEMPLATE_CATEGORY = "Templates"
USER_CATEGORY = "Custom"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_NAME = 200


@dataclass(frozen=True)
class Workflow:
    """One workflow as listed and served; ``source`` is ``template`` or ``user``."""

    id: str
    name: str
    category: str
    description: str
    preset: str | None
    path: str
    source: str
    graph: JsonObject

    def row(self) -> JsonObject:
        """The seed's list row, plus ``source``."""
        return {
            "id": self.id,
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "preset": self.preset,
            "path": self.path,
            "source": self.source,
        }

    def matches(self, category: str | None, search: str | None) -> bool:
        if category is not None and self.category != category:
            return False
        needle = (search or "").strip().lower()
        return not needle or needle in self.name.lower() or needle in self.description.lower()


def workflow_id(raw: str) -> str | None:
    """``raw`` as a workflow id (``.json`` dropped) when it is one, else None."""
    value = raw[:-5] if raw.endswith(".json") else raw
    if not ID_PATTERN.fullmatch(value) or ".." in value:
        return None
    return value


def id_from_name(name: str) -> str:
    """The id a saved workflow named ``name`` gets; raises ``INVALID_REQUEST`` for a bad name."""
    text = name.strip()
    bad = not text or len(text) > MAX_NAME or "/" in text or "\\" in text or ".." in text
    if bad or any(unicodedata.category(ch).startswith("C") for ch in text):
        raise api_error(
            400,
            "INVALID_REQUEST",
            "A workflow name is 1 to 200 characters without path separators, '..' or control characters",
            {"field": "name"},
        )
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:100]
    return slug or f"custom_{int(time.time())}"


def graph_problem(value: Any) -> str | None:
    """Why ``value`` is not a workflow graph, or None when it is one."""
    if not isinstance(value, dict) or not value:
        return "a workflow is a non-empty JSON object"
    if nested_deeper_than(value, MAX_GRAPH_DEPTH):
        return f"a workflow nests at most {MAX_GRAPH_DEPTH} levels deep"
    if isinstance(value.get("nodes"), list):
        return None  # ComfyUI's UI format
    bad = [
        str(key)
        for key, node in value.items()
        if not isinstance(node, dict)
        or not isinstance(node.get("class_type"), str)
        or not isinstance(node.get("inputs", {}), dict)
    ]
    if bad:
        return f"nodes without a class_type and inputs: {', '.join(sorted(bad)[:10])}"
    return None


def invalid_workflow(message: str, **details: Any) -> Exception:
    return api_error(400, "INVALID_WORKFLOW", message, details)


def _text(value: Any, default: str) -> str:
    return str(value) if isinstance(value, str) and value.strip() else default


def from_document(ident: str, document: Any, *, source: str, path: str) -> Workflow | None:
    """A workflow from a stored document or bare graph; None when it holds no valid graph."""
    if not isinstance(document, dict):
        return None
    meta: JsonObject = document if isinstance(document.get("workflow"), dict) else {}
    graph = meta.get("workflow") if meta else document
    if graph_problem(graph) is not None or not isinstance(graph, dict):
        return None
    preset = meta.get("preset")
    return Workflow(
        id=ident,
        name=_text(meta.get("name"), ident),
        category=_text(meta.get("category"), ""),
        description=_text(meta.get("description"), ""),
        preset=str(preset) if isinstance(preset, str) and preset else None,
        path=path,
        source=source,
        graph=graph,
    )


def parse_templates(data: dict[str, str]) -> tuple[dict[str, Workflow], list[str]]:
    """The templates of a ConfigMap's ``data``; the keys skipped, with why, as problems."""
    found: dict[str, Workflow] = {}
    problems: list[str] = []
    for key in sorted(data):
        ident = workflow_id(key)
        if ident is None or not key.endswith(".json"):
            problems.append(f"{key}: not a <workflow id>.json key")
            continue
        try:
            document = parse_json(data[key])
        except ValueError as error:
            problems.append(f"{key}: not JSON ({error})")
            continue
        flow = from_document(ident, document, source="template", path=f"{TEMPLATE_FOLDER}/{ident}.json")
        if flow is None:
            problems.append(f"{key}: not a workflow graph")
            continue
        found[ident] = flow
    return found, problems


def txt2img_graph(checkpoint: str, size: int, steps: int, cfg: float) -> JsonObject:
    """ComfyUI's basic text-to-image graph in API format, for one checkpoint."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a photograph of a lighthouse at dawn, detailed", "clip": ["4", 1]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, low quality", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 0,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


DEFAULT_TEMPLATES: dict[str, str] = {
    "sd15_t2i_basic.json": json.dumps(
        {
            "name": "SD 1.5 Text-to-Image Basic",
            "description": "Basic text-to-image workflow using the Stable Diffusion 1.5 checkpoint",
            "workflow": txt2img_graph("v1-5-pruned-emaonly.safetensors", 512, 20, 7.0),
        }
    ),
    "sdxl_t2i_basic.json": json.dumps(
        {
            "name": "SDXL Text-to-Image Basic",
            "description": "Basic text-to-image workflow using the SDXL 1.0 base checkpoint",
            "workflow": txt2img_graph("sd_xl_base_1.0.safetensors", 1024, 25, 7.0),
        }
    ),
}
"""Served when the template ConfigMap does not exist (presets SD15_BASE and SDXL_BASE_REFINER of the
built-in catalog list them)."""


class Workflows:
    """The template set (a cached ConfigMap read) and the user folder, for the routes."""

    def __init__(self, ctx: GatewayContext, settings: ComfyUiDockerSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.namespace = ctx.store.namespace
        self.user_folder = Path(ctx.settings.volumes.outputs) / settings.workflowUserFolder
        self._lock = asyncio.Lock()
        self._data: dict[str, str] | None = None
        self._templates: dict[str, Workflow] = {}
        self._read_at = 0.0
        self._user_cache: dict[str, tuple[int, int, Workflow | None]] = {}

    # -- templates --------------------------------------------------------------------------------

    async def templates(self, catalog: cat.Catalog) -> dict[str, Workflow]:
        """The templates, with ``preset`` / ``category`` filled in from ``catalog`` where missing."""
        async with self._lock:
            fresh = time.monotonic() - self._read_at < self.settings.workflowCacheSeconds
            if self._data is None or not fresh:
                data = await self._read_configmap()
                if data != self._data:
                    self._templates, problems = parse_templates(data)
                    for problem in problems:
                        log.warning(
                            "workflow templates %s: %s", self.settings.workflowTemplatesConfigMap, problem
                        )
                    self._data = data
                self._read_at = time.monotonic()
            templates = self._templates
        by_file = {name: preset for preset in catalog.presets for name in preset.workflows}
        filled: dict[str, Workflow] = {}
        for ident, flow in templates.items():
            owner = catalog.get(flow.preset) if flow.preset else by_file.get(f"{ident}.json")
            filled[ident] = dataclasses.replace(
                flow,
                category=flow.category or (owner.category if owner else "") or TEMPLATE_CATEGORY,
                preset=flow.preset or (owner.id if owner else None),
            )
        return filled

    async def _read_configmap(self) -> dict[str, str]:
        path = CONFIGMAPS.path(self.namespace, self.settings.workflowTemplatesConfigMap)
        try:
            configmap = await self.ctx.client.request("GET", path)
        except NotFound:
            return dict(DEFAULT_TEMPLATES)
        except KubeError as error:
            if self._data is None:
                raise
            log.warning("reading the workflow templates failed (%s); serving the last ones read", error)
            return self._data
        data = configmap.get("data") or {}
        return {str(key): str(value) for key, value in data.items()}

    # -- user workflows ---------------------------------------------------------------------------

    def relative(self, ident: str) -> str:
        return f"{self.settings.workflowUserFolder}/{ident}.json"

    def _contained(self, ident: str) -> Path | None:
        """The user file of ``ident`` when its real path lies inside the real user folder."""
        folder = self.user_folder.resolve()
        target = (self.user_folder / f"{ident}.json").resolve()
        return target if target.parent == folder else None

    def _load(self, ident: str) -> Workflow | None:
        """The user workflow ``ident`` (a cached parse while the file is unchanged), None when absent,
        not contained or not a workflow."""
        target = self._contained(ident)
        if target is None:
            return None
        try:
            info = target.stat()
        except OSError:
            return None
        cached = self._user_cache.get(ident)
        if cached is not None and cached[:2] == (info.st_mtime_ns, info.st_size):
            return cached[2]
        flow: Workflow | None = None
        if info.st_size <= self.settings.workflowMaxBytes:
            try:
                document = parse_json(target.read_bytes())
            except (OSError, ValueError):
                document = None
            flow = from_document(ident, document, source="user", path=self.relative(ident))
        if flow is not None and not flow.category:
            flow = dataclasses.replace(flow, category=USER_CATEGORY)
        self._user_cache[ident] = (info.st_mtime_ns, info.st_size, flow)
        return flow

    def _list_user(self) -> list[Workflow]:
        try:
            names = sorted(entry.name for entry in os.scandir(self.user_folder))
        except OSError:
            return []
        found: list[Workflow] = []
        for name in names:
            ident = workflow_id(name) if name.endswith(".json") else None
            flow = self._load(ident) if ident else None
            if flow is not None:
                found.append(flow)
        return found

    async def user(self) -> list[Workflow]:
        return await asyncio.to_thread(self._list_user)

    async def user_one(self, ident: str) -> Workflow | None:
        return await asyncio.to_thread(self._load, ident)

    def _write(self, ident: str, document: JsonObject) -> None:
        self.user_folder.mkdir(parents=True, exist_ok=True)
        if self._contained(ident) is None:
            raise api_error(
                400, "INVALID_REQUEST", "The workflow file lies outside the workflows folder", {"id": ident}
            )
        payload = json.dumps(document, indent=2).encode()
        fd, temp = tempfile.mkstemp(prefix=".save-", suffix=".tmp", dir=self.user_folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            Path(temp).replace(self.user_folder / f"{ident}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temp).unlink()
            raise

    async def save(self, ident: str, document: JsonObject) -> None:
        """Write the user workflow ``ident``; a full volume is the seed's 507 ``INSUFFICIENT_STORAGE``."""
        try:
            await asyncio.to_thread(self._write, ident, document)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise api_error(
                    507, "INSUFFICIENT_STORAGE", "No space left to save the workflow", {"id": ident}
                ) from error
            raise
