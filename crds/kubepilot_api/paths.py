"""Kubernetes REST paths: the one convention every component that talks to an API server follows."""

from __future__ import annotations


def resource_path(
    api_version: str, plural: str, namespace: str | None = None, name: str = "", subresource: str = ""
) -> str:
    """``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` for the others.

    A collection (of every namespace when ``namespace`` is empty), one object, or its subresource.
    """
    parts = [f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
        if subresource:
            parts.append(subresource)
    return "/".join(parts)
