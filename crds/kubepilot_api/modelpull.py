"""ModelPull: download model weights into the cluster's models store.

Conditions used: Ready, WorkloadReady, Progressing, Suspended (paused), Failed, Cancelled, Removed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from kubepilot_api.common import (
    Actions,
    ComputeResources,
    KubeModel,
    SecretKeyReference,
    StatusBase,
    Timestamp,
    immutable,
)
from kubepilot_api.resource import AGE_COLUMN, PHASE_COLUMN, CrdInfo, CustomResource, PrinterColumn

SHA256_PATTERN = r"^[a-f0-9]{64}$"
RELATIVE_PATH_PATTERN = r"^[^/](.*[^/])?$"
"""A relative path: no leading slash. ``..`` segments are rejected by the workers too."""


class SourceType(StrEnum):
    """Where the weights come from."""

    HUGGING_FACE = "HuggingFace"
    """A Hugging Face repository, or chosen files of it."""
    CIVITAI = "Civitai"
    """A Civitai model version, resolved through its API to a file URL."""
    URL = "URL"
    """Plain HTTP(S) URLs, downloaded with Range resume."""


class HuggingFaceSource(KubeModel):
    """A Hugging Face Hub repository."""

    repo: str = Field(
        description="Repository id, e.g. stabilityai/stable-diffusion-xl-base-1.0.",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][-._A-Za-z0-9]*(/[A-Za-z0-9][-._A-Za-z0-9]*)?$",
    )
    repoType: Literal["model", "dataset", "space"] = Field(default="model", description="Repository type.")
    revision: str = Field(
        default="main", description="Branch, tag or commit; resolved to a commit in status.", max_length=255
    )
    files: list[str] = Field(
        default_factory=list,
        description="Exact paths in the repository to download; empty downloads the repository "
        "(filtered by allowPatterns / ignorePatterns).",
        max_length=1000,
    )
    allowPatterns: list[str] = Field(
        default_factory=list, description="Glob patterns of files to include.", max_length=100
    )
    ignorePatterns: list[str] = Field(
        default_factory=list, description="Glob patterns of files to skip.", max_length=100
    )


class CivitaiSource(KubeModel):
    """A Civitai model version."""

    modelId: int | None = Field(default=None, ge=1, description="Civitai model id (informational).")
    versionId: int = Field(ge=1, description="Civitai model version id to download.")
    fileId: int | None = Field(
        default=None, ge=1, description="One file of the version; default its primary file."
    )


class UrlFile(KubeModel):
    """One file fetched from an HTTP(S) URL."""

    url: str = Field(description="HTTP or HTTPS URL.", pattern=r"^https?://", max_length=4096)
    path: str = Field(
        description="Destination path relative to the destination folder.",
        min_length=1,
        max_length=1024,
        pattern=RELATIVE_PATH_PATTERN,
    )
    sha256: str | None = Field(
        default=None, description="Expected sha256 (hex); verified before use.", pattern=SHA256_PATTERN
    )
    sizeBytes: int | None = Field(
        default=None, ge=0, description="Expected size, for progress before the server says."
    )


class ModelSource(KubeModel):
    """Exactly one source; the sub-object matching ``type`` must be set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'HuggingFace' || has(self.huggingFace)",
                    "message": "type HuggingFace needs huggingFace",
                },
                {
                    "rule": "self.type != 'Civitai' || has(self.civitai)",
                    "message": "type Civitai needs civitai",
                },
                {
                    "rule": "self.type != 'URL' || (has(self.urls) && size(self.urls) > 0)",
                    "message": "type URL needs urls",
                },
            ]
        }
    )

    type: SourceType = Field(description="HuggingFace, Civitai or URL.")
    huggingFace: HuggingFaceSource | None = Field(default=None, description="Set when type is HuggingFace.")
    civitai: CivitaiSource | None = Field(default=None, description="Set when type is Civitai.")
    urls: list[UrlFile] = Field(default_factory=list, description="Set when type is URL.", max_length=1000)


class ModelType(StrEnum):
    """The type folder in the models store, as ComfyUI, kohya and friends lay it out."""

    CHECKPOINTS = "checkpoints"
    DIFFUSION_MODELS = "diffusion_models"
    LORAS = "loras"
    VAE = "vae"
    TEXT_ENCODERS = "text_encoders"
    CLIP = "clip"
    CLIP_VISION = "clip_vision"
    CONTROLNET = "controlnet"
    UPSCALE_MODELS = "upscale_models"
    EMBEDDINGS = "embeddings"
    UNET = "unet"
    LLM = "llm"
    DIFFUSERS = "diffusers"
    OTHER = "other"
    MIXED = "mixed"
    """No one type folder: the files land at the models volume's root and each URL file's path starts
    with its own type folder (``checkpoints/a.safetensors``, ``vae/b.safetensors``). URL sources only:
    a preset whose files span folders is still one ModelPull."""


TYPE_FOLDERS = tuple(t.value for t in ModelType if t not in (ModelType.MIXED,))
"""The folders a ``mixed`` pull's file paths may start with."""


class ModelDestination(KubeModel):
    """Where the files land in the models store."""

    modelType: ModelType = Field(
        description="Type folder under the models volume, e.g. checkpoints or loras; mixed: URL files "
        "whose own paths start with their type folders (a preset spanning folders)."
    )
    subdir: str = Field(
        default="",
        description="Optional sub-folder inside the type folder.",
        max_length=255,
        pattern=r"^([^/.][^/]*(/[^/.][^/]*)*)?$",
    )


class CatalogReference(KubeModel):
    """The catalog entry a pull was made from, so dashboards can show it as installed."""

    catalog: str = Field(
        description="Catalog name, e.g. controlpilot-manifest, comfyui-presets, sdcpp-models, civitai.",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    )
    entry: str = Field(
        description="Entry id inside the catalog (preset id, manifest name).", min_length=1, max_length=253
    )


class DeletePolicy(StrEnum):
    """What happens to the files when the ModelPull is deleted."""

    DELETE = "Delete"
    """Remove the files, except those another ModelPull also holds."""
    RETAIN = "Retain"
    """Leave the files in the models store."""


class Priority(StrEnum):
    """Scheduling priority relative to other pulls."""

    LOW = "Low"
    NORMAL = "Normal"
    HIGH = "High"


class ModelPullSpec(KubeModel):
    """What to download and where to put it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.destination.modelType != 'mixed' || (self.source.type == 'URL' && "
                    "(!has(self.destination.subdir) || self.destination.subdir == '') && "
                    "self.source.urls.all(u, u.path.matches('^(" + "|".join(TYPE_FOLDERS) + ")/[^/]')))",
                    "message": "destination modelType mixed takes a URL source whose every file path "
                    "starts with a type folder (checkpoints/, loras/, vae/, ...), and no subdir",
                }
            ]
        }
    )

    source: ModelSource = Field(
        description="Where the weights come from. Immutable: a different source is a new ModelPull.",
        json_schema_extra=immutable("source is immutable; create a new ModelPull for another source"),
    )
    destination: ModelDestination = Field(
        description="Where the files land. Immutable.",
        json_schema_extra=immutable("destination is immutable"),
    )
    credentialsSecretRef: SecretKeyReference | None = Field(
        default=None, description="Secret holding a Hugging Face token or Civitai API key."
    )
    displayName: str = Field(default="", description="Name shown by dashboards.", max_length=253)
    category: str = Field(default="", description="Catalog category shown by dashboards.", max_length=253)
    catalogRef: CatalogReference | None = Field(
        default=None, description="Catalog entry (preset, manifest item) this pull was made from."
    )
    expectedSizeBytes: int = Field(default=-1, ge=-1, description="Expected total size; -1 when unknown.")
    paused: bool = Field(default=False, description="Stop downloading and keep partial files for resume.")
    cancel: bool = Field(
        default=False,
        description="Cancel for good (one-way): the download stops and no file is published. Partial "
        "files stay in the store, keyed by content, where a later pull of the same bytes resumes them.",
    )
    force: bool = Field(default=False, description="Re-download even when verified files are present.")
    priority: Priority = Field(default=Priority.NORMAL, description="Low, Normal or High.")
    maxParallelFiles: int = Field(default=4, ge=1, le=32, description="Files downloaded at once.")
    deletePolicy: DeletePolicy = Field(
        default=DeletePolicy.DELETE, description="Delete or Retain files on deletion."
    )
    resources: ComputeResources | None = Field(
        default=None, description="CPU and memory for the downloader pod."
    )
    activeDeadlineSeconds: int | None = Field(
        default=None, ge=1, description="Fail the download after this long."
    )
    ttlSecondsAfterFinished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the finished download Job (not the files, not this object) after this long.",
    )


class ModelPullPhase(StrEnum):
    """Where a ModelPull stands."""

    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    REMOVING = "Removing"


class DownloadProgress(KubeModel):
    """Download progress. Counts are -1 while unknown."""

    bytesDone: int = Field(default=0, ge=0, description="Bytes downloaded and verified so far (unit: bytes).")
    bytesTotal: int = Field(default=-1, ge=-1, description="Total bytes (unit: bytes); -1 while unknown.")
    filesDone: int = Field(default=0, ge=0, description="Files complete and verified.")
    filesTotal: int = Field(default=-1, ge=-1, description="Files to download; -1 while unknown.")
    filesFailed: int = Field(default=0, ge=0, description="Files that failed.")
    percent: int = Field(default=-1, ge=-1, le=100, description="Whole percent of bytes; -1 while unknown.")
    speedBytesPerSecond: int = Field(
        default=0, ge=0, description="Recent throughput (unit: bytes per second)."
    )
    etaSeconds: int = Field(default=-1, ge=-1, description="Estimated seconds left; -1 while unknown.")
    currentFile: str = Field(default="", description="File being downloaded now.", max_length=1024)
    lastUpdatedTime: Timestamp = Field(
        description="When the worker measured this; stale progress shows here."
    )


class FileState(StrEnum):
    """State of one file."""

    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    VERIFIED = "Verified"
    FAILED = "Failed"


class PulledFile(KubeModel):
    """One file of the pull."""

    path: str = Field(description="Final path under the models volume.", max_length=1024)
    sizeBytes: int = Field(default=-1, ge=-1, description="Size in bytes; -1 while unknown.")
    sha256: str = Field(default="", description="Verified sha256 (hex).", max_length=64)
    state: FileState = Field(
        default=FileState.PENDING, description="Pending, Downloading, Verified or Failed."
    )


class Removal(KubeModel):
    """What deleting the files did."""

    filesRemoved: int = Field(default=0, ge=0, description="Files removed.")
    bytesFreed: int = Field(default=0, ge=0, description="Bytes freed.")
    filesKept: int = Field(default=0, ge=0, description="Files kept because another ModelPull holds them.")
    removedAt: Timestamp | None = Field(default=None, description="When the files were removed.")


class ModelPullStatus(StatusBase):
    """Observed state of a ModelPull."""

    phase: ModelPullPhase = Field(default=ModelPullPhase.PENDING, description="Where the pull stands.")
    progress: DownloadProgress | None = Field(default=None, description="Bytes and files, speed, ETA.")
    resolvedRevision: str = Field(
        default="", description="Commit the revision resolved to (Hugging Face).", max_length=255
    )
    files: list[PulledFile] = Field(
        default_factory=list, description="Files with final paths and sha256 (first 200).", max_length=200
    )
    installedSizeBytes: int = Field(default=-1, ge=-1, description="Bytes on disk once complete.")
    removal: Removal | None = Field(default=None, description="Result of removing the files.")
    jobName: str = Field(default="", description="The downloader Job.", max_length=253)
    actions: Actions = Field(default_factory=dict)


class ModelPull(CustomResource):
    """Downloads model weights from Hugging Face, Civitai or URLs into the models store."""

    crd = CrdInfo(
        kind="ModelPull",
        plural="modelpulls",
        short_names=("mp",),
        description="Downloads model weights from Hugging Face, Civitai or URLs into the models store.",
        printer_columns=(
            PrinterColumn("Source", ".spec.source.type"),
            PrinterColumn("Type", ".spec.destination.modelType"),
            PHASE_COLUMN,
            PrinterColumn(
                "Progress", ".status.progress.percent", "integer", "Percent of bytes; -1 while unknown."
            ),
            PrinterColumn("Files", ".status.progress.filesDone", "integer", priority=1),
            PrinterColumn("Revision", ".status.resolvedRevision", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["ModelPull"] = Field(default="ModelPull", description="ModelPull")
    spec: ModelPullSpec = Field(description="What to download and where.")
    status: ModelPullStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
