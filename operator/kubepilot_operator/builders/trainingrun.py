"""TrainingRun → the trainer's config, its Job (Indexed for several pods) and the rendezvous Service."""

from __future__ import annotations

import posixpath

from kubepilot_api.trainingrun import TrainerKind, TrainingRun
from kubepilot_api.workers.config import TrainerConfig, Workload
from kubepilot_operator.builders.common import Obj, job_manifest, meta, pod_template, service_manifest
from kubepilot_operator.naming import selector
from kubepilot_operator.settings import Settings

PLURAL = "trainingruns"
COMPONENT = "trainer"
COMMAND = ["python", "-m", "kubepilot_workers.trainer"]
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def image(settings: Settings, run: TrainingRun) -> str:
    if run.spec.image:
        return run.spec.image
    images = settings.images
    return {
        TrainerKind.KUBEPILOT_LORA: images.trainer,
        TrainerKind.KOHYA: images.kohya,
        TrainerKind.DIFFUSION_PIPE: images.diffusionPipe,
        TrainerKind.ONETRAINER: images.onetrainer,
    }[run.spec.trainer]


def output_dir(run: TrainingRun) -> str:
    """The run's folder relative to the outputs volume."""
    return run.spec.output.name


def trainer_config(settings: Settings, cr: Obj, base_model: str) -> Obj:
    """``base_model`` is relative to the models volume (resolved from a ModelPull or the spec)."""
    run = TrainingRun.model_validate(cr)
    m = meta(cr)
    storage = settings.storage
    config = TrainerConfig(
        workload=Workload(kind="TrainingRun", namespace=m["namespace"], name=m["name"], uid=m.get("uid", "")),
        trainer=run.spec.trainer,
        baseModelPath=posixpath.join(storage.models.mountPath, base_model),
        datasetDir=posixpath.join(storage.datasets.mountPath, run.spec.dataset.path),
        captionExtension=run.spec.dataset.captionExtension,
        outputDir=posixpath.join(storage.outputs.mountPath, output_dir(run)),
        outputName=run.spec.output.name,
        hyperparameters=run.spec.hyperparameters,
        deepspeed=run.spec.deepspeed,
        tool=run.spec.tool,
        resumeFrom=posixpath.join(storage.outputs.mountPath, run.spec.resumeFrom)
        if run.spec.resumeFrom
        else "",
        workers=run.spec.workers,
    )
    return config.to_dict()


def rendezvous_service(settings: Settings, cr: Obj) -> Obj:
    """A Service in front of rank 0: MASTER_ADDR by cluster IP, which needs no cluster DNS."""
    m = meta(cr)
    rendezvous = settings.rendezvous
    port = {"name": "rendezvous", "port": rendezvous.servicePort, "targetPort": rendezvous.listenPort}
    chosen = {**selector(cr["kind"], m["name"], COMPONENT), INDEX_KEY: "0"}
    service = service_manifest(cr, "rdzv", COMPONENT, chosen, [port])
    # Ranks meet before any of them is ready.
    service["spec"]["publishNotReadyAddresses"] = True
    return service


def job(settings: Settings, cr: Obj, *, suspend: bool, master_addr: str = "") -> Obj:
    run = TrainingRun.model_validate(cr)
    extra_env: list[Obj] = [{"name": e.name, "value": e.value} for e in run.spec.env]
    if run.spec.workers > 1:
        extra_env += [
            {"name": "WORLD_SIZE", "value": str(run.spec.workers)},
            {
                "name": "RANK",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}},
            },
            {"name": "LOCAL_RANK", "value": "0"},
            {"name": "MASTER_ADDR", "value": master_addr},
            {"name": "MASTER_PORT", "value": str(settings.rendezvous.servicePort)},
        ]
        if settings.rendezvous.listenPort != settings.rendezvous.servicePort:
            extra_env.append(
                {"name": "KUBEPILOT_RENDEZVOUS_LISTEN_PORT", "value": str(settings.rendezvous.listenPort)}
            )
    template = pod_template(
        settings,
        cr,
        plural=PLURAL,
        component=COMPONENT,
        image=image(settings, run),
        command=COMMAND,
        resources=run.spec.resources,
        restart_policy="Never",
        extra_env=extra_env,
        grace=run.spec.stopGracePeriodSeconds,
        ports=[{"name": "rendezvous", "containerPort": settings.rendezvous.listenPort}]
        if run.spec.workers > 1
        else None,
    )
    return job_manifest(
        cr,
        template,
        suffix="train",
        component=COMPONENT,
        suspend=suspend,
        backoff_limit=settings.trainingBackoffLimit,
        deadline=run.spec.activeDeadlineSeconds,
        ttl=run.spec.ttlSecondsAfterFinished,
        completions=run.spec.workers,
    )
