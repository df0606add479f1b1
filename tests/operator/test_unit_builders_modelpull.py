"""Unit tests of the shared pod pieces (builders/common.py) through the ModelPull builder."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from kubepilot_api.common import ComputeResources, GpuRequest
from kubepilot_api.constants import KUEUE_QUEUE_LABEL
from kubepilot_api.modelpull import ModelPull
from kubepilot_api.workers.config import DownloaderConfig
from kubepilot_operator.builders import common
from kubepilot_operator.builders import modelpull as build
from kubepilot_operator.settings import GpuProfile, Intake, Settings, Toleration
from tests.operator.builder_settings import settings_with

Obj = dict[str, Any]
UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"


def make_settings(**overrides: Any) -> Settings:
    profiles = {
        "default": GpuProfile(),
        "a100-mig": GpuProfile(
            resourceName="nvidia.com/mig-3g.40gb",
            nodeSelector={"nvidia.com/gpu.product": "A100"},
            tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            runtimeClassName="nvidia",
        ),
    }
    return settings_with(gpuProfiles=profiles, **overrides)


def make_pull(spec: Obj | None = None, labels: dict[str, str] | None = None) -> Obj:
    body: Obj = {
        "source": {
            "type": "HuggingFace",
            "huggingFace": {"repo": "stabilityai/sdxl-base", "files": ["a.bin"]},
        },
        "destination": {"modelType": "loras", "subdir": "styles"},
        **(spec or {}),
    }
    cr = ModelPull(spec=body).to_dict()
    cr["metadata"] = {"name": "sdxl", "namespace": "team-a", "uid": UID, "labels": labels or {}}
    return cr


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container["env"]}


def pod_spec(job: Obj) -> Obj:
    spec: Obj = job["spec"]["template"]["spec"]
    return spec


def test_job_is_owned_by_the_pull_as_controller() -> None:
    job = build.job(make_settings(), make_pull(), suspend=False)
    (ref,) = job["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "kubepilot.io/v1alpha1",
        "kind": "ModelPull",
        "name": "sdxl",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert job["metadata"]["name"] == "sdxl-download"
    assert job["metadata"]["namespace"] == "team-a"


def test_worker_env_follows_the_contract() -> None:
    settings = make_settings()
    container = pod_spec(build.job(settings, make_pull(), suspend=False))["containers"][0]
    env = env_of(container)
    assert env["KUBEPILOT_CONFIG"]["value"] == "/var/run/kubepilot/config.json"
    assert env["KUBEPILOT_REPORT_URL"]["value"] == (
        settings.intake_url + "/v1/reports/team-a/modelpulls/sdxl"
    )
    assert env["KUBEPILOT_TOKEN_FILE"]["value"] == "/var/run/kubepilot/token"
    assert env["POD_IP"] == {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_report_url_uses_the_advertised_intake_url() -> None:
    settings = make_settings(intake=Intake(advertiseUrl="http://kubepilot-operator.kp.svc:8081/"))
    url = common.report_url(settings, make_pull(), "modelpulls")
    assert url == "http://kubepilot-operator.kp.svc:8081/v1/reports/team-a/modelpulls/sdxl"


def test_worker_pod_gets_no_api_token_and_the_worker_account() -> None:
    spec = pod_spec(build.job(make_settings(workerServiceAccount="kp-worker"), make_pull(), suspend=False))
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "kp-worker"
    assert spec["restartPolicy"] == "Never"


def test_pod_mounts_hostpath_volumes_and_the_workload_secret() -> None:
    cr = make_pull()
    spec = pod_spec(build.job(make_settings(), cr, suspend=False))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["hostPath"]["path"] == "/srv/kp/models"
    assert volumes["outputs"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert volumes["kubepilot"]["secret"]["secretName"] == common.secret_name(cr)
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models"
    assert mounts["kubepilot"] == {"name": "kubepilot", "mountPath": "/var/run/kubepilot", "readOnly": True}


def test_workload_secret_holds_token_and_a_valid_downloader_config() -> None:
    settings = make_settings()
    cr = make_pull()
    config = build.downloader_config(settings, cr)
    secret = common.workload_secret(cr, "tok-123", config)
    assert secret["metadata"]["name"] == common.secret_name(cr)
    assert secret["metadata"]["ownerReferences"][0]["controller"] is True
    assert base64.b64decode(secret["data"]["token"]).decode() == "tok-123"
    parsed = DownloaderConfig.model_validate_json(base64.b64decode(secret["data"]["config.json"]))
    assert parsed.workload.uid == UID
    assert parsed.workload.kind == "ModelPull"
    assert parsed.targetDir == "/models/loras/styles"
    assert parsed.storeDir == "/models/.store"
    assert parsed.modelsRoot == "/models"
    assert parsed.tokenFile == ""


def test_workload_secret_without_config_holds_only_the_token() -> None:
    secret = common.workload_secret(make_pull(), "t", None)
    assert set(secret["data"]) == {"token"}


def test_secret_drift_only_when_data_differs() -> None:
    cr = make_pull()
    desired = common.workload_secret(cr, "t", {"a": 1})
    assert common.secret_drift(copy.deepcopy(desired), desired) is None
    changed = common.workload_secret(cr, "t", {"a": 2})
    assert common.secret_drift(desired, changed) == {"data": changed["data"]}


def test_credentials_secret_is_mounted_as_a_file_and_named_in_the_config() -> None:
    settings = make_settings()
    cr = make_pull({"credentialsSecretRef": {"name": "hf-token", "key": "hf"}})
    spec = pod_spec(build.job(settings, cr, suspend=False))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["credentials"]["secret"] == {
        "secretName": "hf-token",
        "items": [{"key": "hf", "path": "token"}],
    }
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["credentials"]["mountPath"] == build.CREDENTIALS_MOUNT
    assert mounts["credentials"]["readOnly"] is True
    config = DownloaderConfig.model_validate(build.downloader_config(settings, cr))
    assert config.tokenFile == f"{build.CREDENTIALS_MOUNT}/token"
    # The token never travels as an environment variable.
    assert all("hf-token" not in json.dumps(e) for e in spec["containers"][0]["env"])


def test_pull_without_credentials_has_no_credentials_volume() -> None:
    spec = pod_spec(build.job(make_settings(), make_pull(), suspend=False))
    assert "credentials" not in {v["name"] for v in spec["volumes"]}


def test_downloader_config_carries_settings_endpoints() -> None:
    settings = make_settings(huggingFaceEndpoint="http://hub.local", civitaiApiBase="http://civ.local/api")
    config = DownloaderConfig.model_validate(build.downloader_config(settings, make_pull()))
    assert config.huggingFaceEndpoint == "http://hub.local"
    assert config.civitaiApiBase == "http://civ.local/api"
    env = env_of(pod_spec(build.job(settings, make_pull(), suspend=False))["containers"][0])
    assert env["HF_ENDPOINT"]["value"] == "http://hub.local"


def test_target_without_subdir_is_the_type_folder() -> None:
    cr = make_pull({"destination": {"modelType": "checkpoints"}})
    config = DownloaderConfig.model_validate(build.downloader_config(make_settings(), cr))
    assert config.targetDir == "/models/checkpoints"


def test_kueue_label_travels_to_the_job_and_its_pods() -> None:
    job = build.job(make_settings(), make_pull(labels={KUEUE_QUEUE_LABEL: "downloads"}), suspend=True)
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "downloads"
    assert job["spec"]["template"]["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "downloads"


def test_job_suspend_deadline_and_ttl() -> None:
    settings = make_settings(downloadBackoffLimit=5)
    cr = make_pull({"activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60})
    job = build.job(settings, cr, suspend=True)
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["backoffLimit"] == 5
    assert "completionMode" not in job["spec"]
    plain = build.job(settings, make_pull(), suspend=False)
    assert plain["spec"]["suspend"] is False
    assert "activeDeadlineSeconds" not in plain["spec"]
    assert "ttlSecondsAfterFinished" not in plain["spec"]


def test_job_drift_patches_only_suspend_and_deadline() -> None:
    settings = make_settings()
    existing = build.job(settings, make_pull(), suspend=True)
    existing["spec"]["template"]["spec"]["containers"][0]["image"] = "something/else:1"
    existing["spec"]["backoffLimit"] = 99
    desired = build.job(settings, make_pull({"activeDeadlineSeconds": 300}), suspend=False)
    assert common.job_drift(existing, desired) == {"spec": {"suspend": False, "activeDeadlineSeconds": 300}}


def test_job_drift_is_none_when_nothing_we_own_changed() -> None:
    settings = make_settings()
    desired = build.job(settings, make_pull(), suspend=False)
    existing = copy.deepcopy(desired)
    existing["spec"]["template"]["spec"]["containers"][0]["image"] = "server/defaulted:1"
    assert common.job_drift(existing, desired) is None


def test_gpu_profile_resolves_to_pod_fields() -> None:
    resources = ComputeResources(gpu=GpuRequest(profile="a100-mig", count=2), cpu="4", memory="16Gi")
    fields = common.gpu_fields(make_settings(), resources)
    assert fields["container"]["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/mig-3g.40gb": "2"},
    }
    assert fields["pod"]["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert fields["pod"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert fields["pod"]["runtimeClassName"] == "nvidia"


def test_default_gpu_profile_asks_for_nvidia_gpu_only() -> None:
    fields = common.gpu_fields(make_settings(), ComputeResources(gpu=GpuRequest(count=1)))
    assert fields["container"]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert fields["pod"] == {}


def test_zero_gpus_or_no_resources_ask_for_nothing() -> None:
    settings = make_settings()
    assert common.gpu_fields(settings, None) == {"pod": {}, "container": {}}
    fields = common.gpu_fields(settings, ComputeResources(gpu=GpuRequest(profile="missing", count=0)))
    assert fields == {"pod": {}, "container": {}}


def test_unknown_gpu_profile_raises() -> None:
    with pytest.raises(common.UnknownGpuProfile, match="h100"):
        common.gpu_fields(make_settings(), ComputeResources(gpu=GpuRequest(profile="h100", count=1)))


def test_unknown_gpu_profile_in_a_pull_fails_the_build() -> None:
    cr = make_pull({"resources": {"gpu": {"profile": "nope", "count": 1}}})
    with pytest.raises(common.UnknownGpuProfile):
        build.job(make_settings(), cr, suspend=False)


def test_pull_gpu_profile_lands_in_the_pod() -> None:
    cr = make_pull({"resources": {"gpu": {"profile": "a100-mig", "count": 1}}})
    spec = pod_spec(build.job(make_settings(), cr, suspend=False))
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/mig-3g.40gb"] == "1"


def test_stop_grace_is_passed_and_the_pod_waits_longer() -> None:
    spec = pod_spec(build.job(make_settings(), make_pull(), suspend=False))
    env = env_of(spec["containers"][0])
    assert env["KUBEPILOT_STOP_GRACE_SECONDS"]["value"] == "20"
    assert spec["terminationGracePeriodSeconds"] > 20


def test_workload_secret_is_readable_by_a_non_root_worker() -> None:
    spec = pod_spec(build.job(make_settings(), make_pull(), suspend=False))
    secret_volume = next(v for v in spec["volumes"] if v["name"] == "kubepilot")
    mode = secret_volume["secret"].get("defaultMode", 0o644)
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    assert mode & 0o004 or fs_group is not None
