"""ControlPilot CP-26/27: the Copilot token in a Secret, never echoed or logged, and the roll of the
copilot ServiceInstance after a change. Against the devcluster, in-process; no operator runs, so
the roll is checked on the ServiceInstance (the operator turns its restart nonce into a new pod).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import SECRETS, ClusterCache, CrStore, KubeClient, NotFound, resource_for
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.settings import Settings

SI = resource_for("ServiceInstance")
TOKEN = "ghp_Sup3rSecretTokenValue0123456789"
OTHER = "github_pat_another_0123456789abcdef"


@pytest.fixture
def ctx(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str) -> GatewayContext:
    return GatewayContext(
        settings=Settings(namespace=namespace), client=kube, cache=cache, store=store, bus=cache.bus
    )


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


async def stored(kube: KubeClient, namespace: str) -> dict[str, str]:
    secret = await kube.request("GET", SECRETS.path(namespace, "copilot-token"))
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


async def is_set(http: httpx.AsyncClient) -> bool:
    response = await http.get("/api/copilot/token")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["set"]
    return bool(body["set"])


async def test_no_token_is_not_set(http: httpx.AsyncClient) -> None:
    assert await is_set(http) is False


async def test_setting_and_clearing_the_token(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    response = await http.post("/api/copilot/token", json={"token": f"  {TOKEN}\n"})
    assert (response.status_code, response.json()) == (200, {"status": "ok", "set": True})
    assert TOKEN not in response.text
    assert await stored(kube, namespace) == {"COPILOT_GITHUB_TOKEN": TOKEN}
    assert await is_set(http) is True

    response = await http.post("/api/copilot/token", json={"token": ""})
    assert (response.status_code, response.json()) == (200, {"status": "ok", "set": False})
    assert await stored(kube, namespace) == {}  # the key is gone; the Secret stays for envFrom
    assert await is_set(http) is False


async def test_clearing_when_nothing_is_stored_creates_nothing(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    response = await http.post("/api/copilot/token", json={"token": ""})
    assert response.json() == {"status": "ok", "set": False}
    with pytest.raises(NotFound):
        await kube.request("GET", SECRETS.path(namespace, "copilot-token"))


@pytest.mark.parametrize("body", [{}, {"tok": "x"}, {"token": None}, {"token": 42}, ["token"], "token"])
async def test_a_missing_token_is_422(http: httpx.AsyncClient, body: object) -> None:
    response = await http.post("/api/copilot/token", json=body)
    assert (response.status_code, response.json()) == (422, {"detail": "token is required"})


async def test_no_body_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/copilot/token")
    assert (response.status_code, response.json()) == (422, {"detail": "token is required"})


async def test_a_change_rolls_the_copilot_service_and_keeps_it_stopped(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    copilot = svc.known_service("copilot")
    assert copilot is not None
    await store.create(SI, svc.new_service_instance(copilot, running=False))

    await http.post("/api/copilot/token", json={"token": TOKEN})
    first = await store.get(SI, "copilot")
    nonce = first["metadata"]["annotations"][svc.RESTART_ANNOTATION]
    assert nonce and TOKEN not in str(first)
    assert first["spec"]["envFromSecrets"] == ["copilot-token"]
    assert first["spec"]["running"] is False  # a new token does not start a stopped service

    await http.post("/api/copilot/token", json={"token": TOKEN})  # unchanged: no roll
    assert (await store.get(SI, "copilot"))["metadata"]["annotations"][svc.RESTART_ANNOTATION] == nonce

    await http.post("/api/copilot/token", json={"token": OTHER})
    second = await store.get(SI, "copilot")
    assert second["metadata"]["annotations"][svc.RESTART_ANNOTATION] not in ("", nonce)
    assert second["spec"]["envFromSecrets"] == ["copilot-token"]  # not added twice


async def test_the_token_is_never_logged(http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for logger in ("httpx", "httpcore", "kubepilot_gateway"):
        caplog.set_level(logging.DEBUG, logger=logger)  # restored after the test
    await http.post("/api/copilot/token", json={"token": TOKEN})
    await http.get("/api/copilot/token")
    await http.post("/api/copilot/token", json={"token": OTHER})
    await http.post("/api/copilot/token", json={"token": ""})
    assert caplog.records, "DEBUG logging was captured"
    encoded = [base64.b64encode(secret.encode()).decode() for secret in (TOKEN, OTHER)]
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in (TOKEN, OTHER, *encoded):
            assert secret not in text, record.name


async def test_an_api_server_failure_is_a_500(http: httpx.AsyncClient, devcluster: DevCluster) -> None:
    devcluster.inject_fault("500", count=1, verb="get", resource="secrets")
    response = await http.get("/api/copilot/token")
    assert response.status_code == 500 and isinstance(response.json()["detail"], str)


async def test_a_copilot_service_started_after_the_token_was_set_gets_its_secret(
    http: httpx.AsyncClient, ctx: GatewayContext
) -> None:
    assert (await http.post("/api/services/copilot/start")).status_code == 200
    first = ctx.cache.get(SI, "copilot", ctx.settings.namespace) or {}
    assert "envFromSecrets" not in first.get("spec", {}), "no Secret yet: nothing that would block the pod"
    await ctx.store.delete(SI, "copilot")

    assert (await http.post("/api/copilot/token", json={"token": TOKEN})).status_code == 200
    assert (await http.post("/api/services/copilot/start")).status_code == 200
    created = ctx.cache.get(SI, "copilot", ctx.settings.namespace) or {}
    assert created["spec"]["envFromSecrets"] == ["copilot-token"]
