"""sd.cpp Studio's own settings: ``profileSettings.sdcpp-studio`` of the gateway settings.

The model catalog is the product's ``models.yml`` as settings (rendered from Helm values): each
entry names a model id the clients send and the path, relative to the models volume, that the
GenerationJob's ``spec.model`` points at.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.settings import Strict

PROFILE_NAME = "sdcpp-studio"

Compat = Literal["document", "product"]


class HuggingFaceRef(Strict):
    """Where a catalog model downloads from (``POST /api/models/download``): each of the entry's
    ``files`` is fetched from ``repo`` by its file name into its folder; an entry whose ``path`` is
    a folder and lists no ``files`` gets the whole repository in that folder."""

    repo: str = Field(
        default="", description="Hugging Face repository (owner/name); empty: not downloadable."
    )


class CatalogModel(Strict):
    """One ``models.yml`` entry."""

    id: str = Field(min_length=1, max_length=200, description="The model id clients send (`model`).")
    name: str = Field(default="", description="Display name; empty: the id.")
    description: str = ""
    path: str = Field(
        min_length=1, max_length=1024, description="Model folder or file relative to the models volume."
    )
    capabilities: list[str] = Field(default_factory=lambda: ["text-to-image", "image-to-image"])
    exec_mode: Literal["server", "cli", "api"] = Field(
        default="cli", description="`cli`: one generator Job per request; `server`: an sd.cpp service."
    )
    mode: Literal["preload", "on_demand"] = "on_demand"
    backend: Literal["generator", "sdcpp"] = Field(
        default="generator",
        description="What serves the model when started: `generator` (our diffusers generator server) "
        "or `sdcpp` (an sd.cpp server ServiceInstance, through the sd.cpp adapter).",
    )
    port: int | None = Field(default=None, ge=1, le=65535)
    huggingface: HuggingFaceRef = Field(default_factory=HuggingFaceRef)
    files: list[str] = Field(
        default_factory=list,
        description="Files (relative to the models volume) that must exist; empty: `path` itself.",
    )

    @property
    def display_name(self) -> str:
        return self.name or self.id


class UpscalerEntry(Strict):
    """One upscaler the product's clients name (``upscaler`` / ``upscaler_1``), mapped to the
    operator's upscaler: a name configured there, a path relative to the models volume, or a bare
    file name in ``upscale_models/``."""

    name: str = Field(min_length=1, max_length=200, description="The name clients send and see.")
    upscaler: str = Field(
        min_length=1, max_length=200, description="The operator's upscaler name or model file (spec.upscale)."
    )
    scale: int = Field(default=4, ge=1, le=8, description="The model's own scale (reported by /upscalers).")


DEFAULT_UPSCALERS = [
    UpscalerEntry(name="RealESRGAN 4x+", upscaler="RealESRGAN_x4plus.pth", scale=4),
]
"""The product's default upscaler, as the file the product itself uses."""


class SdcppSettings(Strict):
    """Everything the sd.cpp Studio endpoints read besides the gateway-wide settings."""

    compat: Compat = Field(
        default="document",
        description="`document`: the shapes of the product's REST document (the seed); `product`: the "
        "shapes its own server answers (for its web UI and CLI).",
    )
    defaultModel: str = Field(default="", description="Model id used when a request names none.")
    models: list[CatalogModel] = Field(default_factory=list, description="The model catalog (models.yml).")
    sdApiEndpoint: str = Field(default="", description="Reported by /api/config.")
    authEnabled: bool = Field(
        default=False,
        description="Reported by /api/config even without a key here: set it when the listener's auth "
        "guards this profile.",
    )
    apiKeyEnv: str = Field(
        default="SDCPP_STUDIO_API_KEY",
        description="Environment variable holding the API key (comma-separated keys); unset or empty "
        "and no apiKeyFile: no key is required (the product's API_KEY).",
    )
    apiKeyFile: str = Field(
        default="", description="A mounted Secret file with the API key(s), one a line; re-read on change."
    )
    syncTimeoutSeconds: float = Field(
        default=300.0, gt=0, description="How long the synchronous endpoints wait for a generation."
    )
    defaultSteps: int = Field(default=20, ge=1, le=500, description="Steps when a request sets none.")
    optionsConfigMap: str = Field(
        default="sdcpp-studio-options",
        description="ConfigMap holding the model chosen through POST /sdapi/v1/options.",
    )
    hfTokenSecret: str = Field(
        default="",
        description="Secret (in the gateway's namespace) holding a Hugging Face token that model "
        "downloads reference; empty: downloads go without a token.",
    )
    hfTokenKey: str = Field(default="HF_TOKEN", description="Key of the token in that Secret.")
    downloadReplaceTimeoutSeconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a new download waits for the finished download it replaces to be gone.",
    )

    upscalers: list[UpscalerEntry] = Field(
        default_factory=lambda: list(DEFAULT_UPSCALERS),
        description="Upscalers offered (/sdapi/v1/upscalers) and how each maps to the operator's.",
    )
    defaultUpscaler: str = Field(
        default="RealESRGAN 4x+", description="Upscaler used when a request names none (the product's)."
    )
    inputsDir: str = Field(
        default="sdcpp-studio/inputs",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Where uploads are staged, relative to the outputs volume.",
    )
    maxUploadBytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="Largest uploaded image (the product's 50 MB)."
    )
    maxUploadPixels: int = Field(
        default=4096 * 4096, ge=1, description="Most pixels an uploaded image may have (decoded)."
    )
    maxRequestBytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1,
        description="Largest request body of the image endpoints (a batch of base64 images included).",
    )

    logRingSize: int = Field(
        default=1000, ge=1, le=100_000, description="Gateway log lines kept for GET /api/logs."
    )

    def upscaler(self, name: str) -> UpscalerEntry | None:
        """The upscaler clients call ``name`` (the default when empty)."""
        wanted = name.strip() or self.defaultUpscaler
        return next((entry for entry in self.upscalers if entry.name == wanted), None)

    def model(self, model_id: str) -> CatalogModel | None:
        """The catalog entry ``model_id`` (also matched by name, path or A1111 title)."""
        wanted = model_id.strip()
        if " [" in wanted and wanted.endswith("]"):  # A1111 titles carry " [hash]"
            wanted = wanted[: wanted.rindex(" [")]
        for entry in self.models:
            if wanted in (entry.id, entry.name, entry.path):
                return entry
        return None

    def default(self) -> CatalogModel | None:
        """The default model: ``defaultModel``, else the catalog's first entry."""
        if self.defaultModel:
            return self.model(self.defaultModel)
        return self.models[0] if self.models else None


def sdcpp_settings(ctx: GatewayContext) -> SdcppSettings:
    """This profile's settings from ``ctx.settings.profileSettings`` (a bad value fails the app build)."""
    return SdcppSettings.model_validate(ctx.settings.profileSettings.get(PROFILE_NAME, {}))
