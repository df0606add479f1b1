"""The copilot sidecar's workspace paths and token Secret, for CP-24 … CP-27. Pure but for resolving links.

**Where ``/workspace`` is.** The sidecar runs the Copilot CLI with a ``cwd`` that must lie under
its workspace root (``/workspace``, as in LoRA Pilot, where ``/workspace/models``,
``/workspace/datasets`` and ``/workspace/outputs`` hold the three storage trees). The gateway
sees those trees as its three volume folders, so by default it maps

- ``/workspace/models``   → ``settings.volumes.models``,
- ``/workspace/datasets`` → ``settings.volumes.datasets``,
- ``/workspace/outputs``  → ``settings.volumes.outputs``,

and when the whole workspace is mounted in the gateway too (``workspaceDir``), ``/workspace`` →
that folder. ``check_cwd`` normalises ``cwd`` lexically (so ``/workspace/../etc`` is ``/etc``,
outside), then, where a mapping covers it, resolves the mapped path with every symbolic link
followed and requires the result to stay inside the mapped folder (a link inside the workspace
that points out is refused). Containment is by path components, so ``/workspace2`` is not under
``/workspace``. The *normalised* path is what the sidecar receives, so it resolves exactly the
path checked here. Paths under the root that no mapping covers (``/workspace`` itself,
``/workspace/apps``) can only be checked lexically; the sidecar checks them again.

**The token.** A Secret (``copilot-token``) with one key, named as the environment variable the
Copilot CLI reads (``COPILOT_GITHUB_TOKEN``), so the copilot ServiceInstance takes it with
``envFromSecrets``. Clearing the token removes the key but keeps the Secret, so a pod listing it
in ``envFrom`` still starts. Nothing here logs or returns the token.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]


def _under(path: str, root: str) -> bool:
    """``path`` is ``root`` or inside it (by components; both normalised and absolute)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def workspace_mounts(
    root: str, *, workspace_dir: str, models: str, datasets: str, outputs: str
) -> dict[str, str]:
    """Sidecar path prefix → the folder where the gateway sees it (see the module docstring)."""
    root = posixpath.normpath(root)
    if workspace_dir:
        return {root: workspace_dir}
    volumes = {"models": models, "datasets": datasets, "outputs": outputs}
    return {posixpath.join(root, name): folder for name, folder in volumes.items() if folder}


def check_cwd(cwd: str, root: str, mounts: Mapping[str, str]) -> str | None:
    """The normalised ``cwd`` when it lies under ``root`` (symbolic links resolved where a mount
    maps it); None when it does not."""
    if not cwd.startswith("/") or "\x00" in cwd:
        return None
    root = posixpath.normpath(root)
    normalised = posixpath.normpath(cwd)
    if normalised.startswith("//"):  # POSIX keeps a leading '//'; it is still '/'
        normalised = "/" + normalised.lstrip("/")
    if not _under(normalised, root):
        return None
    covering = [prefix for prefix in mounts if _under(normalised, posixpath.normpath(prefix))]
    if not covering:
        return normalised
    prefix = max(covering, key=len)
    local_root = Path(mounts[prefix]).resolve()
    rest = normalised[len(posixpath.normpath(prefix)) :].lstrip("/")
    # strict=False: a folder that does not exist yet resolves as far as it exists.
    resolved = (local_root / rest).resolve() if rest else local_root
    if not resolved.is_relative_to(local_root):
        return None
    return normalised


# -- the token Secret ----------------------------------------------------------------------------


def secret_token(secret: JsonObject | None, key: str) -> str:
    """The token stored under ``key`` ('' when there is none or it does not decode)."""
    data = (secret or {}).get("data") or {}
    raw = data.get(key) if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw:
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""


def token_patch(key: str, token: str) -> JsonObject:
    """Merge patch storing ``token`` under ``key`` (removing the key when ``token`` is empty)."""
    value = base64.b64encode(token.encode("utf-8")).decode("ascii") if token else None
    return {"data": {key: value}}


def token_secret(name: str, key: str, token: str, labels: Mapping[str, str]) -> JsonObject:
    """The Secret to create when there is none yet."""
    data = {key: base64.b64encode(token.encode("utf-8")).decode("ascii")} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": dict(labels)},
        "type": "Opaque",
        "data": data,
    }


def roll_patch(service: JsonObject, secret_name: str, restart_annotation: str, nonce: str) -> JsonObject:
    """Merge patch rolling the copilot ServiceInstance onto the new token: a new restart nonce (the
    operator rolls the pod) and the Secret in ``envFromSecrets`` if it is not there yet. Neither
    starts a stopped service."""
    patch: JsonObject = {"metadata": {"annotations": {restart_annotation: nonce}}}
    spec = service.get("spec") if isinstance(service.get("spec"), dict) else {}
    current = list((spec or {}).get("envFromSecrets") or [])
    if secret_name not in current:
        patch["spec"] = {"envFromSecrets": [*current, secret_name]}
    return patch
