"""Getting a pod ready to run: its Secrets/ConfigMaps, volumes, environment and containers' launch plans."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..controllers.client import CONFIGMAPS, SECRETS, KubeClient
from .config import NodeConfig
from .env import PodFacts, container_env
from .gpus import gpu_environment
from .paths import termination_message_path
from .runtime import DEFAULT_TERMINATION_MESSAGE_PATH, LaunchPlan, base_environment, plan_launch
from .sources import PodSources, referenced_objects
from .volumes import Mount, container_mounts, materialise_volumes, volume_env

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class NodeContext:
    """What every pod worker of the node shares."""

    client: KubeClient
    config: NodeConfig
    data_dir: Path
    api_url: str
    host_ip: str = "127.0.0.1"


async def fetch_sources(client: KubeClient, pod: JsonObject) -> PodSources:
    """The Secrets and ConfigMaps the pod refers to (missing ones are simply absent)."""
    namespace = str((pod.get("metadata") or {}).get("namespace", "default"))
    sources = PodSources(namespace)
    secrets, configmaps = referenced_objects(pod)
    for name in secrets:
        obj = await client.get(SECRETS, namespace, name)
        if obj is not None:
            sources.add_secret(obj)
    for name in configmaps:
        obj = await client.get(CONFIGMAPS, namespace, name)
        if obj is not None:
            sources.add_configmap(obj)
    return sources


def plan_pod(
    ctx: NodeContext, pod: JsonObject, pod_ip: str, gpus: list[int], sources: PodSources
) -> dict[str, LaunchPlan]:
    """Materialise the volumes and plan every (init) container; raises the kubelet's waiting-reason errors."""
    meta = pod.get("metadata") or {}
    namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
    spec = pod.get("spec") or {}
    facts = PodFacts(pod, pod_ip, ctx.host_ip, ctx.config.node_name)
    volumes = materialise_volumes(pod, facts, sources, ctx.data_dir)
    base = base_environment(str(spec.get("hostname") or name))
    api = urlsplit(ctx.api_url)
    base["KUBERNETES_SERVICE_HOST"] = api.hostname or "127.0.0.1"
    base["KUBERNETES_SERVICE_PORT"] = str(api.port or 80)
    base |= volume_env(volumes) | gpu_environment(gpus)
    plans: dict[str, LaunchPlan] = {}
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        container_name = str(container.get("name"))
        term_path = termination_message_path(ctx.data_dir, namespace, name, uid, container_name)
        term_path.parent.mkdir(parents=True, exist_ok=True)
        mounts = container_mounts(container, volumes)
        declared = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH)
        mounts.append(Mount(declared, str(term_path)))
        env = container_env(container, facts, sources)
        container_base = base | {"KUBEPILOT_TERMINATION_MESSAGE_PATH": str(term_path)}
        plans[container_name] = plan_launch(container, ctx.config, env, container_base, mounts)
    return plans
