"""Pod logs (``pods/log``, plain text) through the gateway's Kubernetes client."""

from __future__ import annotations

from kubepilot_gateway.kube import PODS, KubeClient


async def read_pod_log(
    client: KubeClient, namespace: str, pod: str, *, tail_lines: int, container: str = ""
) -> str:
    """The last ``tail_lines`` lines of the pod's container log (its only container when '')."""
    params: dict[str, str | int] = {"tailLines": tail_lines}
    if container:
        params["container"] = container
    return await client.request_text("GET", PODS.path(namespace, pod, "log"), params=params)
