"""OT-07 … OT-12: the current session's config, named configs, validation, schema and defaults.

Named configs are the keys ``<name>.json`` of one ConfigMap (``configMap`` setting, default
``onetrainer-configs``), read with one GET per request (ConfigMaps are not in the informer cache;
these are rare reads). ``/api/config/load/{config_name}`` takes the name without ``.json`` (a
trailing ``.json`` is tolerated); a name with a path separator, ``..`` or characters a ConfigMap key
cannot hold is a 400, an absent one a 404. ``/api/config/current`` is the current session's
``spec.tool.config``, ``{"config": null}`` when there has been no session.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import Field

from kubepilot_gateway import runslot
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, KubeError, NotFound, resource_for
from kubepilot_gateway.profiles.onetrainer import builtin, configs
from kubepilot_gateway.profiles.onetrainer import session as ot
from kubepilot_gateway.settings import Strict

JsonObject = dict[str, Any]
TRAINING_RUNS = resource_for("TrainingRun")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
SUFFIX = ".json"


class ConfigsSettings(Strict):
    """Settings of the config endpoints (``profileSettings.onetrainer.configs``)."""

    configMap: str = Field(
        default="onetrainer-configs",
        description="ConfigMap whose <name>.json keys are the named OneTrainer configs.",
        max_length=253,
    )


def config_key(name: str) -> str:
    """The ConfigMap key for ``name``; HTTPException 400 for a name that cannot be one."""
    base = name.removesuffix(SUFFIX)
    if not base or "/" in name or "\\" in name or ".." in name or not CONFIG_KEY.match(base):
        raise HTTPException(status_code=400, detail=f"Invalid config name: {name}")
    return f"{base}{SUFFIX}"


def create_router(
    ctx: GatewayContext, settings: ConfigsSettings, prefix: str, *, builtin_gpus: int | None = None
) -> APIRouter:
    """``builtin_gpus``: None when sessions run OneTrainer itself; else new sessions run on the
    built-in trainer with that many GPUs, and validation adds its translation's findings."""
    router = APIRouter()
    namespace = ctx.store.namespace

    async def named() -> dict[str, str]:
        try:
            config_map = await ctx.client.request("GET", CONFIGMAPS.path(namespace, settings.configMap))
        except NotFound:
            return {}
        except KubeError as error:
            raise HTTPException(status_code=500, detail=f"Kubernetes API error: {error}") from error
        data = config_map.get("data") or {}
        return {key: value for key, value in data.items() if key.endswith(SUFFIX) and isinstance(value, str)}

    @router.get("/api/config/current")
    async def config_current() -> JsonObject:
        """OT-07."""
        runs = ctx.cache.list(TRAINING_RUNS, namespace, labels={ot.LABEL_SLOT: prefix})
        run = runslot.current_run(prefix, runs)
        config = ((run or {}).get("spec") or {}).get("tool", {}).get("config") if run else None
        return {"config": config if isinstance(config, dict) else None}

    @router.get("/api/config/list")
    async def config_list() -> JsonObject:
        """OT-08."""
        return {"configs": sorted(await named())}

    @router.get("/api/config/load/{config_name}")
    async def config_load(config_name: str) -> JsonObject:
        """OT-09."""
        key = config_key(config_name)
        text = (await named()).get(key)
        if text is None:
            raise HTTPException(status_code=404, detail=f"Config not found: {config_name}")
        try:
            document = json.loads(text)
        except ValueError as error:
            raise HTTPException(status_code=500, detail=f"Config {config_name} is not valid JSON") from error
        if not isinstance(document, dict):
            raise HTTPException(status_code=500, detail=f"Config {config_name} is not a JSON object")
        return document

    @router.post("/api/config/validate")
    async def config_validate(config: Annotated[dict[str, Any], Body()]) -> JsonObject:
        """OT-10: 200 with ``valid: false`` for an invalid config. On the built-in trainer the
        translation's warnings are added, and its errors when the config is otherwise valid (the
        dataset's own findings come at start, where the folder is read)."""
        result = configs.validate(config)
        if builtin_gpus is not None:
            translation = builtin.translate(config, images=None, gpus=builtin_gpus)
            if result["valid"] and translation.errors:
                result = {**result, "valid": False, "errors": [*result["errors"], *translation.errors]}
            result["warnings"] = [*result["warnings"], *translation.warnings]
        return result

    @router.get("/api/config/schema")
    async def config_schema() -> JsonObject:
        """OT-11."""
        return configs.schema()

    @router.get("/api/config/defaults")
    async def config_defaults() -> JsonObject:
        """OT-12."""
        return configs.defaults()

    return router
