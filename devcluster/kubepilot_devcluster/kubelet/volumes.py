"""Pod volumes as host directories, and the mountPath rewriting that lets processes find them.

Processes see real host paths, so every volume is a host directory:

* ``secret``, ``configMap``, ``downwardAPI``, ``projected`` and ``emptyDir`` are materialised once, when the
  pod starts, under ``<data_dir>/pods/<ns>_<pod>_<uid>/volumes/<volume>`` (``items``, ``defaultMode``
  and ``mode`` honoured; later Secret/ConfigMap edits are not propagated);
* ``hostPath`` is the host path itself (created when ``type`` is ``DirectoryOrCreate``/empty);
* ``persistentVolumeClaim`` is ``<data_dir>/volumes/pvc/<namespace>/<claimName>``, kept across pods.

A container's ``volumeMounts[].mountPath`` usually does not exist on the host, so the kubelet rewrites it:
every occurrence of a mountPath (as a whole path prefix) in the container's command, args, env values and
workingDir is replaced by the real directory (plus ``subPath``), and ``KUBEPILOT_VOLUME_<NAME>`` (name
upper-cased, ``-`` → ``_``) is exported with the volume's real directory. A hostPath volume mounted at its own
path needs no rewrite. Paths computed at run time from other strings are not rewritten: read the env vars.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .env import PodFacts, field_value, format_map, resource_field_value
from .paths import volume_dir
from .sources import ContainerConfigError, PodSources

JsonObject = dict[str, Any]
DEFAULT_FILE_MODE = 0o644
PLACEHOLDER_TOKEN = b"devcluster-has-no-authentication\n"


@dataclass(frozen=True)
class Mount:
    """A container's view of one volume: the path it asked for and the real host path behind it."""

    mount_path: str
    real_path: str


def _write_file(root: Path, relative: str, content: bytes, mode: int) -> None:
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ContainerConfigError(f"volume item path {relative!r} escapes the volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(mode)
    tmp.replace(target)


def _project_keys(
    root: Path, data: dict[str, bytes] | None, items: list[JsonObject] | None, mode: int, optional: bool
) -> None:
    if data is None:
        return
    if not items:
        for key, value in data.items():
            _write_file(root, key, value, mode)
        return
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise ContainerConfigError(f"volume item key {key!r} not found")
        _write_file(root, str(item.get("path", key)), data[key], int(item.get("mode", mode)))


def _project_downward(root: Path, items: list[JsonObject], facts: PodFacts, mode: int) -> None:
    containers = {c.get("name"): c for c in (facts.pod.get("spec") or {}).get("containers") or []}
    for item in items:
        if "fieldRef" in item:
            path = str(item["fieldRef"].get("fieldPath", ""))
            meta = facts.pod.get("metadata") or {}
            if path in ("metadata.labels", "metadata.annotations"):
                text = format_map(meta.get(path.split(".")[1]) or {})
            else:
                text = field_value(facts, path)
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            text = resource_field_value(containers.get(ref.get("containerName"), {}), ref)
        else:
            continue
        _write_file(root, str(item.get("path", "")), text.encode(), int(item.get("mode", mode)))


def _materialise_one(volume: JsonObject, root: Path, facts: PodFacts, sources: PodSources) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if "secret" in volume or "configMap" in volume:
        is_secret = "secret" in volume
        spec = volume["secret"] if is_secret else volume["configMap"]
        name = str(spec.get("secretName" if is_secret else "name", ""))
        optional = bool(spec.get("optional", False))
        data = sources.lookup("Secret" if is_secret else "ConfigMap", name, optional)
        mode = int(spec.get("defaultMode", DEFAULT_FILE_MODE))
        _project_keys(root, data, spec.get("items"), mode, optional)
    elif "downwardAPI" in volume:
        spec = volume["downwardAPI"]
        mode = int(spec.get("defaultMode", DEFAULT_FILE_MODE))
        _project_downward(root, spec.get("items") or [], facts, mode)
    elif "projected" in volume:
        spec = volume["projected"]
        mode = int(spec.get("defaultMode", DEFAULT_FILE_MODE))
        for source in spec.get("sources") or []:
            for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if key in source:
                    optional = bool(source[key].get("optional", False))
                    data = sources.lookup(kind, str(source[key].get("name", "")), optional)
                    _project_keys(root, data, source[key].get("items"), mode, optional)
            if "downwardAPI" in source:
                _project_downward(root, source["downwardAPI"].get("items") or [], facts, mode)
            if "serviceAccountToken" in source:
                # The devcluster has no authentication; a placeholder keeps clients reading the file happy.
                _write_file(
                    root, str(source["serviceAccountToken"].get("path", "token")), PLACEHOLDER_TOKEN, mode
                )


def materialise_volumes(
    pod: JsonObject, facts: PodFacts, sources: PodSources, data_dir: Path
) -> dict[str, Path]:
    """Create every volume of the pod on the host; returns volume name → real directory."""
    meta = pod.get("metadata") or {}
    namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
    real: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        vol_name = str(volume.get("name", ""))
        if "hostPath" in volume:
            path = Path(str(volume["hostPath"].get("path", "")))
            if volume["hostPath"].get("type", "") in ("", "DirectoryOrCreate"):
                path.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise ContainerConfigError(f"hostPath {path} of volume {vol_name!r} does not exist")
            real[vol_name] = path
        elif "persistentVolumeClaim" in volume:
            claim = str(volume["persistentVolumeClaim"].get("claimName", ""))
            path = data_dir / "volumes" / "pvc" / namespace / claim
            path.mkdir(parents=True, exist_ok=True)
            real[vol_name] = path
        elif any(k in volume for k in ("secret", "configMap", "downwardAPI", "projected", "emptyDir")):
            root = volume_dir(data_dir, namespace, name, uid, vol_name)
            _materialise_one(volume, root, facts, sources)
            real[vol_name] = root
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise ContainerConfigError(
                f"volume {vol_name!r}: type {kinds} is not supported by the devcluster"
            )
    return real


def container_mounts(container: JsonObject, volumes: dict[str, Path]) -> list[Mount]:
    """The container's mounts with their real paths; longest mountPath first so nested mounts win."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        name = str(mount.get("name", ""))
        if name not in volumes:
            raise ContainerConfigError(f"volumeMount {name!r} refers to no volume of the pod")
        real = volumes[name]
        sub_path = str(mount.get("subPath", ""))
        if sub_path:
            real = real / sub_path
        mounts.append(Mount(str(mount.get("mountPath", "")).rstrip("/") or "/", str(real)))
    return sorted(mounts, key=lambda m: len(m.mount_path), reverse=True)


def rewrite_paths(text: str, mounts: list[Mount]) -> str:
    """Replace each mountPath appearing as a whole path prefix in the text by its real path."""
    for mount in mounts:
        if mount.mount_path == mount.real_path or mount.mount_path == "/":
            continue
        pattern = re.compile(r"(?<![\w./-])" + re.escape(mount.mount_path) + r"(?![\w.-])")
        text = pattern.sub(mount.real_path.replace("\\", "\\\\"), text)
    return text


def volume_env(volumes: dict[str, Path]) -> dict[str, str]:
    """``KUBEPILOT_VOLUME_<NAME>`` for every volume of the pod."""
    return {"KUBEPILOT_VOLUME_" + re.sub(r"[^A-Z0-9]", "_", n.upper()): str(p) for n, p in volumes.items()}


def remove_pod_volumes(root: Path) -> None:
    """Best-effort cleanup of a pod's materialised volumes (secret files included)."""
    for dirpath, _dirs, files in os.walk(root / "volumes", topdown=False):
        for file in files:
            Path(dirpath, file).unlink(missing_ok=True)
        Path(dirpath).rmdir()
