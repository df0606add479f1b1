"""ModelPull → the downloader's config and Job."""

from __future__ import annotations

import posixpath

from kubepilot_api.modelpull import ModelPull, ModelType
from kubepilot_api.workers.config import DownloaderConfig, Workload
from kubepilot_api.workers.env import CREDENTIALS_FILE_ENV
from kubepilot_operator.builders.common import Obj, job_manifest, meta, pod_template
from kubepilot_operator.settings import Settings

PLURAL = "modelpulls"
COMPONENT = "downloader"
CREDENTIALS_MOUNT = "/var/run/kubepilot-credentials"
COMMAND = ["python", "-m", "kubepilot_workers.downloader"]


def relative_target(pull: ModelPull) -> str:
    """The destination folder relative to the models volume (``loras/styles``); empty for ``mixed``,
    whose file paths carry their own type folders."""
    destination = pull.spec.destination
    if destination.modelType is ModelType.MIXED:
        return ""
    return (
        posixpath.join(destination.modelType.value, destination.subdir)
        if destination.subdir
        else destination.modelType.value
    )


def downloader_config(settings: Settings, cr: Obj) -> Obj:
    pull = ModelPull.model_validate(cr)
    m = meta(cr)
    root = settings.storage.models.mountPath
    config = DownloaderConfig(
        workload=Workload(kind="ModelPull", namespace=m["namespace"], name=m["name"], uid=m.get("uid", "")),
        source=pull.spec.source,
        modelsRoot=root,
        targetDir=posixpath.join(root, relative_target(pull)).rstrip("/") or root,
        storeDir=posixpath.join(root, ".store"),
        tokenFile=f"{CREDENTIALS_MOUNT}/token" if pull.spec.credentialsSecretRef else "",
        maxParallelFiles=pull.spec.maxParallelFiles,
        force=pull.spec.force,
        huggingFaceEndpoint=settings.huggingFaceEndpoint,
        expectedSizeBytes=pull.spec.expectedSizeBytes,
    )
    if settings.civitaiApiBase:
        config.civitaiApiBase = settings.civitaiApiBase
    return config.to_dict()


def job(settings: Settings, cr: Obj, *, suspend: bool) -> Obj:
    pull = ModelPull.model_validate(cr)
    template = pod_template(
        settings,
        cr,
        plural=PLURAL,
        component=COMPONENT,
        image=settings.images.downloader,
        command=COMMAND,
        resources=pull.spec.resources,
        restart_policy="Never",
        grace=20,
    )
    ref = pull.spec.credentialsSecretRef
    if ref is not None:
        template["spec"]["volumes"].append(
            {
                "name": "credentials",
                "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "token"}]},
            }
        )
        container = template["spec"]["containers"][0]
        container["volumeMounts"].append(
            {"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True}
        )
        container["env"].append({"name": CREDENTIALS_FILE_ENV, "value": f"{CREDENTIALS_MOUNT}/token"})
    return job_manifest(
        cr,
        template,
        suffix="download",
        component=COMPONENT,
        suspend=suspend,
        backoff_limit=settings.downloadBackoffLimit,
        deadline=pull.spec.activeDeadlineSeconds,
        ttl=pull.spec.ttlSecondsAfterFinished,
    )
