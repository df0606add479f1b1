"""HomePilot's ``/settings/api-keys*``: the Hugging Face and Civitai keys, kept in one Secret.

The Secret is ``apiKeysSecret`` (data keys ``huggingface`` and ``civitai``), read and written
through the API server (Secrets are never cached). A key's value is never answered, logged or
put in an error text: the listing shows ``masked`` only, and more conservatively than HomePilot
(which shows the first and last four characters): asterisks and the last four characters of
keys of 12 characters or more, asterisks alone for shorter ones. ``source`` is ``stored`` (the
gateway has no environment keys of HomePilot's). ``/test`` checks the key against the provider
(``apiKeyTestUrls``: HomePilot's endpoints by default), as HomePilot does. A key that cannot be
sent in a header (not printable ASCII, whitespace inside) is refused when set (400) and tested as
invalid, never sent (kubepilot's: HomePilot would fail on it later).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, AlreadyExists, NotFound
from kubepilot_gateway.profiles.homepilot.config import PROFILE_NAME, HomePilotSettings

JsonObject = dict[str, Any]
PROVIDERS = ("huggingface", "civitai")
ENV_VARS = {"huggingface": "HF_TOKEN", "civitai": "CIVITAI_API_KEY"}
TEST_URLS = {
    "huggingface": "https://huggingface.co/api/whoami-v2",
    "civitai": "https://civitai.com/api/v1/me",
}
NAME_FIELDS = {"huggingface": "name", "civitai": "username"}
MERGE_PATCH = "application/merge-patch+json"


class ApiKeySetRequest(BaseModel):
    provider: str = Field(description="Provider: 'huggingface' or 'civitai'")
    key: str = Field(max_length=4096, description="The API key/token")


class ApiKeyTestRequest(BaseModel):
    provider: str = Field(description="Provider to test")
    key: str | None = Field(
        default=None, max_length=4096, description="Key to test (uses stored if not provided)"
    )


def mask(key: str) -> str:
    """A display form that reveals at most the last four characters."""
    if len(key) < 12:
        return "*" * len(key)
    return "*" * (len(key) - 4) + key[-4:]


def _status(key: str | None, provider: str) -> JsonObject:
    if key:
        return {"configured": True, "source": "stored", "masked": mask(key), "env_var": ENV_VARS[provider]}
    return {"configured": False, "source": "none", "masked": None, "env_var": ENV_VARS[provider]}


def header_safe(key: str) -> bool:
    """Whether ``key`` can be sent in an ``Authorization`` header: printable ASCII, no whitespace
    (what providers' tokens are; anything else could not be sent, and would break the pulls)."""
    return all(33 <= ord(char) <= 126 for char in key)


NOT_HEADER_SAFE = "An API key is printable ASCII without spaces or control characters"


def _unknown(provider: str, hint: bool = True) -> JSONResponse:
    suffix = ". Use 'huggingface' or 'civitai'." if hint else ""
    return JSONResponse({"ok": False, "error": f"Unknown provider: {provider}{suffix}"}, status_code=400)


def create_router(ctx: GatewayContext, settings: HomePilotSettings) -> APIRouter:
    router = APIRouter()
    namespace = ctx.store.namespace
    path = SECRETS.path(namespace, settings.apiKeysSecret)
    urls = {**TEST_URLS, **settings.apiKeyTestUrls}

    async def stored() -> dict[str, str]:
        try:
            secret = await ctx.client.request("GET", path)
        except NotFound:
            return {}
        keys: dict[str, str] = {}
        for provider, encoded in (secret.get("data") or {}).items():
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                value = base64.b64decode(str(encoded)).decode().strip()
                if provider in PROVIDERS and value:
                    keys[provider] = value
        return keys

    async def write(data: dict[str, str | None]) -> None:
        patch = {"data": data}
        try:
            await ctx.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        except NotFound:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": settings.apiKeysSecret, "labels": {LABEL_PROFILE: PROFILE_NAME}},
                "type": "Opaque",
                "data": {k: v for k, v in data.items() if v is not None},
            }
            try:
                await ctx.client.request("POST", SECRETS.path(namespace), body=body)
            except AlreadyExists:
                await ctx.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def statuses() -> JsonObject:
        keys = await stored()
        return {provider: _status(keys.get(provider), provider) for provider in PROVIDERS}

    @router.get("/settings/api-keys")
    async def list_keys() -> JsonObject:
        """Which keys are set, masked."""
        return {
            "ok": True,
            "keys": await statuses(),
            "note": "API keys are optional. Only needed for gated/restricted models.",
        }

    @router.post("/settings/api-keys/test")
    async def test_key(req: ApiKeyTestRequest) -> JSONResponse:
        """Ask the provider whether the key (given, else stored) is valid."""
        if req.provider not in PROVIDERS:
            return _unknown(req.provider, hint=False)
        key = req.key.strip() if req.key else (await stored()).get(req.provider)
        if not key:
            message = f"No API key provided or stored for {req.provider}"
            return JSONResponse({"ok": True, "valid": False, "message": message})
        if not header_safe(key):
            return JSONResponse({"ok": True, "valid": False, "message": f"Invalid token: {NOT_HEADER_SAFE}"})
        try:
            async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
                answer = await client.get(urls[req.provider], headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError as error:
            message = f"Connection error: {type(error).__name__}"
            return JSONResponse({"ok": True, "valid": False, "message": message})
        if answer.status_code != 200:
            message = f"Invalid token (HTTP {answer.status_code})"
            return JSONResponse({"ok": True, "valid": False, "message": message})
        try:
            user = answer.json().get(NAME_FIELDS[req.provider])
        except (ValueError, AttributeError):
            user = None
        body = {
            "ok": True,
            "valid": True,
            "message": f"Authenticated as: {user or 'unknown'}",
            "username": user,
        }
        return JSONResponse(body)

    @router.post("/settings/api-keys")
    async def set_key(req: ApiKeySetRequest) -> JSONResponse:
        """Store a key (an empty one removes it)."""
        if req.provider not in PROVIDERS:
            return _unknown(req.provider)
        value = req.key.strip()
        if value and not header_safe(value):
            return JSONResponse({"ok": False, "error": NOT_HEADER_SAFE}, status_code=400)
        await write({req.provider: base64.b64encode(value.encode()).decode() if value else None})
        return JSONResponse(
            {
                "ok": True,
                "message": f"API key for {req.provider} saved successfully",
                "status": (await statuses())[req.provider],
            }
        )

    @router.delete("/settings/api-keys/{provider}")
    async def delete_key(provider: str) -> JSONResponse:
        """Remove a stored key."""
        if provider not in PROVIDERS:
            return _unknown(provider)
        existed = provider in await stored()
        if existed:
            await write({provider: None})
        return JSONResponse(
            {
                "ok": True,
                "deleted": existed,
                "message": f"API key for {provider} {'removed' if existed else 'was not set'}",
            }
        )

    return router
