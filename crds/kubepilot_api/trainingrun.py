"""TrainingRun: train a LoRA (or run another trainer) on a dataset against a base model.

Conditions used: WorkloadReady, DependenciesReady, Progressing, Suspended, StopRequested,
ActionPending, Succeeded, Failed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import ConfigDict, Field

from kubepilot_api.common import (
    Actions,
    ComputeResources,
    EnvVar,
    FreeForm,
    KubeModel,
    ObjectReference,
    StatusBase,
    Timestamp,
    immutable,
)
from kubepilot_api.resource import AGE_COLUMN, PHASE_COLUMN, CrdInfo, CustomResource, PrinterColumn


class TrainerKind(StrEnum):
    """Which trainer runs: tool names as their users write them."""

    KUBEPILOT_LORA = "kubepilot-lora"
    """The built-in diffusers + peft LoRA trainer (DeepSpeed optional)."""
    KOHYA = "kohya"
    """kohya sd-scripts, with TrainPilot's profiles."""
    DIFFUSION_PIPE = "diffusion-pipe"
    """diffusion-pipe under the DeepSpeed launcher."""
    ONETRAINER = "onetrainer"
    """OneTrainer with its config JSON."""


class BaseModelReference(KubeModel):
    """The model to train from: a ModelPull (waited on until Completed) or a path in the models store."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.modelPullRef) != has(self.path)",
                    "message": "set exactly one of modelPullRef and path",
                }
            ]
        }
    )

    modelPullRef: ObjectReference | None = Field(default=None, description="A ModelPull in this namespace.")
    path: str | None = Field(
        default=None,
        description="Path relative to the models volume (file or diffusers folder).",
        max_length=1024,
    )


class DatasetReference(KubeModel):
    """Images with caption .txt files, in the kohya/TagPilot layout (``N_name`` folders repeat N times)."""

    path: str = Field(description="Folder relative to the datasets volume.", min_length=1, max_length=1024)
    captionExtension: str = Field(default=".txt", description="Caption file extension.", max_length=16)


class LrScheduler(StrEnum):
    """Learning-rate schedule."""

    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    LINEAR = "linear"
    COSINE = "cosine"
    COSINE_WITH_RESTARTS = "cosine_with_restarts"
    POLYNOMIAL = "polynomial"


class MixedPrecision(StrEnum):
    """Numeric precision for training."""

    NO = "no"
    FP16 = "fp16"
    BF16 = "bf16"


class Hyperparameters(KubeModel):
    """Hyper-parameters of the built-in LoRA trainer; other trainers take theirs from ``config``."""

    resolution: int = Field(default=512, ge=64, le=4096, description="Base training resolution (pixels).")
    bucketing: bool = Field(default=True, description="Aspect-ratio bucketing around the base resolution.")
    batchSize: int = Field(default=1, ge=1, le=256, description="Images per step per process.")
    gradientAccumulationSteps: int = Field(
        default=1, ge=1, le=1024, description="Micro-batches per optimizer step."
    )
    learningRate: float = Field(default=1e-4, gt=0, le=1, description="Peak learning rate.")
    lrScheduler: LrScheduler = Field(default=LrScheduler.CONSTANT, description="Learning-rate schedule.")
    warmupSteps: int = Field(default=0, ge=0, description="Warm-up steps of the schedule.")
    maxSteps: int = Field(default=1000, ge=1, le=10_000_000, description="Optimizer steps to train.")
    rank: int = Field(default=16, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(default=16, gt=0, description="LoRA alpha.")
    mixedPrecision: MixedPrecision = Field(default=MixedPrecision.NO, description="no, fp16 or bf16.")
    seed: int = Field(default=0, ge=0, description="Random seed.")
    saveEverySteps: int = Field(
        default=0, ge=0, description="Save a checkpoint every N steps; 0 saves only at the end."
    )
    sampleEverySteps: int = Field(default=0, ge=0, description="Render samples every N steps; 0 disables.")
    samplePrompts: list[str] = Field(default_factory=list, description="Prompts for samples.", max_length=32)
    gradientCheckpointing: bool = Field(default=False, description="Trade compute for memory.")


class DeepSpeedConfig(KubeModel):
    """DeepSpeed ZeRO settings, for the built-in trainer and diffusion-pipe."""

    enabled: bool = Field(default=False, description="Run under DeepSpeed.")
    zeroStage: int = Field(default=2, ge=0, le=3, description="ZeRO stage 0 to 3.")
    offloadOptimizer: bool = Field(default=False, description="Offload optimizer state to CPU memory.")
    offloadParameters: bool = Field(default=False, description="Offload parameters to CPU memory (ZeRO 3).")


class KohyaProfile(StrEnum):
    """TrainPilot's profiles for kohya sd-scripts."""

    QUICK_TEST = "quick_test"
    REGULAR = "regular"
    HIGH_QUALITY = "high_quality"


class ToolSettings(KubeModel):
    """Settings for an external trainer (kohya, diffusion-pipe, OneTrainer)."""

    profile: KohyaProfile | None = Field(default=None, description="kohya: TrainPilot profile.")
    configName: str = Field(default="", description="OneTrainer: name of a saved config.", max_length=253)
    config: FreeForm | None = Field(
        default=None,
        description="The tool's own config (OneTrainer JSON, diffusion-pipe TOML as an object, kohya TOML).",
    )
    datasetConfig: FreeForm | None = Field(
        default=None, description="diffusion-pipe: dataset TOML as an object."
    )


class TrainingOutput(KubeModel):
    """Where outputs go."""

    name: str = Field(
        description="Output name; files are written to <outputs>/<name>/.",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*$",
    )


class TrainingRunSpec(KubeModel):
    """What to train, on what, with which trainer and resources."""

    trainer: TrainerKind = Field(
        description="kubepilot-lora, kohya, diffusion-pipe or onetrainer. Immutable.",
        json_schema_extra=immutable("trainer is immutable"),
    )
    baseModel: BaseModelReference = Field(
        description="Model to train from. Immutable.", json_schema_extra=immutable("baseModel is immutable")
    )
    dataset: DatasetReference = Field(
        description="Training images and captions. Immutable.",
        json_schema_extra=immutable("dataset is immutable"),
    )
    output: TrainingOutput = Field(
        description="Output naming. Immutable.", json_schema_extra=immutable("output is immutable")
    )
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Built-in trainer hyper-parameters."
    )
    tool: ToolSettings | None = Field(
        default=None, description="Settings for kohya, diffusion-pipe or OneTrainer."
    )
    deepspeed: DeepSpeedConfig | None = Field(default=None, description="DeepSpeed ZeRO settings.")
    resources: ComputeResources = Field(
        default_factory=ComputeResources, description="Per-pod CPU, memory and GPUs."
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Pods; more than one runs an indexed Job with a headless Service."
    )
    resumeFrom: str = Field(
        default="", description="Checkpoint path to resume from (relative to outputs).", max_length=1024
    )
    image: str = Field(default="", description="Override the trainer image.", max_length=1024)
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables.", max_length=64)
    suspend: bool = Field(default=False, description="Hold the run: no pod runs while true.")
    stop: bool = Field(default=False, description="Stop gracefully (save, then exit); one-way.")
    stopGracePeriodSeconds: int = Field(
        default=30, ge=0, le=3600, description="Time to save before the pod is killed."
    )
    activeDeadlineSeconds: int | None = Field(default=None, ge=1, description="Fail the run after this long.")
    ttlSecondsAfterFinished: int | None = Field(
        default=None, ge=0, description="Delete the finished Job after this long."
    )


class TrainingRunPhase(StrEnum):
    """Where a TrainingRun stands."""

    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class TrainingProgress(KubeModel):
    """Training progress. Counts are -1 while unknown."""

    step: int = Field(default=0, ge=0, description="Optimizer steps done.")
    maxSteps: int = Field(default=-1, ge=-1, description="Optimizer steps planned; -1 while unknown.")
    epoch: int = Field(default=0, ge=0, description="Current epoch (0-based).")
    maxEpochs: int = Field(default=-1, ge=-1, description="Epochs planned; -1 while unknown.")
    epochStep: int = Field(default=0, ge=0, description="Step within the epoch.")
    percent: int = Field(default=-1, ge=-1, le=100, description="Whole percent of steps; -1 while unknown.")
    loss: float | None = Field(default=None, description="Recent training loss (smoothed).")
    learningRate: float | None = Field(default=None, description="Current learning rate.")
    stepsPerSecond: float = Field(
        default=0, ge=0, description="Recent throughput (unit: optimizer steps per second)."
    )
    etaSeconds: int = Field(default=-1, ge=-1, description="Estimated seconds left; -1 while unknown.")
    lastUpdatedTime: Timestamp = Field(
        description="When the worker measured this; stale progress shows here."
    )


class Checkpoint(KubeModel):
    """A saved checkpoint."""

    step: int = Field(ge=0, description="Step it was saved at.")
    path: str = Field(description="Path under the outputs volume.", max_length=1024)
    createdAt: Timestamp = Field(description="When it was written.")


class SampleSet(KubeModel):
    """Samples rendered during training."""

    dir: str = Field(
        default="", description="Folder of the samples under the outputs volume.", max_length=1024
    )
    count: int = Field(default=0, ge=0, description="Samples rendered.")
    latest: str = Field(default="", description="Latest sample file.", max_length=1024)


class SamplingProgress(KubeModel):
    """Samples being rendered right now (a sampling pass during training)."""

    kind: Literal["default", "custom"] = Field(
        description="default: the run's sample prompts; custom: one asked for."
    )
    current: int = Field(default=0, ge=0, description="Samples done in this pass.")
    total: int = Field(default=-1, ge=-1, description="Samples in this pass; -1 while unknown.")
    startedAt: Timestamp = Field(description="When the pass started.")


class TrainingOutputFile(KubeModel):
    """A final output with its lineage."""

    path: str = Field(description="Path under the outputs volume.", max_length=1024)
    sha256: str = Field(default="", description="sha256 of the file.", max_length=64)
    baseModel: str = Field(default="", description="Base model it was trained from.", max_length=1024)
    dataset: str = Field(default="", description="Dataset it was trained on.", max_length=1024)
    step: int = Field(default=0, ge=0, description="Step of this output.")


class TrainingRunStatus(StatusBase):
    """Observed state of a TrainingRun."""

    phase: TrainingRunPhase = Field(default=TrainingRunPhase.PENDING, description="Where the run stands.")
    progress: TrainingProgress | None = Field(default=None, description="Step, epoch, loss, ETA.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest scalar metrics by name.")
    checkpoints: list[Checkpoint] = Field(
        default_factory=list, description="Latest checkpoints (at most 20).", max_length=20
    )
    samples: SampleSet | None = Field(default=None, description="Samples rendered during training.")
    sampling: SamplingProgress | None = Field(
        default=None, description="A sampling pass in progress, if any."
    )
    logFile: str = Field(
        default="", description="Full trainer log under the outputs volume.", max_length=1024
    )
    outputs: list[TrainingOutputFile] = Field(
        default_factory=list, description="Final outputs with lineage.", max_length=50
    )
    outputDir: str = Field(default="", description="Output folder under the outputs volume.", max_length=1024)
    publishedModel: str = Field(
        default="",
        description="The final LoRA published into the models volume (e.g. loras/<name>.safetensors), "
        "usable by GenerationJobs and services like any pulled LoRA.",
        max_length=1024,
    )
    jobName: str = Field(default="", description="The trainer Job.", max_length=253)
    exitCode: int | None = Field(default=None, description="Exit code of the trainer process.")
    actions: Actions = Field(default_factory=dict)


class TrainingRun(CustomResource):
    """Trains a LoRA or runs kohya, diffusion-pipe or OneTrainer on a dataset."""

    crd = CrdInfo(
        kind="TrainingRun",
        plural="trainingruns",
        short_names=("tr",),
        description="Trains a LoRA (built-in trainer, kohya, diffusion-pipe or OneTrainer) on a dataset.",
        printer_columns=(
            PrinterColumn("Trainer", ".spec.trainer"),
            PHASE_COLUMN,
            PrinterColumn("Step", ".status.progress.step", "integer"),
            PrinterColumn(
                "Progress", ".status.progress.percent", "integer", "Percent of steps; -1 while unknown."
            ),
            PrinterColumn("Loss", ".status.progress.loss", "number", priority=1),
            AGE_COLUMN,
        ),
    )

    kind: Literal["TrainingRun"] = Field(default="TrainingRun", description="TrainingRun")
    spec: TrainingRunSpec = Field(description="What to train and how.")
    status: TrainingRunStatus | None = Field(
        default=None, description="Observed state, written by the operator."
    )
