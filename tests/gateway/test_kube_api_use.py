"""The RBAC grant each kind of request needs, as the client records it."""

from __future__ import annotations

import pytest

from kubepilot_gateway.kube import KubeClient, NotFound
from kubepilot_gateway.kube.apiuse import grant_for
from kubepilot_gateway.kube.resources import CONFIGMAPS, PODS, SECRETS, resource_for

SI = resource_for("ServiceInstance")


@pytest.mark.parametrize(
    ("method", "path", "params", "grant"),
    [
        ("GET", SI.path("ns"), None, ("kubepilot.io", "serviceinstances", "list")),
        ("GET", SI.path("ns"), {"watch": "1"}, ("kubepilot.io", "serviceinstances", "watch")),
        ("GET", SI.path(None), {"watch": "true"}, ("kubepilot.io", "serviceinstances", "watch")),
        ("GET", SI.path("ns", "comfy"), None, ("kubepilot.io", "serviceinstances", "get")),
        ("POST", SI.path("ns"), None, ("kubepilot.io", "serviceinstances", "create")),
        ("PATCH", SI.path("ns", "comfy"), None, ("kubepilot.io", "serviceinstances", "patch")),
        (
            "PATCH",
            SI.path("ns", "comfy", "status"),
            None,
            ("kubepilot.io", "serviceinstances/status", "patch"),
        ),
        ("DELETE", SI.path("ns", "comfy"), None, ("kubepilot.io", "serviceinstances", "delete")),
        ("GET", PODS.path("ns", "p", "log"), {"tailLines": 5}, ("", "pods/log", "get")),
        ("PUT", SECRETS.path("ns", "hf-token"), None, ("", "secrets", "update")),
        ("GET", CONFIGMAPS.path("ns", "cm"), None, ("", "configmaps", "get")),
        ("POST", "/api/v1/namespaces", None, ("", "namespaces", "create")),
        ("GET", "/api/v1/namespaces/ns", None, ("", "namespaces", "get")),
        ("GET", "/version", None, None),
    ],
)
def test_grant_for_maps_method_and_path_to_group_resource_and_verb(
    method: str, path: str, params: dict[str, str] | None, grant: tuple[str, str, str] | None
) -> None:
    assert grant_for(method, path, params) == grant


async def test_the_client_records_every_grant_it_used(kube: KubeClient, namespace: str) -> None:
    await kube.request("GET", SI.path(namespace))
    with pytest.raises(NotFound):
        await kube.request("GET", SECRETS.path(namespace, "does-not-exist"))
    assert ("kubepilot.io", "serviceinstances", "list") in kube.used
    assert ("", "secrets", "get") in kube.used, "a refused call still needed its grant"
