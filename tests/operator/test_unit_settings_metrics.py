"""Unit tests of operator settings (YAML + environment) and the Prometheus metrics helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from kubepilot_operator.metrics import PHASES_BY_KIND, Metrics
from kubepilot_operator.settings import SETTINGS_FILE_ENV, Settings, Volume, default_catalog, load_settings

SETTINGS_YAML = {
    "namespaces": ["team-a", "team-b"],
    "intake": {"host": "0.0.0.0", "port": 8090},
    "storage": {
        "models": {"hostPath": "/srv/models", "mountPath": "/models", "operatorPath": "/srv/models"},
    },
    "gpuProfiles": {"a100": {"resourceName": "nvidia.com/gpu", "runtimeClassName": "nvidia"}},
    "huggingFaceEndpoint": "http://hub.local",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KUBEPILOT_OPERATOR_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_settings_reads_the_yaml_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, SETTINGS_YAML))
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.intake.port == 8090
    assert settings.storage.models.local("loras") == Path("/srv/models/loras")
    assert settings.storage.datasets.mountPath == "/datasets"  # untouched volumes keep defaults
    assert settings.gpuProfiles["a100"].runtimeClassName == "nvidia"
    assert "default" not in settings.gpuProfiles
    assert settings.huggingFaceEndpoint == "http://hub.local"


def test_load_settings_finds_the_file_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(write(tmp_path, SETTINGS_YAML)))
    assert load_settings().intake.port == 8090


def test_environment_overrides_a_nested_key_and_keeps_its_siblings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBEPILOT_OPERATOR_INTAKE__PORT", "9443")
    settings = load_settings(write(tmp_path, SETTINGS_YAML))
    assert settings.intake.port == 9443
    assert settings.intake.host == "0.0.0.0"


def test_environment_overrides_top_level_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEPILOT_OPERATOR_HUGGINGFACEENDPOINT", "http://mirror.local")
    monkeypatch.setenv("KUBEPILOT_OPERATOR_NAMESPACES", '["only"]')
    settings = load_settings(write(tmp_path, SETTINGS_YAML))
    assert settings.huggingFaceEndpoint == "http://mirror.local"
    assert settings.namespaces == ["only"]


def test_environment_alone_configures_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEPILOT_OPERATOR_RECONCILEWORKERS", "3")
    assert load_settings().reconcileWorkers == 3


def test_unknown_top_level_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="intkae"):
        load_settings(write(tmp_path, {"intkae": {"port": 1}}))


def test_unknown_nested_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, {"intake": {"prot": 1}}))
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, {"gpuProfiles": {"x": {"resource": "nvidia.com/gpu"}}}))


def test_invalid_values_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, {"intake": {"port": 70000}}))
    with pytest.raises(ValidationError):
        load_settings(write(tmp_path, {"images": {"pullPolicy": "Sometimes"}}))


def test_settings_file_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mapping"):
        load_settings(write(tmp_path, ["a", "b"]))


def test_empty_settings_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    settings = load_settings(path)
    assert settings.gpuProfiles["default"].resourceName == "nvidia.com/gpu"
    assert settings.workerServiceAccount == "kubepilot-worker"
    assert "comfyui" in settings.services


def test_intake_url_defaults_to_host_and_port() -> None:
    assert Settings().intake_url == "http://127.0.0.1:8081"


def test_intake_url_prefers_the_advertised_url_without_trailing_slash(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {"intake": {"advertiseUrl": "http://op.kp.svc:8081/"}}))
    assert settings.intake_url == "http://op.kp.svc:8081"


def test_volume_is_a_claim_or_a_host_path() -> None:
    claim = Volume(claimName="models-pvc", mountPath="/models")
    assert claim.pod_volume("models") == {
        "name": "models",
        "persistentVolumeClaim": {"claimName": "models-pvc"},
    }
    assert not claim.shared_across_namespaces
    assert claim.local() is None
    host = Volume(mountPath="/models")
    assert host.pod_volume("models")["hostPath"] == {"path": "/models", "type": "DirectoryOrCreate"}
    assert host.shared_across_namespaces


def sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_every_phase_starts_at_zero() -> None:
    metrics = Metrics()
    for kind, phases in PHASES_BY_KIND.items():
        for phase in phases:
            assert sample(metrics, "kubepilot_objects", {"kind": kind, "phase": phase}) == 0


def test_set_phase_counts_counts_and_zeroes_absent_phases() -> None:
    metrics = Metrics()
    metrics.set_phase_counts("ModelPull", ["Downloading", "Downloading", "Completed"])
    assert sample(metrics, "kubepilot_objects", {"kind": "ModelPull", "phase": "Downloading"}) == 2
    assert sample(metrics, "kubepilot_objects", {"kind": "ModelPull", "phase": "Completed"}) == 1
    metrics.set_phase_counts("ModelPull", ["Completed"])
    assert sample(metrics, "kubepilot_objects", {"kind": "ModelPull", "phase": "Downloading"}) == 0
    assert sample(metrics, "kubepilot_objects", {"kind": "ModelPull", "phase": "Completed"}) == 1


def test_set_phase_counts_leaves_other_kinds_alone() -> None:
    metrics = Metrics()
    metrics.set_phase_counts("TrainingRun", ["Running"])
    metrics.set_phase_counts("ModelPull", [])
    assert sample(metrics, "kubepilot_objects", {"kind": "TrainingRun", "phase": "Running"}) == 1


def test_downloaded_counts_only_growth() -> None:
    metrics = Metrics()
    labels = {"namespace": "ns"}
    metrics.downloaded("ns", "a", 100)
    assert sample(metrics, "kubepilot_download_bytes_total", labels) == 100
    metrics.downloaded("ns", "a", 100)
    metrics.downloaded("ns", "a", 40)  # a restarted pull: no negative count
    assert sample(metrics, "kubepilot_download_bytes_total", labels) == 100
    metrics.downloaded("ns", "a", 90)
    assert sample(metrics, "kubepilot_download_bytes_total", labels) == 150


def test_downloaded_tracks_each_pull_separately() -> None:
    metrics = Metrics()
    metrics.downloaded("ns", "a", 10)
    metrics.downloaded("ns", "b", 5)
    metrics.downloaded("other", "a", 7)
    assert sample(metrics, "kubepilot_download_bytes_total", {"namespace": "ns"}) == 15
    assert sample(metrics, "kubepilot_download_bytes_total", {"namespace": "other"}) == 7


def test_forget_training_removes_its_series() -> None:
    metrics = Metrics()
    metrics.training_step.labels("ns", "run").set(10)
    metrics.forget_training("ns", "run")
    metrics.forget_training("ns", "never-seen")
    assert sample(metrics, "kubepilot_training_step", {"namespace": "ns", "name": "run"}) is None


def test_each_operator_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.downloaded("ns", "a", 10)
    assert sample(second, "kubepilot_download_bytes_total", {"namespace": "ns"}) is None
    assert b"kubepilot_download_bytes_total" in first.exposition()


def test_a_service_catalog_entry_given_changes_only_what_it_names() -> None:
    built_in = default_catalog()
    settings = Settings(
        services={
            "homepilot": {"image": "registry.example/homepilot-backend:2.1.0"},
            "my-app": {"image": "registry.example/app:1", "ports": [{"name": "http", "port": 8080}]},
        }
    )
    homepilot = settings.services["homepilot"]
    assert homepilot.image == "registry.example/homepilot-backend:2.1.0"
    assert (
        homepilot.command == built_in["homepilot"].command and homepilot.ports == built_in["homepilot"].ports
    )
    assert settings.services["comfyui"] == built_in["comfyui"], "the rest of the catalog is kept"
    assert settings.services["my-app"].ports[0].port == 8080
    with pytest.raises(ValidationError):
        Settings(services={"other": {"ports": []}})  # a new serviceType needs its image
    with pytest.raises(ValidationError):
        Settings(services={"comfyui": {"imag": "typo"}})  # unknown keys are still refused
    assert "code-server" not in Settings(services={"code-server": None}).services
