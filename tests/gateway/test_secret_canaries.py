"""Secret canaries across every gateway profile: each secret the profiles hold gets a unique value,
set the way a user sets it (the API, or the Secret / mounted file the README documents); then every
profile is exercised (every GET route of every app, the routes that use the secrets, failed logins
and wrong keys, canaries in the query, a header and the JSON body of failing requests), and no
answer (body or header), no log record (any logger, DEBUG and up, the access log included) and no
ConfigMap or custom resource of the namespace may hold a canary. Secrets are the only place for them.

One gateway serves all five profiles under the combined listener (``/p/<profile>``), so the request
guard and its access log run as in production; OneTrainer sits behind the listener's own token auth.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from kubepilot_gateway.app.gateway import Gateway, mount_path
from kubepilot_gateway.app.settings import AuthSettings, ListenerSettings, ProfileListener
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import (
    CONFIGMAPS,
    CUSTOM_RESOURCES,
    SECRETS,
    ClusterCache,
    CrStore,
    KubeClient,
    resource_for,
)
from kubepilot_gateway.profiles import profiles
from kubepilot_gateway.profiles.comfyui_docker import tokens
from kubepilot_gateway.settings import Settings, Volumes

JsonObject = dict[str, Any]
SI = resource_for("ServiceInstance")
BASE = "http://gw.test"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
LISTENER_ENV = "KUBEPILOT_TEST_CANARY_LISTENER_TOKENS"
ADMIN_PASSWORD_FIELD = "password"


def canary(kind: str) -> str:
    return f"canary-{kind}-{secrets.token_hex(8)}"


@dataclass
class Canaries:
    """Every secret value of the test, stored or only offered (a wrong one must not echo either)."""

    hf_token: str = field(default_factory=lambda: canary("hf"))
    copilot_token: str = field(default_factory=lambda: canary("copilot"))
    homepilot_hf_key: str = field(default_factory=lambda: canary("hp-hf"))
    homepilot_civitai_key: str = field(default_factory=lambda: canary("hp-civitai"))
    comfy_password: str = field(default_factory=lambda: canary("comfy-pw"))
    comfy_signing_key: str = field(default_factory=lambda: canary("comfy-sign"))
    sdcpp_api_key: str = field(default_factory=lambda: canary("sdcpp-key"))
    listener_token: str = field(default_factory=lambda: canary("listener"))
    wrong: str = field(default_factory=lambda: canary("wrong"))
    offered: str = field(default_factory=lambda: canary("offered"))

    def values(self) -> list[str]:
        return [str(value) for value in vars(self).values()]

    def forms(self) -> dict[str, str]:
        """Each canary, its base64 (as a Secret's data holds it) and its URL-quoted form."""
        found = {}
        for value in self.values():
            found[value] = value
            found[base64.b64encode(value.encode()).decode()] = value
            found[quote(value, safe="")] = value
        return found

    def in_text(self, text: str) -> list[str]:
        return sorted({value for form, value in self.forms().items() if form in text})


class Records(logging.Handler):
    """Every log record of every logger, DEBUG and up, formatted as a handler would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> Iterator[tuple[str, str]]:
        formatter = logging.Formatter()
        for record in self.records:
            text = formatter.format(record)
            if record.name == "httpx" and BASE in text:
                continue  # the test's own client logging the URL it asked for
            yield record.name, text + repr(getattr(record, "__dict__", {}))


@pytest.fixture
def records() -> Iterator[Records]:
    root = logging.getLogger()
    handler = Records()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass
class Served:
    http: httpx.AsyncClient
    gateway: Gateway
    canaries: Canaries
    answers: list[tuple[str, httpx.Response]] = field(default_factory=list)

    async def call(self, profile: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = mount_path(profile) + path
        try:
            response = await asyncio.wait_for(self.http.request(method, url, **kwargs), 15)
        except TimeoutError:
            pytest.fail(f"{method} {url} did not answer in 15 s")
        self.answers.append((f"{method} {url}", response))
        return response


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


async def comfy_auth_secret(kube: KubeClient, namespace: str, canaries: Canaries) -> None:
    """ComfyUI-Docker's login Secret, as the README says to create it."""
    users = [
        {
            "username": "admin",
            "password_hash": tokens.hash_password(canaries.comfy_password, iterations=1000),
            "role": "administrator",
        }
    ]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "comfyui-docker-auth"},
        "data": {"signing-key": b64(canaries.comfy_signing_key), "users": b64(json.dumps(users))},
    }
    await kube.request("POST", SECRETS.path(namespace), body=secret)


@pytest.fixture
async def served(
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    tmp_path: Path,
    records: Records,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Served]:
    canaries = Canaries()
    for name in ("models", "outputs", "datasets"):
        (tmp_path / name).mkdir()
    key_file = tmp_path / "sdcpp-api-key"
    key_file.write_text(f"{canaries.sdcpp_api_key}\n")
    monkeypatch.setenv(LISTENER_ENV, canaries.listener_token)
    await comfy_auth_secret(kube, namespace, canaries)
    volumes = Volumes(
        models=str(tmp_path / "models"),
        outputs=str(tmp_path / "outputs"),
        datasets=str(tmp_path / "datasets"),
    )
    profile_settings: dict[str, Any] = {
        "comfyui-docker": {"enableAuth": True, "authCacheSeconds": 0},
        "sdcpp-studio": {
            "models": [{"id": "tiny-sd", "path": "diffusers/tiny-sd"}],
            "apiKeyFile": str(key_file),
        },
        "homepilot": {
            "installWaitSeconds": 0.2,
            "apiKeyTestUrls": {"huggingface": f"{UNREACHABLE}/whoami", "civitai": f"{UNREACHABLE}/me"},
        },
    }
    settings = Settings(namespace=namespace, volumes=volumes, profileSettings=profile_settings)
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    listener_auth = AuthSettings(
        enabled=True, tokensEnv=LISTENER_ENV, apiKeyHeader="X-API-Key", queryParam="token"
    )
    listeners = ListenerSettings(profiles={"onetrainer": ProfileListener(auth=listener_auth)})
    gateway = Gateway(ctx, profiles(), listeners=listeners)
    assert sorted(gateway.apps) == [
        "comfyui-docker",
        "controlpilot",
        "homepilot",
        "onetrainer",
        "sdcpp-studio",
    ]
    async with gateway.lifespan():
        transport = httpx.ASGITransport(app=gateway.combined_app())
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as http:
            yield Served(http, gateway, canaries)


def fill(template: str) -> str:
    """A path template with every parameter a harmless value."""
    return re.sub(r"\{[^}]+\}", "none-such-1", template)


async def set_the_secrets(s: Served, store: CrStore) -> dict[str, str]:
    """Every secret set as a user sets it; the auth headers of each profile for the rest."""
    c = s.canaries
    # ControlPilot: the HF token (query, then JSON), the copilot token (with a copilot service to roll).
    await store.create(
        SI, {"metadata": {"name": "copilot"}, "spec": {"serviceType": "copilot", "running": True}}
    )
    await store.patch_status(SI, "copilot", {"phase": "Running", "ready": True, "endpoint": UNREACHABLE})
    assert (
        await s.call("controlpilot", "POST", "/api/hf-token", params={"token": c.hf_token})
    ).status_code == 200
    assert (
        await s.call("controlpilot", "POST", "/api/hf-token", json={"token": c.hf_token})
    ).status_code == 200
    answer = await s.call("controlpilot", "POST", "/api/copilot/token", json={"token": c.copilot_token})
    assert answer.json() == {"status": "ok", "set": True}
    # HomePilot: both provider keys.
    for provider, key in (("huggingface", c.homepilot_hf_key), ("civitai", c.homepilot_civitai_key)):
        answer = await s.call(
            "homepilot", "POST", "/settings/api-keys", json={"provider": provider, "key": key}
        )
        assert answer.status_code == 200, answer.text
    # ComfyUI-Docker: a login with the password (the Secret was created by the fixture).
    login = await s.call(
        "comfyui-docker", "POST", "/api/auth/login", json={"username": "admin", "password": c.comfy_password}
    )
    assert login.status_code == 200, login.text
    return {
        "comfyui-docker": f"Bearer {login.json()['token']}",
        "sdcpp-studio": f"Bearer {c.sdcpp_api_key}",
        "onetrainer": f"Bearer {c.listener_token}",
    }


async def use_the_secrets(s: Served, auth: dict[str, str]) -> None:
    """The routes that read a stored secret or check an offered one, right and wrong."""
    c = s.canaries
    # ControlPilot: pulls started with the HF token; copilot calls with no sidecar listening.
    await s.call("controlpilot", "POST", "/api/models/sd-turbo/pull/start")
    await s.call("controlpilot", "POST", "/api/copilot/chat", json={"prompt": "hello"})
    await s.call("controlpilot", "GET", "/api/copilot/status")
    # HomePilot: the key tests ask an unreachable provider, stored and given; a Civitai install.
    for provider in ("huggingface", "civitai"):
        await s.call("homepilot", "POST", "/settings/api-keys/test", json={"provider": provider})
        await s.call(
            "homepilot", "POST", "/settings/api-keys/test", json={"provider": provider, "key": c.wrong}
        )
    await s.call(
        "homepilot",
        "POST",
        "/models/install",
        json={
            "provider": "civitai",
            "model_id": "canary-check",
            "civitai_version_id": "12345",
            "model_type": "image",
            "civitai_api_key": c.offered,
        },
    )
    # Failed logins and wrong keys.
    for body in (
        {"username": "admin", "password": c.wrong},
        {"username": c.wrong, "password": c.wrong},
        {"username": "admin"},
        {"username": 5, "password": c.wrong},
        {"username": "admin", "password": [c.wrong]},
        {"username": "admin", "password": {"value": c.wrong}},
    ):
        await s.call("comfyui-docker", "POST", "/api/auth/login", json=body)
    await s.call("comfyui-docker", "POST", "/api/auth/login", content=f'{{"password": "{c.wrong}"'.encode())
    await s.call("comfyui-docker", "GET", "/api/auth/verify", headers={"Authorization": f"Bearer {c.wrong}"})
    await s.call(
        "comfyui-docker", "GET", "/api/auth/verify", headers={"Authorization": auth["comfyui-docker"]}
    )
    for name in ("sdcpp-studio", "onetrainer"):
        await s.call(name, "GET", "/api/health", headers={"Authorization": f"Bearer {c.wrong}"})
        await s.call(name, "GET", "/api/config", headers={"X-API-Key": c.wrong})
        await s.call(name, "GET", "/api/queue", params={"api_key": c.wrong, "token": c.wrong})
    # Credentials in a failing request's body: wrong types and unknown providers.
    await s.call("controlpilot", "POST", "/api/hf-token", json={"token": [c.offered]})
    await s.call("controlpilot", "POST", "/api/hf-token", json={"token": {"value": c.offered}})
    await s.call("controlpilot", "POST", "/api/copilot/token", json={"token": [c.offered]})
    await s.call("controlpilot", "POST", "/api/copilot/token", json={"token": 1, "password": c.offered})
    for body in (
        {"provider": "x", "key": c.offered},
        {"provider": "huggingface", "key": [c.offered]},
        {"provider": "huggingface", "key": {"k": c.offered}},
        {"provider": 1, "key": c.offered},
        {"provider": "openai", "key": c.offered},
    ):
        await s.call("homepilot", "POST", "/settings/api-keys", json=body)
        await s.call("homepilot", "POST", "/settings/api-keys/test", json=body)
    await s.call(
        "homepilot", "POST", "/settings/api-keys", json={"provider": "huggingface", "key": "bad\nkey"}
    )


async def every_get_route(s: Served, auth: dict[str, str]) -> int:
    """Every GET route of every profile app (its OpenAPI paths), with canaries offered in the query
    and a header under names a credential goes by, and the profile's own credential when it asks one."""
    c = s.canaries
    count = 0
    for name, app in s.gateway.apps.items():
        for template, operations in app.openapi()["paths"].items():
            if "get" not in operations:
                continue
            headers = {"X-Session-Token": c.offered, "Cookie": f"session={c.offered}"}
            if name in auth:
                headers["Authorization"] = auth[name]
            params = {"token": c.offered, "api_key": c.offered, "password": c.offered}
            await s.call(name, "GET", fill(template), params=params, headers=headers)
            count += 1
    return count


async def every_other_route(s: Served, auth: dict[str, str]) -> int:
    """Every non-GET route of every profile app with a JSON body whose credential-named fields hold a
    canary (the body is wrong for nearly every route: its error must not echo them)."""
    c = s.canaries
    count = 0
    body = {"token": c.offered, "password": c.offered, "api_key": c.offered, "key": c.offered}
    for name, app in s.gateway.apps.items():
        for template, operations in app.openapi()["paths"].items():
            for method in operations:
                if method in ("get", "head", "options"):
                    continue
                headers = {"Authorization": auth[name]} if name in auth else {}
                # sd.cpp Studio's generation routes take any object: a bad width keeps them from waiting.
                sent = {**body, "width": 1} if name == "sdcpp-studio" else body
                await s.call(name, method.upper(), fill(template), json=sent, headers=headers)
                count += 1
    return count


async def namespace_objects(kube: KubeClient, namespace: str) -> list[JsonObject]:
    """Every ConfigMap and custom resource of the namespace (Secrets excluded: their place)."""
    found: list[JsonObject] = []
    for resource in (CONFIGMAPS, *CUSTOM_RESOURCES):
        listed = await kube.request("GET", resource.path(namespace))
        found += listed.get("items") or []
    return found


async def test_no_canary_leaves_a_secret(
    served: Served, records: Records, kube: KubeClient, store: CrStore, namespace: str
) -> None:
    s = served
    auth = await set_the_secrets(s, store)
    # The Secrets hold them: the test set what it meant to.
    stored = json.dumps((await kube.request("GET", SECRETS.path(namespace)))["items"])
    c = s.canaries
    for value in (c.hf_token, c.copilot_token, c.homepilot_hf_key, c.homepilot_civitai_key):
        assert b64(value) in stored
    await use_the_secrets(s, auth)
    routes = await every_get_route(s, auth)
    assert routes > 90
    assert await every_other_route(s, auth) > 50
    for path in ("/metrics", "/healthz"):  # the combined listener's own routes
        answer = await s.http.get(path)
        s.answers.append((f"GET {path}", answer))

    leaks = []
    for call, answer in s.answers:
        text = answer.text + json.dumps(list(answer.headers.multi_items()))
        if found := s.canaries.in_text(text):
            leaks.append(f"answer {call} ({answer.status_code}): {found}: {text[:300]}")
    logged = list(records.texts())
    assert any(name == "kubepilot_gateway.access" for name, _ in logged)  # the access log ran
    issued = auth["comfyui-docker"].removeprefix("Bearer ")  # the login's token: a credential too
    for name, text in logged:
        if found := s.canaries.in_text(text):
            leaks.append(f"log {name}: {found}: {text[:300]}")
        if issued in text:
            leaks.append(f"log {name}: the issued login token: {text[:300]}")
    objects = await namespace_objects(kube, namespace)
    refs = {json.dumps(o["spec"].get("credentialsSecretRef")) for o in objects if o["kind"] == "ModelPull"}
    # The pulls that use a stored token were made, referring to its Secret.
    assert {json.dumps({"name": "hf-token", "key": "HF_TOKEN"})} <= refs
    assert {json.dumps({"name": "homepilot-provider-keys", "key": "civitai"})} <= refs
    for obj in objects:
        if found := s.canaries.in_text(json.dumps(obj)):
            leaks.append(f"object {obj['kind']}/{obj['metadata']['name']}: {found}")
    assert not leaks, "\n".join(leaks)


async def test_validation_errors_never_echo_a_credential(served: Served) -> None:
    """The leaks this test found, each pinned: a validation error echoed the credential it refused
    (ComfyUI-Docker's login, HomePilot's API keys) or a credential-named field of a wrong body
    (ControlPilot); the error still says what was wrong, and other inputs are still echoed."""
    s, secret = served, served.canaries.offered
    login = await s.call(
        "comfyui-docker", "POST", "/api/auth/login", json={"username": "a", "password": [secret]}
    )
    error = login.json()["error"]["details"]["errors"][0]
    assert (login.status_code, error["loc"], error["input"]) == (400, ["body", "password"], "***")
    unparsed = await s.call("comfyui-docker", "POST", "/api/auth/login", content=f'{{"password": "{secret}"')
    assert unparsed.status_code == 400 and unparsed.json()["error"]["details"]["errors"][0]["input"] == "***"
    wrong_name = await s.call(
        "comfyui-docker", "POST", "/api/auth/login", json={"username": 5, "password": secret}
    )
    assert wrong_name.json()["error"]["details"]["errors"][0]["input"] == 5  # not a credential: echoed

    for route in ("/settings/api-keys", "/settings/api-keys/test"):
        keyed = await s.call(
            "homepilot", "POST", route, json={"provider": "huggingface", "key": {"k": secret}}
        )
        assert keyed.status_code == 422
        assert [(e["loc"], e["input"]) for e in keyed.json()["detail"]] == [(["body", "key"], "***")]

    body = {"token": secret, "password": secret, "enabled": "maybe", "note": "kept"}
    wrong = await s.call("controlpilot", "POST", "/api/services/comfy/settings/autostart", json=body)
    assert wrong.status_code == 422, wrong.text
    assert secret not in wrong.text
    missing = await s.call("controlpilot", "POST", "/api/copilot/chat", json={"token": secret, "cwd": "/x"})
    assert missing.json()["detail"][0]["input"] == {"token": "***", "cwd": "/x"}
