"""Pod logs (``pods/log``, plain text) through the gateway's Kubernetes client.

``KubeClient.request`` decodes JSON only, and a log is text; so this GET goes through the client's
own httpx client (same base URL, authentication, TLS and timeouts) and maps failures to the same
typed errors (``NotFound``, ``BadRequest``, ``KubeUnavailable``, ...).
"""

from __future__ import annotations

import httpx

from kubepilot_gateway.kube import PODS, KubeClient, KubeUnavailable
from kubepilot_gateway.kube.errors import api_error


async def read_pod_log(
    client: KubeClient, namespace: str, pod: str, *, tail_lines: int, container: str = ""
) -> str:
    """The last ``tail_lines`` lines of the pod's container log (its only container when '')."""
    params: dict[str, str | int] = {"tailLines": tail_lines}
    if container:
        params["container"] = container
    path = PODS.path(namespace, pod, "log")
    # The client's httpx client carries the authentication; KubeClient has no text request.
    http: httpx.AsyncClient = client._http
    try:
        response = await http.get(path, params=params, headers={"Accept": "text/plain, */*"})
    except httpx.TransportError as error:
        raise KubeUnavailable(f"GET {path}: {type(error).__name__}: {error}") from error
    if not response.is_success:
        raise api_error(response.status_code, response.content)
    return response.content.decode("utf-8", errors="replace")
