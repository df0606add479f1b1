"""The config file the operator renders for each worker (``$KUBEPILOT_CONFIG``, JSON).

Every path in it is absolute inside the pod and comes from the operator, which knows where the
models, datasets and outputs volumes are mounted: workers never hard-code a path (DESIGN §5).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field

from kubepilot_api.common import FreeForm, KubeModel
from kubepilot_api.generationjob import GenerationType
from kubepilot_api.modelpull import ModelSource
from kubepilot_api.trainingrun import DeepSpeedConfig, Hyperparameters, ToolSettings, TrainerKind

CIVITAI_API_BASE = "https://civitai.com/api/v1"


class Workload(KubeModel):
    """Which custom resource this worker works for."""

    kind: Literal["ModelPull", "TrainingRun", "GenerationJob", "ServiceInstance"] = Field(
        description="Kind of the CR."
    )
    namespace: str = Field(description="Namespace of the CR.", max_length=63)
    name: str = Field(description="Name of the CR.", max_length=253)
    uid: str = Field(default="", description="uid of the CR.", max_length=64)


class DownloaderConfig(KubeModel):
    """Config of the downloader (one ModelPull)."""

    workload: Workload = Field(description="The ModelPull.")
    source: ModelSource = Field(description="What to download (the ModelPull's spec.source).")
    modelsRoot: str = Field(description="Mount path of the models volume.")
    targetDir: str = Field(
        description="Absolute folder the files appear in (<modelsRoot>/<modelType>/<subdir>)."
    )
    storeDir: str = Field(description="Content-addressed blob store (<modelsRoot>/.store): blobs by sha256.")
    tokenFile: str = Field(
        default="", description="File with the Hugging Face token or Civitai key; empty for none."
    )
    maxParallelFiles: int = Field(default=4, ge=1, le=32, description="Files downloaded at once.")
    force: bool = Field(default=False, description="Re-download even verified files.")
    huggingFaceEndpoint: str = Field(
        default="", description="Hub endpoint (HF_ENDPOINT); empty for the public hub."
    )
    civitaiApiBase: str = Field(default=CIVITAI_API_BASE, description="Civitai API base URL.")
    expectedSizeBytes: int = Field(default=-1, ge=-1, description="Expected total size; -1 unknown.")


class TrainerConfig(KubeModel):
    """Config of a trainer (one TrainingRun)."""

    workload: Workload = Field(description="The TrainingRun.")
    trainer: TrainerKind = Field(description="Which trainer.")
    baseModelPath: str = Field(description="Absolute path of the base model (file or diffusers folder).")
    datasetDir: str = Field(
        description="Absolute dataset folder (kohya layout: N_name sub-folders of images + captions)."
    )
    captionExtension: str = Field(default=".txt", description="Caption file extension.")
    outputDir: str = Field(description="Absolute folder for checkpoints, samples, logs and final outputs.")
    outputName: str = Field(description="Base name of output files.")
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, description="Built-in trainer settings."
    )
    deepspeed: DeepSpeedConfig | None = Field(default=None, description="DeepSpeed settings.")
    tool: ToolSettings | None = Field(default=None, description="External trainer settings.")
    resumeFrom: str = Field(
        default="", description="Absolute checkpoint path to resume from; empty starts fresh."
    )
    workers: int = Field(
        default=1, ge=1, description="Processes across pods (WORLD_SIZE comes from the launcher)."
    )


class LoraFile(KubeModel):
    """A LoRA applied to one generation, with an absolute path."""

    path: str = Field(description="Absolute LoRA file (safetensors).")
    weight: float = Field(default=1.0, description="Scale.")


class GenerationRequest(KubeModel):
    """A GenerationJob's spec as a worker needs it: paths resolved to absolute ones."""

    type: GenerationType = Field(description="What kind of generation.")
    modelPath: str = Field(
        default="", description="Absolute model path; empty uses the server's loaded model."
    )
    prompt: str = Field(default="", description="Prompt.")
    negativePrompt: str = Field(default="", description="Negative prompt.")
    width: int = Field(default=512, ge=8, le=4096, description="Width in pixels.")
    height: int = Field(default=512, ge=8, le=4096, description="Height in pixels.")
    count: int = Field(default=1, ge=1, le=10, description="Images.")
    seed: int = Field(default=-1, ge=-1, description="Seed; -1 picks one.")
    steps: int = Field(default=20, ge=1, le=500, description="Denoising steps.")
    cfgScale: float = Field(default=7.0, ge=0, description="Guidance scale.")
    sampler: str = Field(default="", description="Scheduler name; empty keeps the model's.")
    strength: float = Field(default=0.75, ge=0, le=1, description="img2img / inpaint / variation strength.")
    loras: list[LoraFile] = Field(default_factory=list, description="LoRAs for this job.")
    image: str = Field(default="", description="Absolute init image path.")
    mask: str = Field(default="", description="Absolute mask path.")
    images: list[str] = Field(default_factory=list, description="Extra absolute image paths.")
    upscaler: str = Field(default="", description="Upscaler name (mapped by the generator config).")
    upscaleFactor: float = Field(default=2.0, ge=1, le=8, description="Upscale factor.")
    workflow: FreeForm | None = Field(default=None, description="ComfyUI workflow graph.")
    params: FreeForm | None = Field(default=None, description="Backend-specific parameters.")


class GeneratorMode(StrEnum):
    """How the generator runs."""

    ONESHOT = "oneshot"
    """Run one GenerationJob and exit (a Job)."""
    SERVER = "server"
    """Serve the executor API and keep the model loaded (a ServiceInstance)."""


class GeneratorConfig(KubeModel):
    """Config of the diffusers generator, in one-shot or server mode."""

    workload: Workload = Field(description="The GenerationJob (one-shot) or ServiceInstance (server).")
    mode: GeneratorMode = Field(description="oneshot or server.")
    modelPath: str = Field(
        description="Absolute path of the default model (diffusers folder or single file)."
    )
    modelsRoot: str = Field(default="", description="Mount path of the models volume.")
    outputsDir: str = Field(description="Absolute folder images are written under.")
    request: GenerationRequest | None = Field(default=None, description="The job, in one-shot mode.")
    host: str = Field(default="0.0.0.0", description="Server mode: address to bind.")
    port: int = Field(default=7860, ge=1, le=65535, description="Server mode: port.")
    upscalers: dict[str, str] = Field(
        default_factory=dict,
        description="Upscaler name → absolute model file (e.g. 'RealESRGAN 4x+' → .pth).",
    )
    inputsDir: str = Field(
        default="",
        description="Absolute folder a workflow's LoadImage names resolve in (the outputs volume's "
        "inputs/); empty: found from the job's image folder.",
    )
    device: str = Field(default="auto", description="torch device: auto, cpu, cuda, cuda:1, ...")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="Weights dtype."
    )


class AdapterConfig(KubeModel):
    """Config of an executor adapter beside ComfyUI or an sd.cpp server."""

    workload: Workload = Field(description="The ServiceInstance.")
    backend: Literal["comfyui", "sdcpp"] = Field(description="The backend it drives.")
    backendUrl: str = Field(
        description="Base URL of the backend (usually http://127.0.0.1:<port> in the same pod)."
    )
    host: str = Field(default="0.0.0.0", description="Address the executor API binds.")
    port: int = Field(default=7861, ge=1, le=65535, description="Port of the executor API.")
    outputsDir: str = Field(description="Absolute folder outputs are copied to.")


class NodeAgentConfig(KubeModel):
    """Config of the node agent (DaemonSet)."""

    host: str = Field(default="0.0.0.0", description="Address to bind.")
    port: int = Field(default=9400, ge=1, le=65535, description="Port for /metrics and /v1/snapshot.")
    diskPaths: list[str] = Field(default_factory=lambda: ["/"], description="Filesystems to report usage of.")


ConfigT = TypeVar("ConfigT", bound=KubeModel)


def load_config(model: type[ConfigT], path: str | Path) -> ConfigT:
    """Read and validate a worker config file (raises ``pydantic.ValidationError`` or ``OSError``)."""
    return model.model_validate_json(Path(path).read_bytes())
