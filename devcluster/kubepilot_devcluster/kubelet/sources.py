"""Secrets and ConfigMaps a pod refers to, fetched once before its containers start."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]


class ContainerConfigError(Exception):
    """The pod refers to something missing (secret, key, field): reason CreateContainerConfigError."""


@dataclass
class PodSources:
    """Decoded data of the Secrets and ConfigMaps of one namespace, keyed by object name.

    A name absent from the mapping means the object does not exist.
    """

    namespace: str
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    configmaps: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def add_secret(self, obj: JsonObject) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        data: dict[str, bytes] = {}
        for key, value in (obj.get("data") or {}).items():
            try:
                data[str(key)] = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                data[str(key)] = b""
        for key, value in (obj.get("stringData") or {}).items():
            data[str(key)] = str(value).encode()
        self.secrets[name] = data

    def add_configmap(self, obj: JsonObject) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        data = {str(k): str(v).encode() for k, v in (obj.get("data") or {}).items()}
        for key, value in (obj.get("binaryData") or {}).items():
            try:
                data[str(key)] = base64.b64decode(str(value))
            except (binascii.Error, ValueError):
                data[str(key)] = b""
        self.configmaps[name] = data

    def lookup(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """The object's data; None when optional and missing; ContainerConfigError when required."""
        store = self.secrets if kind == "Secret" else self.configmaps
        if name in store:
            return store[name]
        if optional:
            return None
        noun = "secret" if kind == "Secret" else "configmap"
        raise ContainerConfigError(f'{noun} "{name}" not found')

    def key(self, kind: str, name: str, key: str, optional: bool) -> bytes | None:
        data = self.lookup(kind, name, optional)
        if data is None:
            return None
        if key in data:
            return data[key]
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {self.namespace}/{name}")


def referenced_objects(pod: JsonObject) -> tuple[set[str], set[str]]:
    """Names of the Secrets and ConfigMaps the pod's env, envFrom and volumes refer to."""
    secrets: set[str] = set()
    configmaps: set[str] = set()
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        for source in container.get("envFrom") or []:
            if "secretRef" in source:
                secrets.add(str(source["secretRef"].get("name", "")))
            if "configMapRef" in source:
                configmaps.add(str(source["configMapRef"].get("name", "")))
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                secrets.add(str(value_from["secretKeyRef"].get("name", "")))
            if "configMapKeyRef" in value_from:
                configmaps.add(str(value_from["configMapKeyRef"].get("name", "")))
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            secrets.add(str(volume["secret"].get("secretName", "")))
        if "configMap" in volume:
            configmaps.add(str(volume["configMap"].get("name", "")))
        for projection in (volume.get("projected") or {}).get("sources") or []:
            if "secret" in projection:
                secrets.add(str(projection["secret"].get("name", "")))
            if "configMap" in projection:
                configmaps.add(str(projection["configMap"].get("name", "")))
    secrets.discard("")
    configmaps.discard("")
    return secrets, configmaps
