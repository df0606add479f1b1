"""Upscaler names and files as the generator is given them (operator setting ``upscalers``)."""

from __future__ import annotations

import posixpath

from kubepilot_operator.settings import Settings, contained_relative

UPSCALE_MODELS = "upscale_models"
"""Folder of the models volume a bare upscaler file name is looked up in (ComfyUI's name for it)."""


MODEL_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt", ".bin")
"""File endings that make a bare upscaler name a file rather than a configured name."""


def upscalers(settings: Settings) -> dict[str, str]:
    """The configured upscalers, as absolute model files for the generator's config."""
    root = settings.storage.models.mountPath
    return {name: posixpath.join(root, file) for name, file in settings.upscalers.items()}


def upscaler(settings: Settings, name: str) -> str:
    """A job's upscaler as the generator resolves it: a configured name stays a name; a file of the
    models volume (``upscale_models/x.pth``, or a bare ``x.pth`` in ``upscale_models/``) becomes its
    absolute path. A bare name without a model file ending stays a name too. A name with a ``..``
    step or an absolute one is passed on as written, for the generator to refuse (it loads only
    configured names and files inside the models volume).
    """
    if not name or name in settings.upscalers or not contained_relative(name):
        return name
    if "/" not in name and not name.lower().endswith(MODEL_SUFFIXES):
        return name  # a name nobody configured: the generator says which names it knows
    relative = name if "/" in name else posixpath.join(UPSCALE_MODELS, name)
    return posixpath.join(settings.storage.models.mountPath, relative)
