"""Access logs, authentication, CORS and WebSocket counting around a served profile."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from kubepilot_gateway.app import redact_query
from kubepilot_gateway.app.gateway import Gateway
from kubepilot_gateway.app.settings import AuthSettings, CorsSettings, ListenerSettings, ProfileListener
from kubepilot_gateway.context import GatewayContext
from tests.gateway.demo_profiles import DEMO, ENVELOPED, WITH_CORS, ctx, http_client

__all__ = ["ctx"]

TOKEN = "s3cr3t-token-value"
TOKENS_ENV = "KUBEPILOT_TEST_GATEWAY_TOKENS"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "kubepilot_gateway.access"]


def with_auth(**auth: object) -> ListenerSettings:
    return ListenerSettings(auth=AuthSettings(enabled=True, tokensEnv=TOKENS_ENV, **auth))


async def test_access_log_is_one_json_line_with_the_route_and_the_token_redacted(
    ctx: GatewayContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubepilot_gateway.access")
    async with http_client(Gateway(ctx, [DEMO]).combined_app()) as http:
        await http.get("/p/demo/api/items/abc", params={"page": "3", "token": TOKEN, "hf_key": TOKEN})
    [line] = access_lines(caplog)
    assert line["profile"] == "demo"
    assert (line["method"], line["route"], line["status"]) == ("GET", "/api/items/{name}", 200)
    assert line["path"] == "/p/demo/api/items/abc"
    assert line["query"] == "page=3&token=***&hf_key=***"
    assert isinstance(line["duration_ms"], float)
    # The test's own HTTP client (httpx) logs its request URLs at INFO when an earlier test turned that
    # on; the gateway's records are what must never carry the token.
    gateway_records = [r for r in caplog.records if r.name.startswith("kubepilot_gateway")]
    assert gateway_records and all(TOKEN not in record.getMessage() for record in gateway_records)


def test_redaction_keeps_harmless_parameters_and_hides_every_secret_looking_one() -> None:
    assert (
        redact_query(b"a=1&b=&access_token=x&api_key=y&password=z")
        == "a=1&b=&access_token=***&api_key=***&password=***"
    )


async def test_access_log_can_be_turned_off(ctx: GatewayContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kubepilot_gateway.access")
    async with http_client(
        Gateway(ctx, [DEMO], listeners=ListenerSettings(accessLog=False)).combined_app()
    ) as http:
        assert (await http.get("/p/demo/api/items/abc")).status_code == 200
    assert access_lines(caplog) == []


async def test_bearer_auth_rejects_a_missing_or_wrong_token_and_accepts_the_right_one(
    ctx: GatewayContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKENS_ENV, f"other-token, {TOKEN}")
    app = Gateway(ctx, [DEMO], listeners=with_auth()).combined_app()
    async with http_client(app) as http:
        missing = await http.get("/p/demo/api/items/a")
        wrong = await http.get("/p/demo/api/items/a", headers={"Authorization": "Bearer nope"})
        in_query = await http.get("/p/demo/api/items/a", params={"token": TOKEN})
        right = await http.get("/p/demo/api/items/a", headers={"Authorization": f"Bearer {TOKEN}"})
        health = await http.get("/healthz")
    for refused in (missing, wrong, in_query):
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Not authenticated"}
        assert refused.headers["www-authenticate"] == "Bearer"
    assert right.json() == {"name": "a"}
    assert health.status_code == 200


async def test_auth_answers_in_the_profile_envelope_and_leaves_its_open_paths_open(
    ctx: GatewayContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKENS_ENV, TOKEN)
    gateway = Gateway(ctx, [ENVELOPED], listeners=with_auth(apiKeyHeader="X-API-Key", queryParam="token"))
    async with (
        http_client(gateway.combined_app()) as http,
        http_client(gateway.profile_app("seeded")) as native,
    ):
        refused = await http.get("/p/seeded/api/items/a")
        open_mounted = await http.get("/p/seeded/api/teapot")
        open_native = await native.get("/api/teapot")
        by_header = await native.get("/api/items/a", headers={"X-API-Key": TOKEN})
        by_query = await native.get("/api/items/a", params={"token": TOKEN})
    assert (refused.status_code, refused.json()) == (401, {"error": "Not authenticated", "code": 401})
    assert open_mounted.status_code == open_native.status_code == 418
    assert by_header.status_code == by_query.status_code == 200


def test_auth_enabled_without_any_token_refuses_to_start(
    ctx: GatewayContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKENS_ENV, raising=False)
    with pytest.raises(ValueError, match="no token"):
        Gateway(ctx, [DEMO], listeners=with_auth())


async def test_tokens_file_is_reread_when_the_secret_changes(
    ctx: GatewayContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKENS_ENV, raising=False)
    tokens = tmp_path / "tokens"
    tokens.write_text("first-token\n")
    app = Gateway(ctx, [DEMO], listeners=with_auth(tokensFile=str(tokens))).profile_app("demo")
    async with http_client(app) as http:
        assert (
            await http.get("/api/items/a", headers={"Authorization": "Bearer first-token"})
        ).status_code == 200
        tokens.write_text("second-token-rotated\n")
        assert (
            await http.get("/api/items/a", headers={"Authorization": "Bearer first-token"})
        ).status_code == 401
        assert (
            await http.get("/api/items/a", headers={"Authorization": "Bearer second-token-rotated"})
        ).status_code == 200


async def test_cors_headers_follow_the_profile_policy_and_the_settings_override(ctx: GatewayContext) -> None:
    origin = {"Origin": "http://ui.example"}
    override = ListenerSettings(
        profiles={"demo": ProfileListener(cors=CorsSettings(allowOrigins=["http://only.example"]))}
    )
    gateway = Gateway(ctx, [WITH_CORS, DEMO], listeners=override)
    async with http_client(gateway.combined_app()) as http:
        simple = await http.get("/p/corsy/api/items/a", headers=origin)
        preflight = await http.options(
            "/p/corsy/api/items",
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-any",
            },
        )
        overridden = await http.get("/p/demo/api/items/a", headers=origin)
        allowed = await http.get("/p/demo/api/items/a", headers={"Origin": "http://only.example"})
    assert simple.headers["access-control-allow-origin"] == "http://ui.example"
    assert simple.headers["access-control-allow-credentials"] == "true"
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in overridden.headers
    assert allowed.headers["access-control-allow-origin"] == "http://only.example"


async def test_a_profile_without_cors_sends_no_cors_headers(ctx: GatewayContext) -> None:
    async with http_client(Gateway(ctx, [DEMO]).profile_app("demo")) as http:
        response = await http.get("/api/items/a", headers={"Origin": "http://ui.example"})
    assert not any(name.startswith("access-control-") for name in response.headers)


def websocket_clients(client: TestClient) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "kubepilot_gateway_websocket_clients" and sample.labels == {"profile": "demo"}:
                return sample.value
    return 0.0


def test_open_websockets_are_counted_per_profile_until_they_close(ctx: GatewayContext) -> None:
    with TestClient(Gateway(ctx, [DEMO]).combined_app()) as client:
        with (
            client.websocket_connect("/p/demo/api/ws") as first,
            client.websocket_connect("/p/demo/api/ws") as second,
        ):
            first.send_text("hi")
            assert first.receive_text() == "hi"
            second.send_text("there")
            assert second.receive_text() == "there"
            assert websocket_clients(client) == 2
            first.send_text("bye")
        assert websocket_clients(client) == 0
