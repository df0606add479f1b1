"""The gateway's settings: defaults, YAML file, environment overrides and typo rejection."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kubepilot_gateway.settings import load_settings


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEPILOT_GATEWAY_SETTINGS", raising=False)
    settings = load_settings()
    assert settings.namespace == "default"
    assert settings.kube.mode == "auto"
    assert settings.watch.timeoutSeconds > 0


def test_environment_overrides_the_file_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("namespace: team\nwatch:\n  timeoutSeconds: 60\n  listPageSize: 50\n")
    monkeypatch.setenv("KUBEPILOT_GATEWAY_SETTINGS", str(path))
    monkeypatch.setenv("KUBEPILOT_GATEWAY_WATCH__TIMEOUTSECONDS", "30")
    settings = load_settings()
    assert settings.namespace == "team"
    assert settings.watch.timeoutSeconds == 30
    assert settings.watch.listPageSize == 50


def test_an_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("watch:\n  timeoutSecond: 60\n")
    with pytest.raises(ValidationError, match="timeoutSecond"):
        load_settings(path)


def test_backoff_ceiling_below_its_start_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("watch:\n  backoffInitialSeconds: 5\n  backoffMaxSeconds: 1\n")
    with pytest.raises(ValidationError, match="backoffMaxSeconds"):
        load_settings(path)
