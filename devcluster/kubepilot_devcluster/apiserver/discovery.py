"""Legacy (unaggregated) discovery documents: ``/api``, ``/api/v1``, ``/apis``, ``/apis/<g>/<v>``.

Aggregated discovery (``apidiscovery.k8s.io``) is not served: every response is plain
``application/json``, which client-go takes as the signal to fall back to these documents.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubepilot_devcluster.apiserver.resources import SUBRESOURCE_VERBS, ResourceRegistry, ResourceType

JsonObject = dict[str, Any]

SERVER_VERSION: JsonObject = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.0-devcluster",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> JsonObject:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_groups(registry: ResourceRegistry) -> JsonObject:
    groups = []
    for group, versions in registry.group_versions().items():
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceRegistry, group: str) -> JsonObject | None:
    versions = registry.group_versions().get(group)
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def _storage_hash(resource: ResourceType) -> str:
    text = f"{resource.group}/{resource.version}/{resource.kind}"
    return hashlib.sha256(text.encode()).digest()[:8].hex()


def _resource_entry(resource: ResourceType) -> JsonObject:
    entry: JsonObject = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
        "storageVersionHash": _storage_hash(resource),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    return entry


def _subresource_entries(resource: ResourceType) -> list[JsonObject]:
    entries = []
    for sub in resource.subresources:
        entry: JsonObject = {
            "name": f"{resource.plural}/{sub}",
            "singularName": "",
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(SUBRESOURCE_VERBS),
        }
        if sub == "scale":
            entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        elif sub == "log":
            entry.update({"kind": "Pod", "verbs": ["get"]})
        elif sub == "binding":
            entry.update({"kind": "Binding", "verbs": ["create"]})
        elif sub == "finalize":
            entry["verbs"] = ["update"]
        entries.append(entry)
    return entries


def resource_list(registry: ResourceRegistry, group: str, version: str) -> JsonObject | None:
    resources = sorted(registry.in_group_version(group, version), key=lambda r: r.plural)
    if not resources:
        return None
    entries = []
    for resource in resources:
        entries.append(_resource_entry(resource))
        entries.extend(_subresource_entries(resource))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }
