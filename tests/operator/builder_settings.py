"""Operator settings for the builder unit tests: the three volumes as host folders, no cluster."""

from __future__ import annotations

from typing import Any

from kubepilot_operator.settings import Settings, Storage, Volume


def host_storage() -> Storage:
    return Storage(
        models=Volume(hostPath="/srv/kp/models", mountPath="/models"),
        datasets=Volume(hostPath="/srv/kp/datasets", mountPath="/datasets"),
        outputs=Volume(hostPath="/srv/kp/outputs", mountPath="/outputs"),
    )


def settings_with(**overrides: Any) -> Settings:
    """Settings on host-folder storage, with ``overrides`` (GPU profiles, catalog, ...)."""
    return Settings(storage=host_storage(), **overrides)
