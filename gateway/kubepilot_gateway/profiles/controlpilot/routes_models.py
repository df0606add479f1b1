"""ControlPilot CP-08 … CP-15: the model manifest (a catalog ConfigMap), pulls as ModelPulls, and the
Hugging Face token as a Secret.

- The manifest is the ConfigMap ``manifestConfigMap`` (key ``manifestKey``), read through the API
  server (ConfigMaps are not cached) at most once per ``manifestCacheSeconds``; when it does not
  exist, the built-in :data:`~.models.DEFAULT_MANIFEST` is served.
- A pull is one ModelPull per entry (deterministic name: two concurrent starts create one; the
  API server is the lock). Starting a pull whose ModelPull finished (failed, cancelled, or
  completed but its files are gone) replaces it: the old one is switched to ``deletePolicy:
  Retain`` (its files stay for the new pull to verify and reuse) and deleted first.
- Waiting (the blocking pull, a delete) follows the event bus, never a poll.
- Deleting a model deletes its ModelPull, whose finalizer in the operator removes the files it
  lists (not those another ModelPull also lists); files of the entry still present afterwards
  (downloaded before this gateway, or where the operator cannot reach the volume) are removed
  here, contained in the models volume, again sparing files another ModelPull lists.
  ``deleted`` counts the entry's files that were present before and are gone after: what was
  really removed, whoever removed it.
- The token is written to the Secret ``hfTokenSecret`` (key ``hfTokenKey``) and is never
  answered, logged or put in an error text; new Hugging Face pulls reference the Secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import Field

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.bus import ResourceEvent
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import (
    SECRETS,
    AlreadyExists,
    ApiError,
    Conflict,
    KubeError,
    NotFound,
    resource_for,
)
from kubepilot_gateway.kube.configdoc import ConfigMapDocument
from kubepilot_gateway.profiles.controlpilot import models as mdl
from kubepilot_gateway.settings import Strict

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
MODEL_PULLS = resource_for("ModelPull")

UNKNOWN_MODEL = "Unknown model"
TOKEN_REQUIRED = "token is required"
"""ControlPilot's own texts (seed-api-inventory §6.1)."""
DELETE_TIMED_OUT = "Timed out waiting for the operator to remove the model files"
PULL_TIMED_OUT = "Timed out waiting for the pull to finish"
PULL_DELETED = "The pull was deleted before it finished"
"""Ours: waits ControlPilot's synchronous commands never have."""


class ModelsSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.models``)."""

    manifestConfigMap: str = Field(
        default="controlpilot-models",
        description="ConfigMap (in the gateway's namespace) holding the model manifest; when it does "
        "not exist, a built-in manifest is served.",
    )
    manifestKey: str = Field(default="manifest", description="Key of the manifest in that ConfigMap.")
    manifestCacheSeconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a manifest read is reused before the ConfigMap is read again.",
    )
    hfTokenSecret: str = Field(default="hf-token", description="Secret holding the Hugging Face token.")
    hfTokenKey: str = Field(default="HF_TOKEN", description="Key of the token in that Secret.")
    pullTimeoutSeconds: float = Field(
        default=6 * 3600, gt=0, description="Cap on a blocking pull (POST /api/models/{name}/pull)."
    )
    removalTimeoutSeconds: float = Field(
        default=60, gt=0, description="How long to wait for the operator to remove a ModelPull's files."
    )


def kube_failure(error: KubeError) -> HTTPException:
    """A failed call to the API server as ControlPilot reports a failed command: 500 with the text."""
    detail = error.message if isinstance(error, ApiError) else str(error)
    return HTTPException(status_code=500, detail=detail)


# -- the manifest --------------------------------------------------------------------------------


def manifest_source(ctx: GatewayContext, settings: ModelsSettings) -> ConfigMapDocument[mdl.Manifest]:
    """The manifest ConfigMap, read at most once per ``manifestCacheSeconds``; the last one read
    serves while the API server fails, and a first read that fails is ControlPilot's 500."""
    return ConfigMapDocument(
        ctx.client,
        ctx.store.namespace,
        settings.manifestConfigMap,
        settings.manifestKey,
        ttl=settings.manifestCacheSeconds,
        parse=mdl.parse_manifest,
        default_text=mdl.DEFAULT_MANIFEST,
        what="model manifest",
        first_failure=kube_failure,
    )


# -- the models volume ---------------------------------------------------------------------------


def _contained(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it stays inside ``root`` once resolved, else None."""
    candidate = root / relative
    try:
        candidate.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return candidate


def probe(root: Path, files: tuple[str, ...], folder: str | None) -> dict[str, int]:
    """Regular files present (relative path → size) among ``files`` and under ``folder``."""
    found: dict[str, int] = {}
    for relative in files:
        path = _contained(root, relative)
        if path is not None and path.is_file() and not path.is_symlink():
            found[relative] = path.stat().st_size
    base = _contained(root, folder) if folder else None
    if base is not None and base.is_dir():
        for directory, dirs, names in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for filename in names:
                path = Path(directory) / filename
                if filename.startswith(".") or path.is_symlink() or not path.is_file():
                    continue
                found[path.relative_to(root).as_posix()] = path.stat().st_size
    return found


def _blob_of(blobs: Path, stat: os.stat_result) -> Path | None:
    """The content store's blob that is this file (a hard link), if any."""
    if stat.st_nlink < 2 or not blobs.is_dir():
        return None
    for blob in blobs.iterdir():
        with contextlib.suppress(OSError):
            other = blob.stat()
            if (other.st_ino, other.st_dev) == (stat.st_ino, stat.st_dev):
                return blob
    return None


def remove_files(root: Path, files: list[str], held: set[str]) -> None:
    """Remove files (relative to ``root``) that stay inside it and no other ModelPull lists, with
    their content-store blob once nothing else links to it, and then their emptied folders (not
    the type folders themselves)."""
    blobs = root / ".store" / "blobs"
    top = root.resolve()
    for relative in files:
        path = _contained(root, relative)
        if relative in held or path is None or path.is_symlink() or not path.is_file():
            continue
        try:
            blob = _blob_of(blobs, path.stat())
            path.unlink()
            if blob is not None and blob.stat().st_nlink <= 1:
                blob.unlink()
        except FileNotFoundError:
            continue
        folder = path.parent.resolve()
        while folder != top and folder.parent != top and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


# -- the routes ----------------------------------------------------------------------------------


def create_router(ctx: GatewayContext, settings: ModelsSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    router = APIRouter()
    namespace = ctx.store.namespace
    manifest = manifest_source(ctx, settings)
    models_root = Path(ctx.settings.volumes.models)

    async def known(name: str) -> mdl.ManifestEntry:
        entry = (await manifest.get()).get(name)
        if entry is None:
            raise HTTPException(status_code=404, detail=UNKNOWN_MODEL)
        return entry

    def cached_pull(name: str) -> JsonObject | None:
        return ctx.cache.get(MODEL_PULLS, mdl.pull_name(name), namespace)

    def all_pulls() -> list[JsonObject]:
        return ctx.cache.list(MODEL_PULLS, namespace)

    async def found_files(entry: mdl.ManifestEntry, pull: JsonObject | None) -> dict[str, int]:
        files, folder = mdl.file_query(entry, pull)
        return await asyncio.to_thread(probe, models_root, files, folder)

    async def wait_for(
        entry: mdl.ManifestEntry, done: Callable[[JsonObject | None], bool], within: float
    ) -> JsonObject | None:
        """The entry's ModelPull (None once gone) as soon as ``done`` holds for it; TimeoutError after
        ``within`` seconds. Subscribed before the first look, so no change falls between look and wait."""
        name = mdl.pull_name(entry.name)
        async with ctx.bus.subscribe(kinds=[MODEL_PULLS.kind], namespace=namespace) as events:
            current = cached_pull(entry.name)
            if done(current):
                return current
            async with asyncio.timeout(within):
                async for item in events:
                    # A Lagged marker may hide our event: look again whenever anything arrives.
                    if isinstance(item, ResourceEvent) and item.name != name:
                        continue
                    current = cached_pull(entry.name)
                    if done(current):
                        return current
        raise TimeoutError  # the bus closed (shutdown)

    async def hf_token_set() -> bool:
        try:
            secret = await ctx.client.request("GET", SECRETS.path(namespace, settings.hfTokenSecret))
        except NotFound:
            return False
        except KubeError as error:
            raise kube_failure(error) from error
        value = str((secret.get("data") or {}).get(settings.hfTokenKey) or "")
        return bool(value.strip())

    async def delete_pull(name: str, preconditions: JsonObject) -> None:
        """Delete the ModelPull ``name`` if it is still the object seen (uid precondition): a
        concurrent call may have replaced it already, and the new one must live."""
        options: JsonObject = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if preconditions.get("uid"):
            options["preconditions"] = preconditions
        # NotFound: gone already; Conflict: replaced by a concurrent call, nothing of the old one left.
        with contextlib.suppress(NotFound, Conflict):
            await ctx.client.request("DELETE", MODEL_PULLS.path(namespace, name), body=options)

    def replaced(old: JsonObject) -> Callable[[JsonObject | None], bool]:
        """Whether ``old`` is gone: no object of its name, or another one (a concurrent call's)."""
        uid = (old.get("metadata") or {}).get("uid")
        return lambda obj: obj is None or (obj.get("metadata") or {}).get("uid") != uid

    async def retire(entry: mdl.ManifestEntry, pull: JsonObject) -> None:
        """Delete a finished ModelPull that must be pulled again, keeping its files for the next one."""
        name = mdl.pull_name(entry.name)
        precondition = {"uid": (pull.get("metadata") or {}).get("uid")}
        try:
            if not mdl.deleting(pull):
                with contextlib.suppress(NotFound):
                    await ctx.store.patch(MODEL_PULLS, name, {"spec": {"deletePolicy": "Retain"}})
                await delete_pull(name, precondition)
            await wait_for(entry, replaced(pull), settings.removalTimeoutSeconds)
        except TimeoutError:
            raise HTTPException(status_code=500, detail=DELETE_TIMED_OUT) from None
        except KubeError as error:
            raise kube_failure(error) from error

    async def start(entry: mdl.ManifestEntry) -> JsonObject:
        """The entry's ModelPull, running or done: the current one, or a new one."""
        pull = cached_pull(entry.name)
        if pull is not None and not mdl.deleting(pull):
            state = mdl.job_state(pull)
            if state is mdl.JobState.RUNNING:
                return pull
            if state is mdl.JobState.DONE and mdl.installed(entry, pull, await found_files(entry, pull)):
                return pull
        if pull is not None:
            await retire(entry, pull)
        credentials = (settings.hfTokenSecret, settings.hfTokenKey) if await hf_token_set() else None
        body = mdl.new_model_pull(entry, credentials=credentials)
        try:
            try:
                return await ctx.store.create(MODEL_PULLS, body)
            except AlreadyExists:
                # A concurrent start won the race: its ModelPull is ours too.
                return await ctx.store.get(MODEL_PULLS, mdl.pull_name(entry.name))
        except KubeError as error:
            raise kube_failure(error) from error

    @router.get("/api/models")
    async def list_models() -> list[JsonObject]:
        """CP-08: the manifest entries with what is installed."""
        entries = [(entry, cached_pull(entry.name)) for entry in (await manifest.get()).entries]

        def on_disk(entry: mdl.ManifestEntry, pull: JsonObject | None) -> dict[str, int]:
            return probe(models_root, *mdl.file_query(entry, pull))

        def render() -> list[JsonObject]:
            root = str(models_root)
            return [
                mdl.catalog_row(entry, pull, on_disk(entry, pull), models_root=root)
                for entry, pull in entries
            ]

        return await asyncio.to_thread(render)

    @router.get("/api/models/pulls")
    async def list_pulls() -> JsonObject:
        """CP-12: running pulls and those finished in the last 10 minutes, newest first."""
        pulls = ctx.cache.list(MODEL_PULLS, namespace, {LABEL_PROFILE: mdl.PROFILE_NAME})
        return {"jobs": mdl.recent_jobs(pulls, now=time.time())}

    @router.post("/api/models/{name}/pull")
    async def pull_blocking(name: str) -> JsonObject:
        """CP-09: pull and wait until the pull ends; its output, or a 500 whose detail is the output."""
        entry = await known(name)
        await start(entry)

        def finished(obj: JsonObject | None) -> bool:
            return obj is None or mdl.job_state(obj) is not mdl.JobState.RUNNING

        try:
            pull = await wait_for(entry, finished, settings.pullTimeoutSeconds)
        except TimeoutError:
            current = cached_pull(entry.name)
            lines = mdl.output_lines(current) if current is not None else []
            raise HTTPException(status_code=500, detail="\n".join([*lines, PULL_TIMED_OUT])) from None
        if pull is None or mdl.job_state(pull) is mdl.JobState.IDLE:
            raise HTTPException(status_code=500, detail=PULL_DELETED)
        output = "\n".join(mdl.output_lines(pull))
        if mdl.job_state(pull) is not mdl.JobState.DONE:
            raise HTTPException(status_code=500, detail=output)
        return {"status": "ok", "output": output}

    @router.post("/api/models/{name}/pull/start")
    async def pull_start(name: str) -> JsonObject:
        """CP-10: start a background pull (the running one, if any)."""
        entry = await known(name)
        pull = await start(entry)
        return mdl.job(entry.name, pull, now=time.time())

    @router.get("/api/models/{name}/pull/status")
    async def pull_status(name: str) -> JsonObject:
        """CP-11: the pull job, or idle (none, or finished more than 10 minutes ago)."""
        return mdl.job(name, cached_pull(name), now=time.time(), keep_finished=False)

    @router.post("/api/models/{name}/delete")
    async def delete_model(name: str) -> JsonObject:
        """CP-13: remove the model's files; ``deleted`` = its files present before and gone after."""
        entry = await known(name)
        pull = cached_pull(entry.name)
        files, folder = mdl.file_query(entry, pull)
        before = await asyncio.to_thread(probe, models_root, files, folder)
        present = mdl.owned_files(entry, pull, before)
        if pull is not None:
            pull_name = mdl.pull_name(entry.name)
            try:
                if (pull.get("spec") or {}).get("deletePolicy") != "Delete" and not mdl.deleting(pull):
                    await ctx.store.patch(MODEL_PULLS, pull_name, {"spec": {"deletePolicy": "Delete"}})
                await delete_pull(pull_name, {"uid": (pull.get("metadata") or {}).get("uid")})
                await wait_for(entry, replaced(pull), settings.removalTimeoutSeconds)
            except NotFound:
                pass
            except TimeoutError:
                raise HTTPException(status_code=500, detail=DELETE_TIMED_OUT) from None
            except KubeError as error:
                raise kube_failure(error) from error
        held = mdl.held_by_others(all_pulls(), mdl.pull_name(entry.name))
        await asyncio.to_thread(remove_files, models_root, present, held)
        after = await asyncio.to_thread(probe, models_root, tuple(present), None)
        return {"status": "ok", "deleted": sum(1 for path in present if path not in after)}

    @router.post("/api/hf-token")
    async def set_hf_token(request: Request) -> JsonObject:
        """CP-14: store the token (query ``token`` or JSON body ``{"token"}``) in the Secret."""
        token = await _token_from(request)
        if not token:
            raise HTTPException(status_code=422, detail=TOKEN_REQUIRED)
        encoded = base64.b64encode(token.encode()).decode()
        path = SECRETS.path(namespace, settings.hfTokenSecret)
        try:
            try:
                await ctx.client.request(
                    "PATCH",
                    path,
                    body={"data": {settings.hfTokenKey: encoded}},
                    content_type="application/merge-patch+json",
                )
            except NotFound:
                body = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": settings.hfTokenSecret,
                        "labels": {LABEL_PROFILE: mdl.PROFILE_NAME},
                    },
                    "type": "Opaque",
                    "data": {settings.hfTokenKey: encoded},
                }
                try:
                    await ctx.client.request("POST", SECRETS.path(namespace), body=body)
                except AlreadyExists:  # created meanwhile: replace its value
                    await ctx.client.request(
                        "PATCH",
                        path,
                        body={"data": {settings.hfTokenKey: encoded}},
                        content_type="application/merge-patch+json",
                    )
        except KubeError as error:
            # Whatever the API server echoed back, the token must not travel on.
            detail = error.message if isinstance(error, ApiError) else type(error).__name__
            for secret in (token, encoded):
                detail = detail.replace(secret, "***")
            raise HTTPException(status_code=500, detail=f"Could not store the token: {detail}") from None
        return {"status": "ok"}

    @router.get("/api/hf-token")
    async def get_hf_token() -> JsonObject:
        """CP-15: whether a token is stored (never the token)."""
        return {"set": await hf_token_set()}

    return router


async def _token_from(request: Request) -> str:
    """The token from the query, else from a JSON object body; '' when neither has one."""
    token = request.query_params.get("token")
    if not (token or "").strip():
        raw = await request.body()
        if raw.strip():
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("token"), str):
                token = payload["token"]
    return (token or "").strip()
