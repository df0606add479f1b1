"""Pieces every workload pod shares: owner reference, the token-and-config Secret, volumes,
environment, GPU profile, labels.

The worker contract (``kubepilot_api.workers``): the pod reads its config from
``$KUBEPILOT_CONFIG``, its intake token from ``$KUBEPILOT_TOKEN_FILE`` and pushes to
``$KUBEPILOT_REPORT_URL``. Config and token travel in one Secret owned by the CR: one object per
workload, and a pod never sees a config that does not match its token.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubepilot_api.common import ComputeResources
from kubepilot_api.workers.env import (
    CONFIG_ENV,
    POD_IP_ENV,
    REPORT_URL_ENV,
    TERMINATION_MESSAGE_ENV,
    TOKEN_FILE_ENV,
)
from kubepilot_api.workers.progress import report_path
from kubepilot_operator.naming import child_name, labels, selector, service_name
from kubepilot_operator.settings import Settings

Obj = dict[str, Any]
SECRET_MOUNT = "/var/run/kubepilot"
CONFIG_FILE = "config.json"
TOKEN_FILE = "token"
TERMINATION_PATH = "/dev/termination-log"
STOP_GRACE_ENV = "KUBEPILOT_STOP_GRACE_SECONDS"
MODELS_DIR_ENV = "KUBEPILOT_MODELS_DIR"
DATASETS_DIR_ENV = "KUBEPILOT_DATASETS_DIR"
OUTPUTS_DIR_ENV = "KUBEPILOT_OUTPUTS_DIR"
VOLUME_NAMES = ("models", "datasets", "outputs")


class UnknownGpuProfile(ValueError):
    """A CR names a GPU profile the operator settings do not define."""


INPUTS = "inputs"
"""The outputs volume's folder of input images (uploads staged by the gateway, ComfyUI's input/)."""


def inputs_dir(settings: Settings) -> str:
    """Where a generator finds a workflow's LoadImage files: the outputs volume's ``inputs/``."""
    return f"{settings.storage.outputs.mountPath.rstrip('/')}/{INPUTS}"


def meta(cr: Obj) -> Obj:
    return dict(cr.get("metadata") or {})


def owner_reference(cr: Obj) -> Obj:
    m = meta(cr)
    return {
        "apiVersion": cr["apiVersion"],
        "kind": cr["kind"],
        "name": m["name"],
        "uid": m["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_meta(cr: Obj, suffix: str, component: str, *, service: bool = False) -> Obj:
    """Metadata of a child; ``service`` names it as a Service must be named (DNS-1035)."""
    m = meta(cr)
    namer = service_name if service else child_name
    return {
        "name": namer(m["name"], suffix, m.get("uid", "")),
        "namespace": m["namespace"],
        "labels": labels(cr["kind"], m["name"], component, m.get("labels")),
        "ownerReferences": [owner_reference(cr)],
    }


def secret_name(cr: Obj) -> str:
    m = meta(cr)
    return child_name(m["name"], "kp", m.get("uid", ""))


def workload_secret(cr: Obj, token: str, config: Obj | None) -> Obj:
    """The Secret with the intake token (and the worker config, when the workload has one)."""
    data = {TOKEN_FILE: base64.b64encode(token.encode()).decode()}
    if config is not None:
        data[CONFIG_FILE] = base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()
    secret_meta = child_meta(cr, "kp", "credentials")
    return {"apiVersion": "v1", "kind": "Secret", "metadata": secret_meta, "type": "Opaque", "data": data}


def report_url(settings: Settings, cr: Obj, plural: str) -> str:
    m = meta(cr)
    return settings.intake_url + report_path(m["namespace"], plural, m["name"])


def gpu_fields(settings: Settings, resources: ComputeResources | None) -> Obj:
    """Pod spec fields and container resources for a CR's ``resources``."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    pod: Obj = {}
    if resources is not None:
        if resources.cpu:
            requests["cpu"] = resources.cpu
        if resources.memory:
            requests["memory"] = limits["memory"] = resources.memory
        gpu = resources.gpu
        if gpu is not None and gpu.count > 0:
            profile = settings.gpuProfiles.get(gpu.profile)
            if profile is None:
                known = ", ".join(sorted(settings.gpuProfiles)) or "none"
                raise UnknownGpuProfile(f"GPU profile {gpu.profile!r} is not defined (known: {known})")
            limits[profile.resourceName] = str(gpu.count)
            if profile.nodeSelector:
                pod["nodeSelector"] = dict(profile.nodeSelector)
            if profile.tolerations:
                pod["tolerations"] = [
                    {k: v for k, v in t.model_dump().items() if v} for t in profile.tolerations
                ]
            if profile.runtimeClassName:
                pod["runtimeClassName"] = profile.runtimeClassName
    container: Obj = {}
    if requests or limits:
        container["resources"] = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {"pod": pod, "container": container}


def worker_env(
    settings: Settings, cr: Obj, plural: str, with_config: bool, grace: int | None = None
) -> list[Obj]:
    env: list[Obj] = [
        {"name": REPORT_URL_ENV, "value": report_url(settings, cr, plural)},
        {"name": TOKEN_FILE_ENV, "value": f"{SECRET_MOUNT}/{TOKEN_FILE}"},
        {"name": TERMINATION_MESSAGE_ENV, "value": TERMINATION_PATH},
        {"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    # Where this pod sees the three volumes: catalog commands refer to them as $(KUBEPILOT_*_DIR), so
    # a mount path changed in the settings reaches every program's arguments.
    env += [
        {"name": MODELS_DIR_ENV, "value": settings.storage.models.mountPath},
        {"name": DATASETS_DIR_ENV, "value": settings.storage.datasets.mountPath},
        {"name": OUTPUTS_DIR_ENV, "value": settings.storage.outputs.mountPath},
    ]
    if with_config:
        env.insert(0, {"name": CONFIG_ENV, "value": f"{SECRET_MOUNT}/{CONFIG_FILE}"})
    if grace is not None:
        env.append({"name": STOP_GRACE_ENV, "value": str(grace)})
    if settings.huggingFaceEndpoint:
        env.append({"name": "HF_ENDPOINT", "value": settings.huggingFaceEndpoint})
    return env


def volumes(settings: Settings, cr: Obj) -> tuple[list[Obj], list[Obj]]:
    """Pod volumes and container mounts: the three storage volumes and the workload Secret."""
    storage = settings.storage
    pod_volumes = [
        storage.models.pod_volume("models"),
        storage.datasets.pod_volume("datasets"),
        storage.outputs.pod_volume("outputs"),
        # 0444: worker images run as a non-root user without an fsGroup; only this pod mounts it.
        {"name": "kubepilot", "secret": {"secretName": secret_name(cr), "defaultMode": 0o444}},
    ]
    mounts: list[Obj] = [
        {"name": "models", "mountPath": storage.models.mountPath},
        {"name": "datasets", "mountPath": storage.datasets.mountPath},
        {"name": "outputs", "mountPath": storage.outputs.mountPath},
        {"name": "kubepilot", "mountPath": SECRET_MOUNT, "readOnly": True},
    ]
    return pod_volumes, mounts


def pod_template(
    settings: Settings,
    cr: Obj,
    *,
    plural: str,
    component: str,
    image: str,
    command: list[str],
    resources: ComputeResources | None,
    restart_policy: str,
    with_config: bool = True,
    extra_env: list[Obj] | None = None,
    grace: int | None = None,
    ports: list[Obj] | None = None,
    extra_containers: list[Obj] | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    """A pod template for one worker container (plus sidecars) under the contract above."""
    m = meta(cr)
    gpu = gpu_fields(settings, resources)
    pod_volumes, mounts = volumes(settings, cr)
    container: Obj = {
        "name": component,
        "image": image,
        "imagePullPolicy": settings.images.pullPolicy,
        "command": list(command),
        "env": [*worker_env(settings, cr, plural, with_config, grace), *(extra_env or [])],
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **gpu["container"],
    }
    if ports:
        container["ports"] = ports
    template_labels = {
        **labels(cr["kind"], m["name"], component, m.get("labels")),
        **selector(cr["kind"], m["name"], component),
    }
    spec: Obj = {
        "restartPolicy": restart_policy,
        "serviceAccountName": settings.workerServiceAccount,
        # Worker pods get no Kubernetes credentials at all: they push progress over HTTP.
        "automountServiceAccountToken": False,
        "containers": [container, *(extra_containers or [])],
        "volumes": pod_volumes,
        **gpu["pod"],
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace + 5
    template_meta: Obj = {"labels": template_labels}
    if annotations:
        template_meta["annotations"] = dict(annotations)
    return {"metadata": template_meta, "spec": spec}


def job_manifest(
    cr: Obj,
    template: Obj,
    *,
    suffix: str,
    component: str,
    suspend: bool,
    backoff_limit: int,
    deadline: int | None,
    ttl: int | None = None,
    completions: int | None = None,
) -> Obj:
    """A batch/v1 Job owned by the CR; Kueue's queue label travels with it."""
    spec: Obj = {"backoffLimit": backoff_limit, "suspend": suspend, "template": template}
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    if completions and completions > 1:
        spec.update(completions=completions, parallelism=completions, completionMode="Indexed")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_meta(cr, suffix, component),
        "spec": spec,
    }


def service_manifest(cr: Obj, suffix: str, component: str, selector: dict[str, str], ports: list[Obj]) -> Obj:
    """A ClusterIP Service owned by the CR, named as Services must be (DNS-1035)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_meta(cr, suffix, component, service=True),
        "spec": {"selector": selector, "ports": ports},
    }


def job_drift(existing: Obj, desired: Obj) -> Obj | None:
    """The Job fields we may change after creation: suspend and the deadline."""
    patch: Obj = {}
    for key in ("suspend", "activeDeadlineSeconds"):
        if key in desired["spec"] and existing.get("spec", {}).get(key) != desired["spec"][key]:
            patch[key] = desired["spec"][key]
    return {"spec": patch} if patch else None


def secret_drift(existing: Obj, desired: Obj) -> Obj | None:
    return None if existing.get("data") == desired.get("data") else {"data": desired["data"]}
