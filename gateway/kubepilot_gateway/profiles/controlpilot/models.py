"""ControlPilot's model manifest and pull jobs, translated to and from ModelPulls. Pure: no I/O.

**The manifest** is ControlPilot's catalog, one model a line: ``name|kind|source|subdir|include|size``
(``#`` starts a comment; blank lines are skipped). ``kind`` is ``hf_file`` (``source`` =
``<repo>:<path in repo>``), ``hf_repo`` (``source`` = ``<repo>``, ``include`` = comma-separated
glob patterns) or ``url`` (``source`` = an http(s) URL). ``subdir`` is the folder under the models
volume (``checkpoints``, ``vae``, ``loras/styles``); ``size`` is ``6.9gb`` / ``335mb`` / bytes. A
line this module cannot turn into a ModelPull (fewer than four fields, an unknown kind, a bad
repository id or an unsafe folder) is left out of the catalog and reported in ``problems``.

**A pull** of entry ``name`` is one ModelPull with a deterministic name (:func:`pull_name`), so
two concurrent ``pull/start`` calls create one object: the API server is the lock. Its
destination is ``subdir`` split into the type folder (``modelType``, when the first segment is
one of the store's type folders) and the rest; a first segment the store does not know lands
under ``other/`` (``refiners/x`` → ``other/refiners/x``), the one place the layout differs from
ControlPilot's.

**Job dicts** (CP-10/11/12) are rendered from the ModelPull: Pending / Downloading / Paused →
``running``; Completed → ``done``; Failed / Cancelled → ``error``; being deleted (Removing) →
``idle``. A finished job reads ``idle`` again :data:`JOB_TTL_SECONDS` after it finished, as
ControlPilot forgets finished jobs after 10 minutes. ``pid`` is always null (no process of ours
to name); ``output_tail`` is written from the status (what ControlPilot's CLI would have
printed: the source, progress, the files, the error), so every gateway replica renders the same.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

from kubepilot_api.constants import API_VERSION, LABEL_PREFIX, LABEL_PROFILE
from kubepilot_api.modelpull import ModelPullPhase, ModelType

JsonObject = dict[str, Any]

PROFILE_NAME = "controlpilot"
CATALOG = "controlpilot-manifest"
"""``spec.catalogRef.catalog`` and the catalog label's value."""
LABEL_CATALOG = f"{LABEL_PREFIX}catalog"
LABEL_CATALOG_ENTRY = f"{LABEL_PREFIX}catalog-entry"
"""The entry as a label value (:func:`entry_label`); ``spec.catalogRef.entry`` holds the exact name."""
JOB_TTL_SECONDS = 10 * 60
OUTPUT_TAIL_MAX = 200
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx")

_REPO = re.compile(r"^[A-Za-z0-9][-._A-Za-z0-9]*(/[A-Za-z0-9][-._A-Za-z0-9]*)?$")
_TYPE_FOLDERS = {t.value for t in ModelType}

DEFAULT_MANIFEST = """\
# ControlPilot model manifest: name|kind|source|subdir|include|size
# kind: hf_file (source repo:path), hf_repo (source repo; include = comma-separated globs), url
sdxl-base-1.0|hf_file|stabilityai/stable-diffusion-xl-base-1.0:sd_xl_base_1.0.safetensors|checkpoints||6.94gb
sd-1.5|hf_file|stable-diffusion-v1-5/stable-diffusion-v1-5:v1-5-pruned-emaonly.safetensors|checkpoints||4.27gb
sdxl-vae-fp16-fix|hf_file|madebyollin/sdxl-vae-fp16-fix:sdxl_vae.safetensors|vae||335mb
sd-turbo|hf_repo|stabilityai/sd-turbo|diffusers/sd-turbo|*.json,*.txt,*.fp16.safetensors|2.6gb
realesrgan-x4plus|url|https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth|upscale_models||64mb
"""
"""The catalog served when the manifest ConfigMap does not exist, so the endpoints work out of the box."""

_SUBDIR_TYPES = {
    "checkpoints": "checkpoint",
    "diffusion_models": "checkpoint",
    "vae": "vae",
    "vae_approx": "vae",
    "loras": "lora",
    "refiners": "refiner",
    "text_encoders": "text_encoder",
    "clip": "clip",
    "clip_vision": "clip_vision",
    "controlnet": "controlnet",
    "diffusers": "diffusers",
    "embeddings": "embedding",
    "hypernetworks": "hypernetwork",
    "unet": "unet",
    "upscale_models": "upscale",
}
"""ControlPilot's ``type`` by the first folder of ``subdir`` (``checkpoint`` for any other)."""


class ManifestKind(StrEnum):
    """The three kinds of manifest line ControlPilot pulls."""

    HF_FILE = "hf_file"
    HF_REPO = "hf_repo"
    URL = "url"


class JobState(StrEnum):
    """ControlPilot's pull job states (CP-10/11/12)."""

    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"


class ManifestError(ValueError):
    """A manifest line that cannot become a ModelPull."""


@dataclass(frozen=True)
class Destination:
    """Where an entry's files land: ``modelType`` and ``subdir`` of the ModelPull."""

    model_type: str
    subdir: str = ""

    @property
    def relative(self) -> str:
        """The folder relative to the models volume (``checkpoints``, ``other/refiners``)."""
        return posixpath.join(self.model_type, self.subdir) if self.subdir else self.model_type


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line, checked: every entry here can be pulled."""

    name: str
    kind: ManifestKind
    source: str
    subdir: str
    include: str = ""
    size: str = ""
    destination: Destination = field(default_factory=lambda: Destination(ModelType.OTHER.value))

    @property
    def repo(self) -> str:
        """The Hugging Face repository (hf_* kinds)."""
        return self.source.split(":", 1)[0] if self.kind is not ManifestKind.URL else ""

    @property
    def path_in_repo(self) -> str:
        """The file inside the repository (hf_file)."""
        return self.source.split(":", 1)[1] if self.kind is ManifestKind.HF_FILE else ""

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.include.split(",") if part.strip())

    @property
    def url_filename(self) -> str:
        if self.kind is not ManifestKind.URL:
            return ""
        return posixpath.basename(unquote(urlsplit(self.source).path))

    @property
    def expected_size_bytes(self) -> int | None:
        return parse_size(self.size)

    @property
    def size_is_exact(self) -> bool:
        return self.size.strip().isdigit()

    @property
    def category(self) -> str:
        """ControlPilot's family guess from the name, source and folder."""
        key = f"{self.name} {self.source} {self.subdir}".lower()
        if "flux" in key:
            return "FLUX"
        if "wan" in key:
            return "WAN"
        if any(k in key for k in ("sdxl", "sd_xl", "stable-diffusion-xl", "-xl", "xl-")):
            return "SDXL"
        return "OTHERS"

    @property
    def type(self) -> str:
        return _SUBDIR_TYPES.get(self.subdir.split("/")[0], "checkpoint")

    @property
    def info_url(self) -> str | None:
        if self.kind is ManifestKind.URL:
            return self.source
        return f"https://huggingface.co/{self.repo}"

    @property
    def expected_files(self) -> tuple[str, ...]:
        """Files (relative to the models volume) a single-file entry installs: none for hf_repo."""
        if self.kind is ManifestKind.HF_FILE:
            return (posixpath.join(self.destination.relative, self.path_in_repo),)
        if self.kind is ManifestKind.URL:
            return (posixpath.join(self.destination.relative, self.url_filename),)
        return ()

    @property
    def dedicated_folder(self) -> bool:
        """Whether an hf_repo entry has a folder of its own (not a bare type folder shared by many)."""
        return "/" in self.destination.relative

    def matches(self, relative: str) -> bool:
        """Whether a file (relative to the models volume) belongs to this hf_repo entry on disk."""
        folder = self.destination.relative + "/"
        if not relative.startswith(folder):
            return False
        inside = relative[len(folder) :]
        return not self.patterns or any(fnmatch.fnmatch(inside, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class Manifest:
    """The parsed catalog: its entries (first of a name wins) and the lines left out, with why."""

    entries: tuple[ManifestEntry, ...]
    problems: tuple[str, ...] = ()

    def get(self, name: str) -> ManifestEntry | None:
        return next((entry for entry in self.entries if entry.name == name), None)


# -- the manifest --------------------------------------------------------------------------------


def parse_size(raw: str) -> int | None:
    """``6.94gb`` / ``335MB`` / ``12kb`` / ``1tb`` (binary multiples) or plain bytes; None if unreadable."""
    text = raw.strip().lower()
    if not text:
        return None
    for suffix, factor in (("tb", 1024**4), ("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if text.endswith(suffix):
            text, multiplier = text[: -len(suffix)].strip(), factor
            break
    else:
        multiplier = 1
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value * multiplier) if value >= 0 else None


def destination_for(subdir: str) -> Destination:
    """The ModelPull destination of a manifest ``subdir``; ManifestError when it is not a safe folder."""
    parts = subdir.replace("\\", "/").strip().strip("/").split("/")
    if not subdir.strip() or subdir.strip().startswith("/") or any(not p or p.startswith(".") for p in parts):
        raise ManifestError(f"unsafe or empty folder {subdir!r}")
    if parts[0] in _TYPE_FOLDERS:
        return Destination(parts[0], "/".join(parts[1:]))
    return Destination(ModelType.OTHER.value, "/".join(parts))


def entry_from_fields(fields: list[str]) -> ManifestEntry:
    """A checked entry from one line's fields; ManifestError with the reason when it cannot be pulled."""
    if len(fields) < 4:
        raise ManifestError("fewer than 4 fields (name|kind|source|subdir)")
    name, kind_text, source, subdir = (part.strip() for part in fields[:4])
    include = fields[4].strip() if len(fields) > 4 else ""
    size = fields[5].strip() if len(fields) > 5 else ""
    if not name:
        raise ManifestError("empty name")
    try:
        kind = ManifestKind(kind_text)
    except ValueError:
        raise ManifestError(f"{name}: unknown kind {kind_text!r}") from None
    if kind is ManifestKind.URL:
        if not re.match(r"^https?://", source):
            raise ManifestError(f"{name}: not an http(s) URL")
        filename = posixpath.basename(unquote(urlsplit(source).path))
        if not filename or filename.startswith("."):
            raise ManifestError(f"{name}: the URL names no file")
    else:
        repo, _, path = source.partition(":")
        if not _REPO.match(repo):
            raise ManifestError(f"{name}: bad repository id {repo!r}")
        if kind is ManifestKind.HF_FILE:
            parts = path.split("/")
            if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise ManifestError(f"{name}: hf_file needs repo:path with a safe path")
    try:
        destination = destination_for(subdir)
    except ManifestError as error:
        raise ManifestError(f"{name}: {error}") from None
    return ManifestEntry(name, kind, source, subdir.strip().strip("/"), include, size, destination)


def parse_manifest(text: str) -> Manifest:
    """Every pullable line of a manifest, in order (the first line of a name wins)."""
    entries: list[ManifestEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = entry_from_fields(line.split("|"))
        except ManifestError as error:
            problems.append(f"line {number}: {error}")
            continue
        if entry.name in seen:
            problems.append(f"line {number}: {entry.name}: duplicate name, the first one is used")
            continue
        seen.add(entry.name)
        entries.append(entry)
    return Manifest(tuple(entries), tuple(problems))


# -- ModelPulls ----------------------------------------------------------------------------------


def entry_label(name: str) -> str:
    """A label-safe, collision-free form of an entry name: a readable slug and a hash of the name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:30].strip("-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{slug}-{digest}" if slug else digest


def pull_name(name: str) -> str:
    """The ModelPull of entry ``name``: one name per entry (≤ 48 characters, so child names fit)."""
    return f"cp-model-{entry_label(name)}"


def pull_labels(name: str) -> dict[str, str]:
    return {LABEL_PROFILE: PROFILE_NAME, LABEL_CATALOG: CATALOG, LABEL_CATALOG_ENTRY: entry_label(name)}


def source_for(entry: ManifestEntry) -> JsonObject:
    """``spec.source`` of an entry."""
    if entry.kind is ManifestKind.URL:
        url: JsonObject = {"url": entry.source, "path": entry.url_filename}
        if entry.size_is_exact:
            url["sizeBytes"] = int(entry.size.strip())
        return {"type": "URL", "urls": [url]}
    huggingface: JsonObject = {"repo": entry.repo}
    if entry.kind is ManifestKind.HF_FILE:
        huggingface["files"] = [entry.path_in_repo]
    elif entry.patterns:
        huggingface["allowPatterns"] = list(entry.patterns)
    return {"type": "HuggingFace", "huggingFace": huggingface}


def new_model_pull(entry: ManifestEntry, *, credentials: tuple[str, str] | None = None) -> JsonObject:
    """The ModelPull that pulls ``entry``; ``credentials`` (Secret name, key) is the Hugging Face
    token, referenced by Hugging Face pulls only (a plain URL never gets the token)."""
    destination: JsonObject = {"modelType": entry.destination.model_type}
    if entry.destination.subdir:
        destination["subdir"] = entry.destination.subdir
    spec: JsonObject = {
        "source": source_for(entry),
        "destination": destination,
        "displayName": entry.name,
        "category": entry.category,
        "catalogRef": {"catalog": CATALOG, "entry": entry.name},
        "deletePolicy": "Delete",
    }
    expected = entry.expected_size_bytes
    if expected is not None:
        spec["expectedSizeBytes"] = expected
    if credentials is not None and entry.kind is not ManifestKind.URL:
        spec["credentialsSecretRef"] = {"name": credentials[0], "key": credentials[1]}
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelPull",
        "metadata": {"name": pull_name(entry.name), "labels": pull_labels(entry.name)},
        "spec": spec,
    }


# -- reading a ModelPull -------------------------------------------------------------------------


def _dict(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _epoch(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def phase(pull: JsonObject) -> str:
    return str(_dict(pull.get("status")).get("phase") or ModelPullPhase.PENDING.value)


def deleting(pull: JsonObject) -> bool:
    return bool(_dict(pull.get("metadata")).get("deletionTimestamp"))


def entry_name(pull: JsonObject) -> str:
    """The manifest name a ModelPull was made from ('' when it is not one of ours)."""
    ref = _dict(_dict(pull.get("spec")).get("catalogRef"))
    return str(ref.get("entry") or "") if ref.get("catalog") == CATALOG else ""


def pulled_files(pull: JsonObject | None) -> list[str]:
    """``status.files[].path`` (relative to the models volume)."""
    if pull is None:
        return []
    files = _dict(pull.get("status")).get("files") or []
    return [str(f["path"]) for f in files if isinstance(f, dict) and f.get("path")]


def job_state(pull: JsonObject | None) -> JobState:
    if pull is None or deleting(pull):
        return JobState.IDLE
    current = phase(pull)
    if current == ModelPullPhase.COMPLETED:
        return JobState.DONE
    if current in (ModelPullPhase.FAILED, ModelPullPhase.CANCELLED):
        return JobState.ERROR
    if current == ModelPullPhase.REMOVING:
        return JobState.IDLE
    return JobState.RUNNING


def _condition_message(pull: JsonObject, condition_type: str) -> str:
    for condition in _dict(pull.get("status")).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == condition_type:
            return str(condition.get("message") or "")
    return ""


def error_text(pull: JsonObject) -> str | None:
    """Why a pull ended in ``error``; None for any other state."""
    if job_state(pull) is not JobState.ERROR:
        return None
    if phase(pull) == ModelPullPhase.CANCELLED:
        return "cancelled"
    error = _dict(_dict(pull.get("status")).get("error"))
    return str(error.get("message") or _condition_message(pull, "Failed") or "download failed")


def progress_pct(pull: JsonObject) -> int | None:
    state = job_state(pull)
    if state is JobState.DONE:
        return 100
    if state is not JobState.RUNNING:
        return None
    percent = _dict(_dict(pull.get("status")).get("progress")).get("percent")
    return int(percent) if isinstance(percent, int) and 0 <= percent <= 100 else None


def started_at(pull: JsonObject) -> float | None:
    status = _dict(pull.get("status"))
    return _epoch(status.get("startedAt")) or _epoch(_dict(pull.get("metadata")).get("creationTimestamp"))


def updated_at(pull: JsonObject) -> float | None:
    """The latest moment the status speaks of (progress, conditions, completion), else the creation."""
    status = _dict(pull.get("status"))
    moments = [
        _epoch(_dict(status.get("progress")).get("lastUpdatedTime")),
        _epoch(status.get("completedAt")),
        _epoch(status.get("startedAt")),
        _epoch(_dict(pull.get("metadata")).get("creationTimestamp")),
        *(_epoch(c.get("lastTransitionTime")) for c in status.get("conditions") or [] if isinstance(c, dict)),
    ]
    known = [moment for moment in moments if moment is not None]
    return max(known) if known else None


def finished_at(pull: JsonObject) -> float | None:
    status = _dict(pull.get("status"))
    return _epoch(status.get("completedAt")) or updated_at(pull)


def _size(count: object) -> str:
    number = float(count) if isinstance(count, int | float) else 0.0
    for unit in ("B", "KB", "MB", "GB"):
        if number < 1024 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    raise AssertionError("unreachable")


def _source_text(spec: JsonObject) -> str:
    source = _dict(spec.get("source"))
    hf = _dict(source.get("huggingFace"))
    if hf:
        files = hf.get("files") or []
        return f"{hf.get('repo')}:{files[0]}" if len(files) == 1 else str(hf.get("repo"))
    urls = source.get("urls") or []
    return str(_dict(urls[0]).get("url")) if urls else str(source.get("type") or "")


def output_lines(pull: JsonObject) -> list[str]:
    """What ControlPilot's pull CLI would have printed so far, written from the status."""
    spec = _dict(pull.get("spec"))
    status = _dict(pull.get("status"))
    destination = _dict(spec.get("destination"))
    folder = "/".join(p for p in (destination.get("modelType"), destination.get("subdir")) if p)
    lines = [f"Pulling {spec.get('displayName') or entry_name(pull)} from {_source_text(spec)} into {folder}"]
    waiting = _condition_message(pull, "Progressing") or _condition_message(pull, "Ready")
    current = phase(pull)
    if current == ModelPullPhase.PENDING and waiting:
        lines.append(f"Waiting: {waiting}")
    progress = _dict(status.get("progress"))
    if progress:
        done, total = progress.get("bytesDone", 0), progress.get("bytesTotal", -1)
        percent = progress.get("percent", -1)
        shown = f"{percent}%" if isinstance(percent, int) and percent >= 0 else "…"
        of_total = f" of {_size(total)}" if isinstance(total, int) and total >= 0 else ""
        line = f"{shown} — {_size(done)}{of_total}"
        if progress.get("currentFile") and current != ModelPullPhase.COMPLETED:
            line += f" — {progress['currentFile']}"
        lines.append(line)
    if current == ModelPullPhase.PAUSED:
        lines.append("Paused")
    for item in status.get("files") or []:
        if isinstance(item, dict) and item.get("state") == "Verified":
            lines.append(f"Verified {item.get('path')} ({_size(item.get('sizeBytes', 0))})")
    if current == ModelPullPhase.COMPLETED:
        lines.append(f"Done: {len(status.get('files') or [])} files in {folder}")
    error = error_text(pull)
    if error is not None:
        lines.append(f"Error: {error}")
    return lines[-OUTPUT_TAIL_MAX:]


def job(name: str, pull: JsonObject | None, *, now: float, keep_finished: bool = True) -> JsonObject:
    """ControlPilot's pull job dict for entry ``name``, or ``{"name", "state": "idle"}``.

    ``keep_finished`` False turns a job finished more than :data:`JOB_TTL_SECONDS` ago into idle.
    """
    state = job_state(pull)
    if pull is None or state is JobState.IDLE:
        return {"name": name, "state": JobState.IDLE.value}
    if not keep_finished and state in (JobState.DONE, JobState.ERROR):
        finished = finished_at(pull)
        if finished is not None and now - finished > JOB_TTL_SECONDS:
            return {"name": name, "state": JobState.IDLE.value}
    tail = output_lines(pull)
    started = started_at(pull)
    return {
        "name": name,
        "state": state.value,
        "pid": None,
        "progress_pct": progress_pct(pull),
        "last_line": tail[-1] if tail else "",
        "error": error_text(pull),
        "started_at": started if started is not None else now,
        "updated_at": updated_at(pull) or now,
        "output_tail": tail,
    }


def recent_jobs(pulls: list[JsonObject], *, now: float) -> list[JsonObject]:
    """CP-12: the jobs of our ModelPulls that are running or finished within the TTL, newest first."""
    jobs = []
    for pull in pulls:
        name = entry_name(pull)
        if not name:
            continue
        rendered = job(name, pull, now=now, keep_finished=False)
        if rendered["state"] != JobState.IDLE.value:
            jobs.append(rendered)
    return sorted(jobs, key=lambda item: float(item["updated_at"]), reverse=True)


# -- the catalog rows (CP-08) --------------------------------------------------------------------


def file_query(entry: ManifestEntry, pull: JsonObject | None) -> tuple[tuple[str, ...], str | None]:
    """What to look at on the models volume for an entry: exact files, and a folder to walk (or None).

    The files are the entry's expected file and those its ModelPull lists. An hf_repo entry's
    folder is walked only when the folder is its own: a bare type folder is shared by many models.
    """
    files = tuple(dict.fromkeys((*entry.expected_files, *pulled_files(pull))))
    walk = entry.kind is ManifestKind.HF_REPO and entry.dedicated_folder
    folder = entry.destination.relative if walk else None
    return files, folder


def entry_files(entry: ManifestEntry, pull: JsonObject | None, found: dict[str, int]) -> list[str]:
    """The entry's files among ``found`` (relative path → size, present on the volume)."""
    listed = [path for path in pulled_files(pull) if path in found]
    if listed:
        return listed
    expected = [path for path in entry.expected_files if found.get(path, 0) > 0]
    if expected or entry.kind is not ManifestKind.HF_REPO:
        return expected
    return sorted(path for path in found if entry.matches(path))


def owned_files(entry: ManifestEntry, pull: JsonObject | None, found: dict[str, int]) -> list[str]:
    """Every file among ``found`` that belongs to the entry: listed by its ModelPull, its expected
    file, or (hf_repo in a folder of its own) a file of that folder its patterns match."""
    owned = [path for path in pulled_files(pull) if path in found]
    owned += [path for path in entry.expected_files if path in found]
    if entry.kind is ManifestKind.HF_REPO and entry.dedicated_folder:
        owned += sorted(path for path in found if entry.matches(path))
    return list(dict.fromkeys(owned))


def installed(entry: ManifestEntry, pull: JsonObject | None, found: dict[str, int]) -> bool:
    """Installed: a completed pull whose files are all there, or (no such pull) the entry's files on disk."""
    listed = pulled_files(pull)
    if pull is not None and not deleting(pull) and phase(pull) == ModelPullPhase.COMPLETED and listed:
        return all(found.get(path, 0) > 0 for path in listed)
    if entry.kind is ManifestKind.HF_REPO:
        files = entry_files(entry, None, found)
        return any(path.endswith(WEIGHT_SUFFIXES) and found[path] > 0 for path in files)
    exact = entry.expected_size_bytes if entry.size_is_exact else None
    return all(
        found.get(path, 0) > 0 and (exact is None or found[path] == exact) for path in entry.expected_files
    )


def catalog_row(
    entry: ManifestEntry, pull: JsonObject | None, found: dict[str, int], *, models_root: str
) -> JsonObject:
    """CP-08's row for one entry, joined with its ModelPull and the files on the models volume."""
    files = entry_files(entry, pull, found)
    safetensors = [path for path in files if path.endswith(".safetensors")]
    shown = safetensors or files
    is_installed = installed(entry, pull, found)
    size = sum(found[path] for path in shown)
    expected = entry.expected_size_bytes
    if not is_installed and expected:
        size = expected
    return {
        "name": entry.name,
        "kind": entry.kind.value,
        "source": entry.source,
        "subdir": entry.subdir,
        "include": entry.include,
        "expected_size_bytes": expected,
        "category": entry.category,
        "type": entry.type,
        "installed": is_installed,
        "size_bytes": size,
        "info_url": entry.info_url,
        "target_path": posixpath.join(models_root, entry.destination.relative),
        "primary_path": posixpath.join(models_root, shown[0]) if shown else None,
    }


def held_by_others(pulls: list[JsonObject], excluding: str) -> set[str]:
    """Files listed by every ModelPull but ``excluding`` (by name) that is not being deleted."""
    held: set[str] = set()
    for pull in pulls:
        if _dict(pull.get("metadata")).get("name") == excluding or deleting(pull):
            continue
        held.update(pulled_files(pull))
    return held
