"""ControlPilot CP-24 … CP-27: the copilot ServiceInstance's sidecar API and its token Secret.

**Reaching the sidecar (CS-01 … CS-03).** The sidecar API is served by the program of ControlPilot's
``copilot`` service: the ServiceInstance of that name (serviceType ``copilot``), whose
``status.endpoint`` is the sidecar's base URL. ``sidecarUrl`` overrides it (a sidecar run beside
the gateway, as ControlPilot's ``COPILOT_SIDECAR_URL``). The gateway only passes calls through:

- CP-24 passes ``GET /status`` through (``sidecar_reachable: true`` added when the sidecar does
  not say it); a sidecar that is not running or does not answer is ControlPilot's
  ``200 {"sidecar_reachable": false, "copilot_in_path": false, "detail"}``.
- CP-25 checks the body first (``prompt`` missing → 422, blank → 400 ``prompt is required``;
  ``cwd`` outside the workspace on its resolved real path → 400 ``cwd must be under /workspace``,
  see ``copilot``) and forwards it with ``cwd`` normalised; 503 ``copilot sidecar not reachable``,
  504 ``copilot sidecar timed out`` (``chatTimeoutSeconds``, 60 s as ControlPilot's client).
- CP-26/27 keep the token in a Secret and never return or log it. A change rolls the copilot
  ServiceInstance (a new restart nonce; the Secret added to ``envFromSecrets``) so its pod starts
  again with the new token; a stopped service is not started.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_api.serviceinstance import ServiceType
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, AlreadyExists, KubeError, NotFound
from kubepilot_gateway.profiles.controlpilot import copilot as cp
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.profiles.controlpilot.routes_services import kube_failure
from kubepilot_gateway.settings import Strict
from kubepilot_gateway.upstream import (
    SERVICE_INSTANCES,
    UpstreamHttp,
    service_endpoint,
)

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]

COPILOT_SERVICE = next(s.name for s in svc.KNOWN_SERVICES if s.service_type is ServiceType.COPILOT)
"""ControlPilot's name for the sidecar (``copilot``): the ServiceInstance backing it has the same name."""

NOT_REACHABLE = "copilot sidecar not reachable"
TIMED_OUT = "copilot sidecar timed out"
INVALID_JSON = "invalid JSON from copilot sidecar"
PROMPT_REQUIRED = "prompt is required"
TOKEN_REQUIRED = "token is required"
"""ControlPilot's and its sidecar's texts (seed-api-inventory §1.1, §6.1)."""


class CopilotSettings(Strict):
    """Settings of these endpoints (``profileSettings.controlpilot.copilot``)."""

    sidecarUrl: str = Field(
        default="",
        description="The sidecar's base URL; empty: the endpoint of the `copilot` ServiceInstance.",
    )
    chatTimeoutSeconds: float = Field(
        default=60, gt=0, description="CP-25's wait for the sidecar (504 after)."
    )
    statusTimeoutSeconds: float = Field(default=10, gt=0, description="CP-24's wait for the sidecar.")
    workspaceRoot: str = Field(
        default="/workspace",
        pattern=r"^/",
        description="The sidecar's workspace root: CP-25's `cwd` must lie under it.",
    )
    workspaceDir: str = Field(
        default="",
        description="Where the gateway sees the whole workspace; empty: `<root>/models`, `/datasets` and "
        "`/outputs` are the gateway's three volumes (cwd symlinks are checked there).",
    )
    tokenSecret: str = Field(
        default="copilot-token",
        min_length=1,
        max_length=253,
        description="The Secret (gateway namespace) holding the Copilot token.",
    )
    tokenKey: str = Field(
        default="COPILOT_GITHUB_TOKEN",
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Its key: the environment variable the sidecar gets through envFromSecrets.",
    )


class ChatRequest(BaseModel):
    """CS-03's body: ``prompt`` is required (422 when missing); every other field is the sidecar's
    and passes through as sent."""

    model_config = ConfigDict(extra="allow")

    prompt: str
    cwd: str | None = None


def _unreachable(detail: str) -> JSONResponse:
    return JSONResponse({"sidecar_reachable": False, "copilot_in_path": False, "detail": detail})


def _passed_through(response: httpx.Response, *, status: bool = False) -> JSONResponse:
    """The sidecar's answer as ControlPilot relays it: JSON as is, any other body as ``detail``."""
    if "application/json" not in response.headers.get("content-type", ""):
        return JSONResponse({"detail": response.text}, status_code=response.status_code)
    try:
        content = response.json()
    except ValueError:
        return JSONResponse({"detail": INVALID_JSON}, status_code=500)
    if status and response.is_success and isinstance(content, dict):
        content.setdefault("sidecar_reachable", True)
    return JSONResponse(content, status_code=response.status_code)


def create_router(ctx: GatewayContext, settings: CopilotSettings) -> APIRouter:
    """The routes, reading ``ctx.cache`` and writing through ``ctx.store``."""
    http = UpstreamHttp()
    router = APIRouter(lifespan=http.lifespan)
    namespace = ctx.store.namespace
    secret_path = SECRETS.path(namespace, settings.tokenSecret)
    root = settings.workspaceRoot
    mounts = cp.workspace_mounts(
        root,
        workspace_dir=settings.workspaceDir,
        models=ctx.settings.volumes.models,
        datasets=ctx.settings.volumes.datasets,
        outputs=ctx.settings.volumes.outputs,
    )
    cwd_outside = f"cwd must be under {root}"

    def sidecar() -> tuple[str, str]:
        """(base URL, '') or ('', why there is none)."""
        if settings.sidecarUrl:
            return settings.sidecarUrl.rstrip("/"), ""
        endpoint = service_endpoint(ctx, COPILOT_SERVICE)
        if endpoint.usable:
            return endpoint.url, ""
        hint = f"start it with POST /api/services/{COPILOT_SERVICE}/start"
        return "", f"{NOT_REACHABLE}: {endpoint.describe()}; {hint}"

    @router.get("/api/copilot/status")
    async def copilot_status() -> JSONResponse:
        """CP-24: the sidecar's /status, or why it cannot be reached."""
        base, why = sidecar()
        if not base:
            return _unreachable(why)
        try:
            response = await http.client().get(f"{base}/status", timeout=settings.statusTimeoutSeconds)
        except httpx.TimeoutException:
            return _unreachable(TIMED_OUT)
        except httpx.HTTPError as error:
            return _unreachable(f"{NOT_REACHABLE}: {type(error).__name__}: {error}".rstrip(": "))
        return _passed_through(response, status=True)

    @router.post("/api/copilot/chat")
    async def copilot_chat(payload: ChatRequest) -> JSONResponse:
        """CP-25: checked here, then run by the sidecar (synchronously, like ControlPilot)."""
        if not payload.prompt.strip():
            raise HTTPException(status_code=400, detail=PROMPT_REQUIRED)
        body = payload.model_dump(exclude_unset=True)
        if payload.cwd is not None:
            checked = cp.check_cwd(payload.cwd, root, mounts)
            if checked is None:
                raise HTTPException(status_code=400, detail=cwd_outside)
            body["cwd"] = checked
        base, _ = sidecar()
        if not base:
            raise HTTPException(status_code=503, detail=NOT_REACHABLE)
        try:
            response = await http.client().post(
                f"{base}/chat", json=body, timeout=settings.chatTimeoutSeconds
            )
        except httpx.TimeoutException as error:
            raise HTTPException(status_code=504, detail=TIMED_OUT) from error
        except httpx.HTTPError as error:
            raise HTTPException(status_code=503, detail=NOT_REACHABLE) from error
        return _passed_through(response)

    async def read_secret() -> JsonObject | None:
        try:
            return await ctx.client.request("GET", secret_path)
        except NotFound:
            return None
        except KubeError as error:
            raise kube_failure(error) from error

    async def write_token(existing: JsonObject | None, token: str) -> None:
        labels = {LABEL_PROFILE: svc.PROFILE_NAME}
        try:
            if existing is None:
                if not token:
                    return  # nothing stored, nothing to clear
                try:
                    body = cp.token_secret(settings.tokenSecret, settings.tokenKey, token, labels)
                    await ctx.client.request("POST", SECRETS.path(namespace), body=body)
                    return
                except AlreadyExists:
                    pass  # created meanwhile: patch it like an existing one
            await ctx.client.request(
                "PATCH",
                secret_path,
                body=cp.token_patch(settings.tokenKey, token),
                content_type="application/merge-patch+json",
            )
        except KubeError as error:
            raise kube_failure(error) from error

    async def roll_copilot() -> None:
        """Restart the copilot service's pod so it reads the new token (when the service exists)."""
        service = ctx.cache.get(SERVICE_INSTANCES, COPILOT_SERVICE, namespace)
        if service is None:
            return
        patch = cp.roll_patch(service, settings.tokenSecret, svc.RESTART_ANNOTATION, secrets.token_hex(8))
        try:
            await ctx.store.patch(SERVICE_INSTANCES, COPILOT_SERVICE, patch)
        except NotFound:
            pass  # deleted meanwhile: nothing to roll
        except KubeError as error:
            raise kube_failure(error) from error

    @router.get("/api/copilot/token")
    async def copilot_token() -> JsonObject:
        """CP-26: whether a token is stored (never the token)."""
        existing = await read_secret()
        return {"set": bool(cp.secret_token(existing, settings.tokenKey))}

    @router.post("/api/copilot/token")
    async def set_copilot_token(payload: Annotated[Any, Body()] = None) -> JsonObject:
        """CP-27: store the token (an empty string clears it); a change rolls the copilot service."""
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str):
            raise HTTPException(status_code=422, detail=TOKEN_REQUIRED)
        token = token.strip()
        existing = await read_secret()
        if cp.secret_token(existing, settings.tokenKey) != token:
            await write_token(existing, token)
            await roll_copilot()
            log.info("copilot token %s; rolling the copilot service", "set" if token else "cleared")
        return {"status": "ok", "set": bool(token)}

    return router
