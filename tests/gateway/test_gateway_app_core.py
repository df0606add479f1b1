"""The gateway core in process: mounting, metrics, error envelopes and the request guard."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from kubepilot_gateway.app import build_combined_app, build_profile_app
from kubepilot_gateway.app.errors import install_error_envelope, safe_validation_errors
from kubepilot_gateway.app.gateway import Gateway
from kubepilot_gateway.app.jsontext import LONE_SURROGATE, MAX_DEPTH, TOO_DEEP
from kubepilot_gateway.app.runner import CLIENT_FAULTS, ClientFaultsAsWarnings
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import resource_for
from kubepilot_gateway.profiles import Profile
from tests.gateway.demo_profiles import DEMO, ENVELOPED, LEAKY, ctx, http_client

__all__ = ["ctx"]


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` in an exposition, by its sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_combined_app_mounts_each_profile_under_p_and_its_name(ctx: GatewayContext) -> None:
    app = build_combined_app(ctx, [DEMO, ENVELOPED])
    async with http_client(app) as http:
        assert (await http.get("/p/demo/api/items/a")).json() == {"name": "a"}
        assert (await http.get("/p/seeded/api/items/b")).json() == {"name": "b"}
        assert (await http.get("/api/items/a")).status_code == 404
        health = await http.get("/healthz")
    assert health.json() == {"ok": True, "synced": False, "profiles": ["demo", "seeded"]}


async def test_native_app_serves_the_profile_at_its_root_without_healthz_or_metrics(
    ctx: GatewayContext,
) -> None:
    async with http_client(build_profile_app(ctx, DEMO)) as http:
        assert (await http.get("/api/items/a")).json() == {"name": "a"}
        assert (await http.get("/healthz")).status_code == 404
        assert (await http.get("/metrics")).status_code == 404


async def test_request_histogram_is_labelled_with_the_route_template_not_the_raw_path(
    ctx: GatewayContext,
) -> None:
    async with http_client(build_combined_app(ctx, [DEMO])) as http:
        for name in ("alpha-item", "beta-item"):
            await http.get(f"/p/demo/api/items/{name}")
        await http.get("/p/demo/no/such/path")
        await http.post("/p/demo/api/items", json={"name": "x"})
        assert (await http.get("/p/demo/api/v1/things/gamma-thing")).json() == {"thing": "gamma-thing"}
        metrics = await http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    counts = samples(metrics.text, "kubepilot_gateway_request_duration_seconds_count")
    labels = (("method", "GET"), ("profile", "demo"), ("route", "/api/items/{name}"), ("status", "200"))
    assert counts[labels] == 2
    assert counts[(("method", "GET"), ("profile", "demo"), ("route", "<unmatched>"), ("status", "404"))] == 1
    assert counts[(("method", "POST"), ("profile", "demo"), ("route", "/api/items"), ("status", "422"))] == 1
    assert (
        counts[
            (("method", "GET"), ("profile", "demo"), ("route", "/api/v1/things/{thing}"), ("status", "200"))
        ]
        == 1
    )
    assert "alpha-item" not in metrics.text and "gamma-thing" not in metrics.text
    assert "no/such" not in metrics.text


async def test_cache_gauges_are_read_from_the_cache_when_scraped(ctx: GatewayContext) -> None:
    pulls = resource_for("ModelPull")
    async with http_client(build_combined_app(ctx, [DEMO])) as http:
        for name in ("one", "two"):
            ctx.cache.observe_write(
                pulls, {"kind": "ModelPull", "metadata": {"name": name, "namespace": "default"}}
            )
        text = (await http.get("/metrics")).text
    assert samples(text, "kubepilot_gateway_cache_objects")[(("kind", "ModelPull"),)] == 2
    assert samples(text, "kubepilot_gateway_cache_objects")[(("kind", "Pod"),)] == 0
    assert samples(text, "kubepilot_gateway_cache_staleness_seconds") == {(): -1.0}  # never listed
    assert samples(text, "kubepilot_gateway_cache_synced") == {(): 0.0}


async def test_validation_error_keeps_fastapi_shape_when_the_profile_sets_no_envelope(
    ctx: GatewayContext,
) -> None:
    async with http_client(build_profile_app(ctx, DEMO)) as http:
        response = await http.post("/api/items", json={"name": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "count"]


async def test_validation_error_takes_the_profile_envelope_and_status(ctx: GatewayContext) -> None:
    async with http_client(build_profile_app(ctx, ENVELOPED)) as http:
        response = await http.post("/api/items", json={"name": "x", "count": "many"})
        teapot = await http.get("/api/teapot")
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert response.json()["error"].startswith("body.count: ")
    assert (teapot.status_code, teapot.json()) == (418, {"error": "short and stout", "code": 418})


@pytest.mark.parametrize("profile", [DEMO, ENVELOPED], ids=["default", "seeded"])
async def test_exception_in_a_route_is_the_envelope_500_logged_with_its_traceback(
    ctx: GatewayContext, caplog: pytest.LogCaptureFixture, profile: Profile
) -> None:
    gateway = Gateway(ctx, [profile])
    with caplog.at_level(logging.INFO):
        async with http_client(gateway.combined_app()) as http:
            response = await http.get(f"/p/{gateway.profiles[0].name}/api/boom")
            metrics = (await http.get("/metrics")).text
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    expected = (
        {"detail": "Internal Server Error"}
        if profile is DEMO
        else {"error": "Internal Server Error", "code": 500}
    )
    assert response.json() == expected
    assert LEAKY not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert 'route="/api/boom",status="500"' in metrics


@pytest.mark.parametrize(
    ("what", "status", "message"),
    [
        ("conflict", 409, "the object has been modified"),
        ("exists", 409, 'modelpulls "x" already exists'),
        ("invalid", 422, "spec.source.type: Unsupported value"),
        ("down", 503, "The Kubernetes API server is unavailable"),
    ],
)
async def test_kube_errors_map_to_their_http_status_with_the_servers_message(
    ctx: GatewayContext, what: str, status: int, message: str
) -> None:
    async with http_client(build_profile_app(ctx, DEMO)) as http:
        response = await http.get(f"/api/kube/{what}")
    assert (response.status_code, response.json()) == (status, {"detail": message})
    assert LEAKY not in response.text


async def test_kube_not_found_is_a_404_in_the_profile_envelope(ctx: GatewayContext) -> None:
    async with http_client(build_profile_app(ctx, ENVELOPED)) as http:
        response = await http.get("/api/items/missing")
    assert response.status_code == 404
    assert response.json() == {"error": 'modelpulls.kubepilot.io "missing" not found', "code": 404}


async def test_profile_lifespan_runs_once_for_native_and_combined_listeners(ctx: GatewayContext) -> None:
    entered: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        entered.append("up")
        yield {"greeting": "hello"}
        entered.append("down")

    def create_app(_: GatewayContext) -> FastAPI:
        app = FastAPI(lifespan=lifespan)

        @app.get("/greeting")
        async def greeting(request: Request) -> str:
            return str(request.state.greeting)

        return app

    gateway = Gateway(ctx, [Profile("life", 17009, create_app)])
    async with gateway.lifespan():
        async with (
            http_client(gateway.combined_app()) as combined,
            http_client(gateway.profile_app("life")) as native,
        ):
            assert (await combined.get("/p/life/greeting")).json() == "hello"
            assert (await native.get("/greeting")).json() == "hello"
        assert entered == ["up"]
    assert entered == ["up", "down"]


async def test_a_body_that_is_not_utf8_is_a_422_not_a_500() -> None:
    """FastAPI's own encoder cannot decode non-UTF-8 bytes in a validation error's ``input``."""

    class Body(BaseModel):
        enabled: bool

    app = FastAPI()
    install_error_envelope(app)

    @app.post("/x")
    async def handler(body: Body) -> dict[str, bool]:
        return {"enabled": body.enabled}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.post(
            "/x", content=b"\x00\xff\xfe", headers={"Content-Type": "application/octet-stream"}
        )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


class CfgBody(BaseModel):
    """At module level: the routes' annotations are strings (``from __future__``), resolved here."""

    cfg: float = Field(ge=0, le=50)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_a_non_finite_number_in_a_validation_error_is_a_422_not_a_500(number: str) -> None:
    """Python's JSON reads NaN and Infinity; the 422 echoes the input, and JSON cannot hold it."""
    response = await _post_cfg(f'{{"cfg": {number}}}'.encode())
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "cfg"] and error["input"] == str(float(number))


async def _post_cfg(content: bytes) -> httpx.Response:
    app = FastAPI()
    install_error_envelope(app)

    @app.post("/x")
    async def handler(body: CfgBody) -> dict[str, float]:
        return {"cfg": body.cfg}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.post("/x", content=content, headers={"Content-Type": "application/json"})


async def test_a_body_nested_past_the_limit_is_refused_before_the_route() -> None:
    response = await _post_cfg(b'{"cfg": ' + b"[" * 900 + b"]" * 900 + b"}")
    assert (response.status_code, response.json()) == (422, {"detail": TOO_DEEP})
    within = b'{"cfg": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    answer = await _post_cfg(within)  # deep but allowed: the route's own validation answers
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "cfg"]


async def test_a_lone_surrogate_is_refused_before_the_route_and_a_pair_is_text() -> None:
    response = await _post_cfg(b'{"cfg": 1, "note": "\\ud800x"}')
    assert (response.status_code, response.json()) == (422, {"detail": LONE_SURROGATE})
    paired = await _post_cfg(b'{"cfg": 1, "note": "\\ud83d\\ude00"}')  # an emoji, escaped
    assert (paired.status_code, paired.json()) == (200, {"cfg": 1.0})


def test_validation_echoes_survive_what_the_guard_does_not_see() -> None:
    """A lone surrogate or deep nesting may reach a validation error other than through a JSON
    body (a form field, a body over the guard's size): the echo is still text JSON can carry."""
    deep: Any = "leaf"
    for _ in range(900):
        deep = [deep]
    (echo,) = safe_validation_errors([{"loc": ["body"], "input": {"a\udfff": ["x\ud800", deep]}}])
    assert json.dumps(echo, ensure_ascii=False).encode("utf-8")
    assert echo["input"] == {"a\\udfff": ["x\\ud800", echo["input"]["a\\udfff"][1]]}


def test_only_a_clients_bad_frame_becomes_a_warning_in_uvicorns_log() -> None:
    """uvicorn logs a client's non-UTF-8 text frame as an error with a traceback; nothing else of
    its errors is touched."""
    try:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    except UnicodeDecodeError:
        exc_info = sys.exc_info()
    fault = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, next(iter(CLIENT_FAULTS)), None, exc_info
    )
    other = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, exc_info
    )
    quiet = ClientFaultsAsWarnings()
    assert quiet.filter(fault) and quiet.filter(other)
    assert (fault.levelno, fault.levelname, fault.exc_info) == (logging.WARNING, "WARNING", None)
    assert (other.levelno, other.exc_info) == (logging.ERROR, exc_info)
