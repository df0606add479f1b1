"""Unit tests of the TrainingRun and GenerationJob builders (no cluster)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubepilot_api.constants import KUEUE_QUEUE_LABEL
from kubepilot_api.generationjob import GenerationJob
from kubepilot_api.trainingrun import TrainingRun
from kubepilot_api.workers.config import GeneratorConfig, GeneratorMode, TrainerConfig
from kubepilot_operator.builders import common
from kubepilot_operator.builders import generationjob as gen
from kubepilot_operator.builders import trainingrun as train
from kubepilot_operator.naming import selector
from kubepilot_operator.settings import GpuProfile, Settings, Toleration
from tests.operator.builder_settings import settings_with

Obj = dict[str, Any]
RUN_UID = "7a7a7a7a-1111-2222-3333-444444444444"
JOB_UID = "9b9b9b9b-5555-6666-7777-888888888888"


def make_settings(**overrides: Any) -> Settings:
    profiles = {
        "default": GpuProfile(),
        "h100": GpuProfile(
            nodeSelector={"gpu": "h100"},
            tolerations=[Toleration(key="gpu", operator="Equal", value="h100", effect="NoSchedule")],
            runtimeClassName="nvidia",
        ),
    }
    return settings_with(gpuProfiles=profiles, **overrides)


def make_run(spec: Obj | None = None, labels: dict[str, str] | None = None) -> Obj:
    body: Obj = {
        "trainer": "kubepilot-lora",
        "baseModel": {"path": "diffusers/sd15"},
        "dataset": {"path": "cats"},
        "output": {"name": "cat-lora"},
        "resources": {"gpu": {"profile": "h100", "count": 1}, "memory": "24Gi"},
        **(spec or {}),
    }
    cr = TrainingRun(spec=body).to_dict()
    cr["metadata"] = {"name": "cats", "namespace": "ml", "uid": RUN_UID, "labels": labels or {}}
    return cr


def make_generation(spec: Obj | None = None) -> Obj:
    body: Obj = {"type": "txt2img", "prompt": "a cat", "width": 768, "height": 512, **(spec or {})}
    cr = GenerationJob(spec=body).to_dict()
    cr["metadata"] = {"name": "cat-pic", "namespace": "ml", "uid": JOB_UID}
    return cr


def env_of(job: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_single_worker_run_is_a_plain_job() -> None:
    job = train.job(make_settings(), make_run(), suspend=False)
    assert job["metadata"]["name"] == "cats-train"
    assert "completionMode" not in job["spec"]
    assert "completions" not in job["spec"]
    env = env_of(job)
    assert "WORLD_SIZE" not in env
    assert "RANK" not in env
    assert "ports" not in job["spec"]["template"]["spec"]["containers"][0]


def test_multi_worker_run_is_an_indexed_job() -> None:
    job = train.job(make_settings(), make_run({"workers": 4}), suspend=False, master_addr="10.0.0.9")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == 4
    assert spec["parallelism"] == 4


def test_multi_worker_run_gets_distributed_env() -> None:
    job = train.job(make_settings(), make_run({"workers": 3}), suspend=False, master_addr="10.0.0.9")
    env = env_of(job)
    assert env["WORLD_SIZE"]["value"] == "3"
    assert env["RANK"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
    }
    assert env["MASTER_ADDR"]["value"] == "10.0.0.9"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert "KUBEPILOT_RENDEZVOUS_LISTEN_PORT" not in env
    ports = job["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "rendezvous", "containerPort": 29500} in ports


def test_a_shared_network_namespace_gets_rank_zero_its_own_listen_port() -> None:
    settings = make_settings()
    settings.rendezvous.servicePort = 29400
    cr = make_run({"workers": 2})
    env = env_of(train.job(settings, cr, suspend=False, master_addr="10.0.0.9"))
    assert env["MASTER_PORT"]["value"] == "29400"
    assert env["KUBEPILOT_RENDEZVOUS_LISTEN_PORT"]["value"] == "29500"
    port = train.rendezvous_service(settings, cr)["spec"]["ports"][0]
    assert (port["port"], port["targetPort"]) == (29400, 29500)


def test_rendezvous_service_selects_rank_zero_of_this_run() -> None:
    cr = make_run({"workers": 2})
    service = train.rendezvous_service(make_settings(), cr)
    assert service["kind"] == "Service"
    assert service["metadata"]["ownerReferences"][0]["uid"] == RUN_UID
    chosen = service["spec"]["selector"]
    assert chosen["batch.kubernetes.io/job-completion-index"] == "0"
    assert selector("TrainingRun", "cats", "trainer").items() <= chosen.items()
    assert service["spec"]["ports"][0]["port"] == 29500
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_rendezvous_selector_matches_the_job_pod_labels() -> None:
    cr = make_run({"workers": 2})
    job = train.job(make_settings(), cr, suspend=False)
    pod_labels = dict(job["spec"]["template"]["metadata"]["labels"])
    pod_labels["batch.kubernetes.io/job-completion-index"] = "0"  # added by the Job controller
    chosen = train.rendezvous_service(make_settings(), cr)["spec"]["selector"]
    assert chosen.items() <= pod_labels.items()


def test_run_job_carries_gpu_profile_and_user_env() -> None:
    cr = make_run({"env": [{"name": "NCCL_DEBUG", "value": "INFO"}]})
    job = train.job(make_settings(), cr, suspend=False)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "h100", "effect": "NoSchedule"}
    ]
    assert pod["runtimeClassName"] == "nvidia"
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits == {"memory": "24Gi", "nvidia.com/gpu": "1"}
    assert env_of(job)["NCCL_DEBUG"]["value"] == "INFO"


def test_run_with_unknown_gpu_profile_raises() -> None:
    cr = make_run({"resources": {"gpu": {"profile": "tpu", "count": 1}}})
    with pytest.raises(common.UnknownGpuProfile):
        train.job(make_settings(), cr, suspend=False)


def test_run_job_suspend_deadline_ttl_backoff_and_grace() -> None:
    settings = make_settings(trainingBackoffLimit=2)
    cr = make_run(
        {"activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 30, "stopGracePeriodSeconds": 90}
    )
    job = train.job(settings, cr, suspend=True)
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert job["spec"]["ttlSecondsAfterFinished"] == 30
    assert job["spec"]["backoffLimit"] == 2
    assert env_of(job)["KUBEPILOT_STOP_GRACE_SECONDS"]["value"] == "90"
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 90


def test_run_kueue_label_travels_to_the_job() -> None:
    job = train.job(make_settings(), make_run(labels={KUEUE_QUEUE_LABEL: "gpus"}), suspend=True)
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpus"


def test_trainer_image_follows_the_trainer_kind_or_the_override() -> None:
    settings = make_settings()
    kohya = train.job(settings, make_run({"trainer": "kohya"}), suspend=False)
    assert kohya["spec"]["template"]["spec"]["containers"][0]["image"] == settings.images.kohya
    custom = train.job(settings, make_run({"image": "me/trainer:dev"}), suspend=False)
    assert custom["spec"]["template"]["spec"]["containers"][0]["image"] == "me/trainer:dev"


def test_trainer_config_validates_with_absolute_paths() -> None:
    cr = make_run({"workers": 2, "resumeFrom": "cat-lora/checkpoint-100"})
    config = TrainerConfig.model_validate(train.trainer_config(make_settings(), cr, "diffusers/sd15"))
    assert config.workload.kind == "TrainingRun"
    assert config.workload.uid == RUN_UID
    assert config.baseModelPath == "/models/diffusers/sd15"
    assert config.datasetDir == "/datasets/cats"
    assert config.outputDir == "/outputs/cat-lora"
    assert config.outputName == "cat-lora"
    assert config.resumeFrom == "/outputs/cat-lora/checkpoint-100"
    assert config.workers == 2


def test_trainer_secret_config_roundtrips() -> None:
    settings = make_settings()
    cr = make_run()
    secret = common.workload_secret(cr, "tok", train.trainer_config(settings, cr, "sd.safetensors"))
    config = TrainerConfig.model_validate_json(base64.b64decode(secret["data"]["config.json"]))
    assert config.baseModelPath == "/models/sd.safetensors"
    assert config.resumeFrom == ""


def test_generation_request_makes_paths_absolute() -> None:
    cr = make_generation(
        {
            "type": "img2img",
            "inputs": {"image": "uploads/in.png", "images": ["uploads/ref.png"]},
            "seed": 42,
        }
    )
    request = gen.request(make_settings(), cr, "checkpoints/sd.safetensors", [("loras/cat.safetensors", 0.8)])
    assert request.modelPath == "/models/checkpoints/sd.safetensors"
    assert request.loras[0].path == "/models/loras/cat.safetensors"
    assert request.loras[0].weight == 0.8
    assert request.image == "/outputs/uploads/in.png"
    assert request.images == ["/outputs/uploads/ref.png"]
    assert request.mask == ""
    assert request.seed == 42
    assert (request.width, request.height) == (768, 512)


def test_generation_request_without_model_leaves_the_path_empty() -> None:
    request = gen.request(make_settings(), make_generation(), "", [])
    assert request.modelPath == ""
    assert request.image == ""


def test_generation_output_dir_is_unique_per_object() -> None:
    assert gen.output_dir(make_generation()) == f"generations/ml/cat-pic-{JOB_UID[:8]}"


def test_oneshot_config_validates_as_generator_config() -> None:
    settings = make_settings()
    cr = make_generation()
    request = gen.request(settings, cr, "checkpoints/sd.safetensors", [])
    secret = common.workload_secret(cr, "tok", gen.oneshot_config(settings, cr, request))
    config = GeneratorConfig.model_validate_json(base64.b64decode(secret["data"]["config.json"]))
    assert config.mode is GeneratorMode.ONESHOT
    assert config.workload.kind == "GenerationJob"
    assert config.modelPath == "/models/checkpoints/sd.safetensors"
    assert config.outputsDir == f"/outputs/generations/ml/cat-pic-{JOB_UID[:8]}"
    assert config.request is not None
    assert config.request.prompt == "a cat"


def test_oneshot_job_runs_once_with_the_contract() -> None:
    settings = make_settings()
    job = gen.oneshot_job(settings, make_generation({"activeDeadlineSeconds": 120}))
    assert job["metadata"]["name"] == "cat-pic-gen"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["suspend"] is False
    assert job["spec"]["activeDeadlineSeconds"] == 120
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["image"] == settings.images.generator
    env = env_of(job)
    assert env["KUBEPILOT_REPORT_URL"]["value"].endswith("/v1/reports/ml/generationjobs/cat-pic")
    assert env["KUBEPILOT_CONFIG"]["value"] == "/var/run/kubepilot/config.json"


def test_submission_targets_the_job_report_url_with_its_token() -> None:
    settings = make_settings()
    cr = make_generation({"priority": 5})
    request = gen.request(settings, cr, "", [])
    url = common.report_url(settings, cr, gen.PLURAL)
    submit = gen.submission(settings, cr, request, url, "secret-token")
    assert submit.jobId == JOB_UID
    assert submit.priority == 5
    assert submit.report is not None
    assert submit.report.url == url
    assert submit.report.token == "secret-token"
    assert submit.outputDir == f"/outputs/generations/ml/cat-pic-{JOB_UID[:8]}"
