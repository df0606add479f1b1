"""The resource types the gateway reads and writes, and their API paths.

Our four kinds come from the API package's registry, so no plural or group is typed twice; the
pods and Jobs behind them are the two built-in types the profiles show (logs, progress, state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubepilot_api.constants import API_VERSION
from kubepilot_api.paths import resource_path
from kubepilot_api.registry import KINDS

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """A resource type: its Kind, apiVersion and plural (all ours are namespaced)."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
        """The collection (of every namespace when ``namespace`` is None), an object, or its subresource."""
        return resource_path(
            self.api_version, self.plural, namespace if self.namespaced else None, name, subresource
        )


CUSTOM_RESOURCES: tuple[ResourceType, ...] = tuple(
    ResourceType(kind.crd.kind, API_VERSION, kind.crd.plural) for kind in KINDS()
)
PODS = ResourceType("Pod", "v1", "pods")
JOBS = ResourceType("Job", "batch/v1", "jobs")
WATCHED: tuple[ResourceType, ...] = (*CUSTOM_RESOURCES, PODS, JOBS)
"""What the gateway's cache holds: our four kinds and the pods and Jobs behind them."""
SECRETS = ResourceType("Secret", "v1", "secrets")
CONFIGMAPS = ResourceType("ConfigMap", "v1", "configmaps")
"""Read and written directly (never cached: the gateway must not hold every Secret in memory)."""


def resource_for(name: str) -> ResourceType:
    """A watched type by its Kind or plural (case-insensitive)."""
    wanted = name.lower()
    for resource in WATCHED:
        if wanted in (resource.kind.lower(), resource.plural):
            return resource
    raise KeyError(f"the gateway does not know a resource called {name!r}")


def resource_of(obj: JsonObject) -> ResourceType | None:
    """The watched type an object belongs to, from its apiVersion and kind; None when not ours."""
    for resource in WATCHED:
        if obj.get("kind") == resource.kind and obj.get("apiVersion") == resource.api_version:
            return resource
    return None


def object_key(obj: JsonObject) -> tuple[str, str]:
    """(namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")
