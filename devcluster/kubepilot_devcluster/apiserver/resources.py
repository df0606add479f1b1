"""The resource types the server knows: built-ins and those registered by CustomResourceDefinitions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]

_GENERATION_KINDS = frozenset(
    {"Pod", "Deployment", "ReplicaSet", "DaemonSet", "Job", "CustomResourceDefinition"}
)
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    """One served resource (group, version, plural) and everything discovery says about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # For custom resources: the CRD version entry (schema, printer columns, subresources).
    crd_version: JsonObject | None = field(default=None, compare=False, hash=False)
    # Built-ins whose objects are garbage-collected with Orphan unless told otherwise (batch/v1 Job).
    orphan_by_default: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def is_custom(self) -> bool:
        return self.crd_version is not None

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def has_generation(self) -> bool:
        """Kinds whose objects carry ``metadata.generation`` on a real server (ConfigMaps, say, do not)."""
        return self.is_custom or self.kind in _GENERATION_KINDS

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored per (group, plural): one stored version per resource."""
        return (self.group, self.plural)


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    subresources: tuple[str, ...] = (),
    categories: tuple[str, ...] = ("all",),
    verbs: tuple[str, ...] = ALL_VERBS,
    orphan_by_default: bool = False,
) -> ResourceType:
    return ResourceType(
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        categories,
        subresources,
        verbs,
        None,
        orphan_by_default,
    )


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize"), ()),
    _builtin("", "v1", "nodes", "Node", False, ("no",), ("status",), ()),
    _builtin("", "v1", "pods", "Pod", True, ("po",), ("status", "log", "binding")),
    _builtin("", "v1", "services", "Service", True, ("svc",), ("status",)),
    _builtin("", "v1", "endpoints", "Endpoints", True, ("ep",), (), ()),
    _builtin("", "v1", "secrets", "Secret", True, (), (), ()),
    _builtin("", "v1", "configmaps", "ConfigMap", True, ("cm",), (), ()),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), (), ()),
    _builtin("", "v1", "events", "Event", True, ("ev",), (), ()),
    # Stored for charts and operators that create them; no volume binding, no RBAC enforcement.
    _builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",), ()),
    _builtin("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",), ()),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", True, (), (), ()),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, (), (), ()),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, (), (), ()),
    _builtin(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, (), (), ()
    ),
    _builtin("events.k8s.io", "v1", "events", "Event", True, ("ev",), (), ()),
    _builtin("batch", "v1", "jobs", "Job", True, (), ("status",), ("all",), orphan_by_default=True),
    _builtin("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale")),
    _builtin("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale")),
    _builtin("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", True, (), (), ()),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("status",),
        ("api-extensions",),
    ),
    _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True, (), (), ()),
    # Review kinds are answered, never stored: everyone is allowed everything (see handlers.review).
    _builtin(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        False,
        categories=(),
        verbs=("create",),
    ),
    _builtin(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        False,
        categories=(),
        verbs=("create",),
    ),
)

REVIEW_KINDS = frozenset({"SelfSubjectAccessReview", "SelfSubjectReview"})

# Preferred group order in discovery (kubectl resolves short names in this order).
GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "batch",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "apiextensions.k8s.io",
    "rbac.authorization.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
)


class ResourceRegistry:
    """Served resource types, looked up by URL segments or by apiVersion + kind."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        for resource in BUILTIN_RESOURCES:
            self.add(resource)

    def add(self, resource: ResourceType) -> None:
        self._by_path[(resource.group, resource.version, resource.plural)] = resource

    def remove_group_resource(self, group: str, plural: str) -> None:
        for key in [k for k in self._by_path if k[0] == group and k[2] == plural]:
            del self._by_path[key]

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for resource in self._by_path.values():
            if resource.group == group and resource.version == version and resource.kind == kind:
                return resource
        return None

    def for_storage(self, group: str, plural: str) -> ResourceType | None:
        """Any served version of a stored resource (used when only the storage key is known)."""
        for resource in self._by_path.values():
            if resource.group == group and resource.plural == plural:
                return resource
        return None

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_path.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Every served group and its versions, built-in groups first in the preferred order."""
        result: dict[str, list[str]] = {}
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        for resource in sorted(self._by_path.values(), key=lambda r: (order.get(r.group, 99), r.group)):
            versions = result.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        return result

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self._by_path.values() if r.group == group and r.version == version]
