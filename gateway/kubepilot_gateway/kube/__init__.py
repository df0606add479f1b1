"""The gateway's cluster layer: API client, informer cache, CR store and their errors."""

from kubepilot_gateway.kube.cache import ClusterCache
from kubepilot_gateway.kube.client import KubeClient, load_configuration
from kubepilot_gateway.kube.crstore import CrStore, WriteObserver, merge_patch_for
from kubepilot_gateway.kube.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Gone,
    Invalid,
    KubeError,
    KubeUnavailable,
    NotFound,
    ServerError,
    TooManyRequests,
)
from kubepilot_gateway.kube.informer import Informer
from kubepilot_gateway.kube.resources import (
    CONFIGMAPS,
    CUSTOM_RESOURCES,
    JOBS,
    PODS,
    SECRETS,
    WATCHED,
    ResourceType,
    resource_for,
)

__all__ = [
    "CONFIGMAPS",
    "CUSTOM_RESOURCES",
    "JOBS",
    "PODS",
    "SECRETS",
    "WATCHED",
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "ClusterCache",
    "Conflict",
    "CrStore",
    "Gone",
    "Informer",
    "Invalid",
    "KubeClient",
    "KubeError",
    "KubeUnavailable",
    "NotFound",
    "ResourceType",
    "ServerError",
    "TooManyRequests",
    "WriteObserver",
    "load_configuration",
    "merge_patch_for",
    "resource_for",
]
