"""No bad input gets a 500 from the OneTrainer profile (issue 11: "never a 500 for bad input").

Two layers, against the devcluster (no operator: nothing here needs a run to train):

- every HTTP route the app serves, read from the app itself (so a route added later is covered),
  is called with hostile path values, query values and bodies; each answer must be a client error
  or a success in the seed's ``{"detail": "<text>"}`` shape, never a 500;
- the inputs that once reached a 500 or would reach the API server as JSON it cannot read get
  their exact 400 (or, for ``/api/config/validate``, a 200 ``valid: false``): a ``config_path``
  longer than a file name may be (``ENAMETOOLONG``), NaN / Infinity in a config (Python's JSON
  reads them, the API server's does not), an infinite ``epochs`` on the built-in trainer's
  validation, a custom sample seed beyond 64 bits.

Both backends are covered: the built-in trainer's translation runs only on ``builtin``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import ClusterCache, CrStore, KubeClient, resource_for
from kubepilot_gateway.profiles.onetrainer import create_app
from kubepilot_gateway.settings import Settings, Volumes
from tests.gateway.helpers import HOSTILE_JSON_BODIES

JsonObject = dict[str, Any]
TR = resource_for("TrainingRun")
PATH_VALUES = ["..", "%2e%2e%2fetc", "x" * 300, "ünï cødé", "a;b|c", "-", "0", "%00"]
QUERY = {"count": "lots"}
BODIES: list[dict[str, Any]] = [
    {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    {"json": ["a", "list"]},
    {"json": "a string"},
    {"json": {"config_path": 5, "config_dict": "x", "prompt": 5, "seed": "x", "concepts": [1]}},
    {"json": {"config_path": "../../etc/passwd"}},
    {"json": {"config_path": "x" * 5000}},
    {"json": {"config_dict": {"base_model_name": "/etc", "concepts": "x", "epochs": "many"}}},
    {"content": b"\x00\xff\xfe", "headers": {"Content-Type": "application/octet-stream"}},
    *HOSTILE_JSON_BODIES,
]


class Volumes3:
    def __init__(self, root: Path) -> None:
        self.models, self.datasets, self.outputs = root / "models", root / "datasets", root / "outputs"
        for folder in (self.models, self.datasets, self.outputs):
            folder.mkdir()
        (self.models / "sd15").mkdir()
        (self.datasets / "cats").mkdir()
        (self.datasets / "cats" / "a.png").write_bytes(b"png")

    def config(self, **extra: Any) -> JsonObject:
        return {"base_model_name": "sd15", "concepts": [{"path": str(self.datasets / "cats")}], **extra}


@pytest.fixture
def vols(tmp_path: Path) -> Volumes3:
    return Volumes3(tmp_path)


def app_for(
    ctx_parts: tuple[KubeClient, ClusterCache, CrStore, str], vols: Volumes3, backend: str
) -> FastAPI:
    kube, cache, store, namespace = ctx_parts
    settings = Settings(
        namespace=namespace,
        volumes=Volumes(models=str(vols.models), datasets=str(vols.datasets), outputs=str(vols.outputs)),
        profileSettings={
            "onetrainer": {
                "training": {"backend": backend, "gpuCount": 0},
                "system": {"nodeAgentUrls": ["http://127.0.0.1:9"], "nodeAgentTimeoutSeconds": 0.5},
            }
        },
    )
    ctx = GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)
    return create_app(ctx)


@pytest.fixture(params=["builtin", "onetrainer"])
async def client(
    request: pytest.FixtureRequest,
    kube: KubeClient,
    cache: ClusterCache,
    store: CrStore,
    namespace: str,
    vols: Volumes3,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = app_for((kube, cache, store, namespace), vols, str(request.param))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://onetrainer.test") as http:
        yield app, http


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route, from the app's own OpenAPI document."""
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in sorted(operations)
    ]


def fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def client_error_or_success(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert list(body) == ["detail"] and isinstance(body["detail"], str), f"{what}: {body}"


async def test_no_route_answers_a_500_to_hostile_input(client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = client
    served = routes(app)
    calls = 0
    assert ("POST", "/api/training/start") in served and ("GET", "/api/samples/{sample_id}") in served
    for method, path in served:
        values = PATH_VALUES if "{" in path else [""]
        for value in values:
            url = fill(path, value)
            calls += 1
            if method == "GET":
                client_error_or_success(await http.get(url, params=QUERY), f"GET {url}")
                continue
            for body in BODIES:
                response = await http.request("POST", url, **body)
                client_error_or_success(response, f"POST {url} {str(body)[:80]}")
    assert len(served) == 20 and calls > 30, "the seed's 20 REST routes, read from the app"


async def test_inputs_that_once_failed_get_their_exact_answer(
    kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str, vols: Volumes3
) -> None:
    builtin = httpx.ASGITransport(app=app_for((kube, cache, store, namespace), vols, "builtin"))
    async with httpx.AsyncClient(transport=builtin, base_url="http://onetrainer.test") as http:
        long_path = await http.post("/api/training/start", json={"config_path": "a" * 5000})
        assert (long_path.status_code, long_path.json()) == (
            400,
            {"detail": "config_path is too long to be a path"},
        )
        long_name = await http.post(
            "/api/training/start", json={"config_dict": vols.config(base_model_name="m" * 300)}
        )
        assert long_name.status_code == 400 and "base_model_name" in long_name.json()["detail"]

        # Python's JSON reads NaN and Infinity; the API server's does not: refused before any create.
        text = json.dumps(vols.config())[:-1] + ', "learning_rate": NaN, "ema": {"decay": Infinity}}'
        body = b'{"config_dict": ' + text.encode() + b"}"
        refused = await http.post(
            "/api/training/start", content=body, headers={"Content-Type": "application/json"}
        )
        nan_detail = "The config holds numbers JSON cannot carry (NaN, Infinity): learning_rate, ema.decay"
        assert (refused.status_code, refused.json()) == (400, {"detail": nan_detail})
        (vols.outputs / "nan.json").write_text(text)
        from_file = await http.post(
            "/api/training/start", json={"config_path": str(vols.outputs / "nan.json")}
        )
        assert from_file.status_code == 400 and "NaN, Infinity" in from_file.json()["detail"]
        assert cache.list(TR, namespace) == [], "nothing refused was created"

        # The built-in trainer's translation once raised OverflowError on an infinite epochs.
        validated = await http.post(
            "/api/config/validate",
            content=json.dumps(vols.config())[:-1].encode() + b', "epochs": Infinity}',
            headers={"Content-Type": "application/json"},
        )
        assert validated.status_code == 200
        result = validated.json()
        assert result["valid"] is False and "epochs must be a finite number" in result["errors"]

        started = await http.post("/api/training/start", json={"config_dict": vols.config()})
        assert started.status_code == 200, started.text
        huge_seed = await http.post("/api/samples/custom", json={"prompt": "a cat", "seed": 2**70})
        assert huge_seed.status_code == 400 and huge_seed.json()["detail"].startswith("body.seed")
        negative = await http.post("/api/samples/custom", json={"prompt": "a cat", "seed": -1})
        assert negative.status_code == 200, "OneTrainer takes any 64-bit seed; -1 is its 'random'"
