"""The profile registry: each API profile is a module here exposing ``PROFILE: Profile``.

Profiles are imported by name only when asked for, so a profile that is not written yet (or is
left out of an image) is simply absent, while one that fails to import fails loudly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubepilot_gateway.app.settings import CorsSettings
from kubepilot_gateway.context import GatewayContext

if TYPE_CHECKING:
    from fastapi import FastAPI

COMBINED_PORT = 9000
"""The listener that mounts every profile under ``/p/<profile>``."""

NATIVE_PORTS: dict[str, int] = {
    "controlpilot": 7878,
    "comfyui-docker": 8080,
    "onetrainer": 8000,
    "sdcpp-studio": 3000,
    # HomePilot's own port is 8000; on one host that is OneTrainer's (its cluster Service keeps 8000).
    "homepilot": 8001,
}
"""Every known profile and its native port in the one-host dev stack (DESIGN §7), in listing order."""


@dataclass(frozen=True)
class Profile:
    """One API profile: a FastAPI app built from the gateway context, served at ``native_port``.

    ``cors`` is the policy the profile's seed sets (None: no CORS headers) and ``open_paths`` the
    paths, relative to the profile's root, that stay open when authentication is on (a login
    route); the listener settings can override both.
    """

    name: str
    native_port: int
    create_app: Callable[[GatewayContext], FastAPI]
    description: str = ""
    cors: CorsSettings | None = None
    open_paths: frozenset[str] = field(default_factory=frozenset)


def module_for(name: str) -> str:
    """The module that defines profile ``name`` (dashes become underscores)."""
    return f"{__name__}.{name.replace('-', '_')}"


def load_profile(name: str) -> Profile | None:
    """Profile ``name``, or None when its module does not exist (yet)."""
    module_name = module_for(name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only the profile's own module may be missing; a missing dependency inside it is a bug.
        if error.name != module_name:
            raise
        return None
    profile = getattr(module, "PROFILE", None)
    if not isinstance(profile, Profile):
        raise TypeError(f"{module_name}.PROFILE must be a Profile, not {type(profile).__name__}")
    if profile.name != name:
        raise ValueError(f"{module_name}.PROFILE is named {profile.name!r}, expected {name!r}")
    return profile


def profiles() -> tuple[Profile, ...]:
    """Every known profile whose module exists, in ``NATIVE_PORTS`` order."""
    found = (load_profile(name) for name in NATIVE_PORTS)
    return tuple(profile for profile in found if profile is not None)
