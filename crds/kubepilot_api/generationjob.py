"""GenerationJob: one image-generation request (txt2img, img2img, inpaint, upscale, a ComfyUI workflow).

Conditions used: Scheduled, DependenciesReady, WorkloadReady, Progressing, Succeeded, Failed, Cancelled.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from kubepilot_api.common import (
    ComputeResources,
    FreeForm,
    KubeModel,
    ObjectReference,
    StatusBase,
    Timestamp,
    immutable,
)
from kubepilot_api.resource import AGE_COLUMN, PHASE_COLUMN, CrdInfo, CustomResource, PrinterColumn


class GenerationType(StrEnum):
    """What kind of generation."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    VARIATION = "variation"
    UPSCALE = "upscale"
    WORKFLOW = "workflow"
    """A ComfyUI workflow graph in ``workflow``: run by a ComfyUI service, or, for the standard
    shapes, translated node by node and run by the diffusers generator."""


class LoraWeight(KubeModel):
    """A LoRA applied for this job only: a file in the models volume or a finished TrainingRun's LoRA."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.path) != has(self.trainingRunRef)",
                    "message": "set exactly one of path and trainingRunRef",
                }
            ]
        }
    )

    path: str | None = Field(
        default=None,
        description="LoRA file relative to the models volume (e.g. loras/x.safetensors).",
        max_length=1024,
    )
    trainingRunRef: ObjectReference | None = Field(
        default=None, description="A TrainingRun in this namespace whose published LoRA is used."
    )
    weight: float = Field(default=1.0, ge=-10, le=10, description="Scale of the LoRA.")


class ImageInputs(KubeModel):
    """Input images, as paths on the outputs volume (uploads are staged there by the gateway)."""

    image: str = Field(
        default="", description="Init image for img2img, inpaint, variation and upscale.", max_length=1024
    )
    mask: str = Field(default="", description="Inpainting mask: white is repainted.", max_length=1024)
    images: list[str] = Field(
        default_factory=list, description="Extra images (batch upscale).", max_length=64
    )


class UpscaleSettings(KubeModel):
    """Upscaling."""

    upscaler: str = Field(
        default="RealESRGAN 4x+",
        description="Upscaler name, mapped to a model file by the generator's config.",
        max_length=200,
    )
    factor: float = Field(default=2.0, ge=1, le=8, description="Scale factor.")


class GenerationJobSpec(KubeModel):
    """The request. Immutable once created except ``cancel`` and ``priority``."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'workflow' || has(self.workflow)",
                    "message": "type workflow needs workflow",
                },
                {
                    "rule": "!(self.type in ['img2img', 'inpaint', 'variation', 'upscale']) || "
                    "(has(self.inputs) && has(self.inputs.image) && self.inputs.image != '')",
                    "message": "this type needs inputs.image",
                },
                {
                    "rule": "self.type != 'inpaint' || "
                    "(has(self.inputs) && has(self.inputs.mask) && self.inputs.mask != '')",
                    "message": "inpaint needs inputs.mask",
                },
            ]
        }
    )

    type: GenerationType = Field(
        description="txt2img, img2img, inpaint, variation, upscale or workflow.",
        json_schema_extra=immutable("type is immutable"),
    )
    model: str = Field(
        default="",
        description="Model id or path relative to the models volume; empty uses the service's loaded model.",
        max_length=1024,
        json_schema_extra=immutable("model is immutable"),
    )
    modelPullRef: ObjectReference | None = Field(
        default=None, description="A ModelPull whose files are the model."
    )
    prompt: str = Field(
        default="",
        description="Prompt.",
        max_length=32768,
        json_schema_extra=immutable("prompt is immutable"),
    )
    negativePrompt: str = Field(default="", description="Negative prompt.", max_length=32768)
    width: int = Field(default=512, ge=64, le=4096, multiple_of=8, description="Width in pixels.")
    height: int = Field(default=512, ge=64, le=4096, multiple_of=8, description="Height in pixels.")
    count: int = Field(default=1, ge=1, le=10, description="Images to generate.")
    seed: int = Field(default=-1, ge=-1, description="Seed; -1 picks one, recorded in the outputs.")
    steps: int = Field(default=20, ge=1, le=500, description="Denoising steps.")
    cfgScale: float = Field(default=7.0, ge=0, le=50, description="Classifier-free guidance scale.")
    sampler: str = Field(
        default="", description="Sampler / scheduler name; empty uses the model's default.", max_length=100
    )
    strength: float = Field(
        default=0.75, ge=0, le=1, description="How far img2img, inpaint and variation move from the input."
    )
    loras: list[LoraWeight] = Field(
        default_factory=list, description="LoRAs applied for this job.", max_length=16
    )
    inputs: ImageInputs | None = Field(default=None, description="Input images.")
    upscale: UpscaleSettings | None = Field(default=None, description="Upscaler settings.")
    workflow: FreeForm | None = Field(default=None, description="ComfyUI API-format workflow graph.")
    params: FreeForm | None = Field(
        default=None, description="Backend-specific parameters passed through as written."
    )
    serviceRef: ObjectReference | None = Field(
        default=None, description="ServiceInstance to run on; empty lets the operator choose."
    )
    autoStartService: bool = Field(
        default=False, description="Start the referenced ServiceInstance if it is stopped."
    )
    priority: int = Field(default=0, ge=-100, le=100, description="Higher runs first among queued jobs.")
    cancel: bool = Field(default=False, description="Cancel (or interrupt when running); one-way.")
    cancelReason: Literal["UserCancelled", "Interrupted", "QueueCleared"] = Field(
        default="UserCancelled",
        description="Why it was cancelled, shown as the Cancelled condition's reason.",
    )
    resources: ComputeResources | None = Field(
        default=None, description="Resources for a one-shot generator Job."
    )
    activeDeadlineSeconds: int | None = Field(default=None, ge=1, description="Fail the job after this long.")
    ttlSecondsAfterFinished: int | None = Field(
        default=None, ge=0, description="Delete this object after it finished for this long."
    )
    retainFilesOnDelete: bool = Field(
        default=True, description="Keep output images when this object is deleted."
    )


class GenerationJobPhase(StrEnum):
    """Where a GenerationJob stands."""

    PENDING = "Pending"
    PROCESSING = "Processing"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class GenerationProgress(KubeModel):
    """Generation progress. Counts are -1 while unknown."""

    step: int = Field(default=0, ge=0, description="Denoising step of the current image (or executed nodes).")
    totalSteps: int = Field(default=-1, ge=-1, description="Steps per image; -1 while unknown.")
    imagesDone: int = Field(default=0, ge=0, description="Images finished.")
    imagesTotal: int = Field(default=-1, ge=-1, description="Images requested; -1 while unknown.")
    percent: int = Field(default=-1, ge=-1, le=100, description="Whole percent overall; -1 while unknown.")
    currentNode: str = Field(default="", description="ComfyUI node executing now.", max_length=200)
    etaSeconds: int = Field(default=-1, ge=-1, description="Estimated seconds left; -1 while unknown.")
    lastUpdatedTime: Timestamp = Field(
        description="When the worker measured this; stale progress shows here."
    )


class OutputImage(KubeModel):
    """One generated image."""

    index: int = Field(ge=0, description="Position in the batch.")
    path: str = Field(description="PNG path under the outputs volume.", max_length=1024)
    width: int = Field(ge=1, description="Width in pixels.")
    height: int = Field(ge=1, description="Height in pixels.")
    seed: int = Field(default=-1, description="Seed that produced it.")
    mimeType: str = Field(default="image/png", description="MIME type.", max_length=100)
    metadataPath: str = Field(
        default="", description="JSON file with the full generation parameters.", max_length=1024
    )


class Timings(KubeModel):
    """Where the time went (unit: seconds)."""

    queueSeconds: float = Field(default=0, ge=0, description="Waiting before it started.")
    loadSeconds: float = Field(default=0, ge=0, description="Loading the model.")
    runSeconds: float = Field(default=0, ge=0, description="Generating.")


class GenerationJobStatus(StatusBase):
    """Observed state of a GenerationJob."""

    phase: GenerationJobPhase = Field(default=GenerationJobPhase.PENDING, description="Where the job stands.")
    queuePosition: int = Field(
        default=-1, ge=-1, description="Place in its service's queue; 0 is running; -1 unknown."
    )
    assignedService: str = Field(default="", description="ServiceInstance it runs on.", max_length=253)
    jobName: str = Field(
        default="", description="One-shot generator Job, when not on a service.", max_length=253
    )
    progress: GenerationProgress | None = Field(default=None, description="Steps and images.")
    outputs: list[OutputImage] = Field(default_factory=list, description="Generated images.", max_length=64)
    timings: Timings | None = Field(default=None, description="Queue, load and run time.")
    attempt: int = Field(
        default=0,
        ge=0,
        description="Scheduling attempt: bumped when the job is scheduled again after its service lost "
        "it. Each attempt has its own progress token, so a late report of an earlier one is refused.",
    )


class GenerationJob(CustomResource):
    """Generates images from a prompt, images or a ComfyUI workflow, on a service or a one-shot Job."""

    crd = CrdInfo(
        kind="GenerationJob",
        plural="generationjobs",
        short_names=("gj",),
        description="Generates images (txt2img, img2img, inpaint, variation, upscale, ComfyUI workflow).",
        printer_columns=(
            PrinterColumn("Type", ".spec.type"),
            PHASE_COLUMN,
            PrinterColumn("Progress", ".status.progress.percent", "integer", "Percent; -1 while unknown."),
            PrinterColumn("Service", ".status.assignedService", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["GenerationJob"] = Field(default="GenerationJob", description="GenerationJob")
    spec: GenerationJobSpec = Field(description="The request.")
    status: GenerationJobStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
