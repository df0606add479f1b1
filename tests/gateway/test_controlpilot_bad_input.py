"""No bad input gets a 500 from any ControlPilot route.

Every HTTP route the profile serves is called with hostile path values and bodies (malformed
JSON, the wrong JSON types, traversal strings, oversized and odd text); each answer must be a
client error or a success, never a 500 (a 500 in ControlPilot means its own failure, and the
devcluster here is healthy). The routes are read from the app itself, so a route added later is
covered without touching this test.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import HOSTILE_JSON_BODIES

PATH_VALUES = ["..", "../../etc/passwd", "%2e%2e%2fetc", "x" * 300, "ünï cødé", "a;b|c", "-", "0"]
BODIES: list[dict[str, Any]] = [
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"json": ["a", "list"]},
    {"json": "a string"},
    {"json": {"name": 5, "token": ["x"], "enabled": "yes", "value": "soon", "unit": 7}},
    {"json": {"dataset_name": "../../etc", "toml_path": "/etc/passwd", "profile": "nope"}},
    {"json": {"name": "../../../etc", "cwd": "/workspace/../etc", "prompt": ""}},
    {"content": b"\x00\xff\xfe", "headers": {"Content-Type": "application/octet-stream"}},
    {"files": {"file": ("../../evil.zip", b"not a zip", "application/zip")}},
    *HOSTILE_JSON_BODIES,
]
QUERIES = [{"name": "../../etc", "lines": "-5", "limit": "lots", "max_seconds": "-1", "path": "/etc/passwd"}]
SKIPPED = {"/api/models/{name}/pull"}
"""The blocking pull waits for a download to end; unknown names are covered by pull/start."""


@pytest.fixture
def app(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, tmp_path: Path) -> FastAPI:
    for volume in ("models", "datasets", "outputs"):
        (tmp_path / volume).mkdir()
    volumes = Volumes(
        models=str(tmp_path / "models"),
        datasets=str(tmp_path / "datasets"),
        outputs=str(tmp_path / "outputs"),
    )
    # No node agent answers here (an unused port): telemetry must still answer.
    settings = Settings(
        namespace=namespace,
        operatorNamespace=namespace,
        volumes=volumes,
        profileSettings={
            "controlpilot": {
                "system": {"nodeAgentUrls": ["http://127.0.0.1:9"], "docsRoot": str(tmp_path)},
                "models": {"removalTimeoutSeconds": 2},
            }
        },
    )
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    return create_app(ctx)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp", timeout=30) as session:
        yield session


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route, from the app's own OpenAPI document."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        if path not in SKIPPED:
            found += [(method.upper(), path) for method in sorted(operations)]
    return found


def documented_proxy_failure(template: str, response: httpx.Response) -> bool:
    """ControlPilot answers a failed Comfy proxy call 500 ``{"error": "Proxy error: ..."}`` (seed):
    that is the upstream's failure (no ComfyUI here), not a reaction to the input."""
    if template.startswith("/api/copilot/"):  # a valid request meets the absent sidecar: its 503
        return (
            response.status_code == 503 and response.json().get("detail") == "copilot sidecar not reachable"
        )
    return template.startswith("/proxy/comfy/") and response.json().get("error", "").startswith("Proxy error")


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value.replace("/", "%2F") if ":path" not in path else value, path)


async def test_every_route_answers_bad_input_without_a_500(app: FastAPI, http: httpx.AsyncClient) -> None:
    failures = []
    calls = 0
    for method, template in routes(app):
        values = PATH_VALUES if "{" in template else [""]
        for value in values:
            path = fill(template, value)
            variants: list[dict[str, Any]] = [{}] if method in ("GET", "DELETE") else BODIES
            for variant in variants:
                for query in [{}, *QUERIES]:
                    response = await http.request(method, path, params=query, **variant)
                    calls += 1
                    if response.status_code >= 500 and not documented_proxy_failure(template, response):
                        failures.append(
                            f"{method} {path} {variant} {query}: {response.status_code} {response.text[:200]}"
                        )
    assert calls > 300, "the routes were read from the app"
    assert not failures, "\n".join(failures[:20])
