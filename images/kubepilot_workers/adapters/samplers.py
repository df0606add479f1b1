"""Sampler names: a GenerationJob's ``sampler`` as ComfyUI and sd.cpp spell it.

Users write samplers as the WebUI does (``DPM++ 2M Karras``), as diffusers does
(``DPMSolverMultistepScheduler``) or as the backend does (``dpmpp_2m``); all of them map to one
entry here. A name a backend lacks is refused before the job reaches the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kubepilot_workers.executor.backend import ExecutionError

Backend = Literal["comfyui", "sdcpp"]


@dataclass(frozen=True)
class SamplerChoice:
    """A sampler in a backend's own words, and a scheduler when the name implied one."""

    sampler: str
    scheduler: str | None


@dataclass(frozen=True)
class _Sampler:
    comfyui: str | None
    sdcpp: str | None
    aliases: tuple[str, ...]


_SAMPLERS = (
    _Sampler("euler", "euler", ("euler", "eulerdiscrete")),
    _Sampler("euler_ancestral", "euler_a", ("eulera", "eulerancestral", "eulerancestraldiscrete")),
    _Sampler("heun", "heun", ("heun", "heundiscrete")),
    _Sampler("dpm_2", "dpm2", ("dpm2", "kdpm2discrete")),
    _Sampler("dpm_2_ancestral", None, ("dpm2a", "dpm2ancestral", "kdpm2ancestraldiscrete")),
    _Sampler("dpmpp_2m", "dpm++2m", ("dpmpp2m", "dpmsolvermultistep")),
    _Sampler("dpmpp_2s_ancestral", "dpm++2s_a", ("dpmpp2sa", "dpmpp2sancestral")),
    _Sampler("dpmpp_2m_sde", None, ("dpmpp2msde",)),
    _Sampler("dpmpp_sde", None, ("dpmppsde", "dpmsolversde")),
    _Sampler("lms", None, ("lms", "lmsdiscrete")),
    _Sampler("ddim", "ddim_trailing", ("ddim", "ddimtrailing")),
    _Sampler("lcm", "lcm", ("lcm",)),
    _Sampler("ipndm", "ipndm", ("ipndm",)),
    _Sampler("uni_pc", None, ("unipc", "unipcmultistep")),
    _Sampler(None, "tcd", ("tcd",)),
)
_SCHEDULER_SUFFIXES = ("karras", "exponential")


def _normalise(name: str) -> str:
    folded = name.strip().lower().replace("++", "pp")
    for character in " _-.+":
        folded = folded.replace(character, "")
    return folded.removesuffix("scheduler")


def resolve_sampler(name: str, backend: Backend) -> SamplerChoice | None:
    """The backend's sampler for ``name``; None for an empty name (the backend's default)."""
    if not name.strip():
        return None
    key = _normalise(name)
    scheduler = None
    for suffix in _SCHEDULER_SUFFIXES:
        if key.endswith(suffix) and key != suffix:
            key, scheduler = key.removesuffix(suffix), suffix
            break
    for entry in _SAMPLERS:
        own = entry.comfyui if backend == "comfyui" else entry.sdcpp
        if key in entry.aliases or (own is not None and key == _normalise(own)):
            if own is None:
                break
            return SamplerChoice(own, scheduler)
    known = sorted({s for e in _SAMPLERS if (s := e.comfyui if backend == "comfyui" else e.sdcpp)})
    raise ExecutionError(
        "INVALID_REQUEST", f"sampler {name!r} is not available on {backend}; known: {', '.join(known)}"
    )
