"""The registry of our four kinds.

A kind is a pydantic model with ``spec`` and ``status`` plus class-level CRD facts (see
``resource``). The CRD generator, the operator and the gateway all read them from here, so no
plural or group string is typed twice.
"""

from __future__ import annotations

from kubepilot_api.generationjob import GenerationJob
from kubepilot_api.modelpull import ModelPull
from kubepilot_api.resource import CustomResource
from kubepilot_api.serviceinstance import ServiceInstance
from kubepilot_api.trainingrun import TrainingRun

_KINDS: tuple[type[CustomResource], ...] = (ModelPull, TrainingRun, GenerationJob, ServiceInstance)


def KINDS() -> tuple[type[CustomResource], ...]:
    """The four kinds, in the order of their lifecycle (pull, train, generate, serve)."""
    return _KINDS


def kind_by_name(name: str) -> type[CustomResource]:
    """A kind by its Kind, plural, singular or short name (case-insensitive), as kubectl accepts."""
    wanted = name.lower()
    for model in _KINDS:
        info = model.crd
        if wanted in {info.kind.lower(), info.plural, info.singular, *info.short_names}:
            return model
    raise KeyError(f"no kubepilot kind called {name!r}")
