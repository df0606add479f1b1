"""ControlPilot's shutdown schedule (CP-43 … CP-45) against the devcluster's ConfigMaps, in-process.

The operator carrying out a due schedule is tested end to end in
``tests/operator/test_service_lifecycle.py``; here the test checks that the gateway writes exactly
the ConfigMap the operator reads (its name, key and time format, parsed with the operator's own
function) and reads back what the operator writes (``executedAt``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import CONFIGMAPS, ClusterCache, CrStore, KubeClient, NotFound
from kubepilot_gateway.profiles.controlpilot import create_app
from kubepilot_gateway.profiles.controlpilot import shutdown as sd
from kubepilot_gateway.settings import Settings
from kubepilot_operator.reconcile.schedule import parse_rfc3339 as operator_parse
from kubepilot_operator.settings import Settings as OperatorSettings

JsonObject = dict[str, Any]


@pytest.fixture
def ctx(kube: KubeClient, cache: ClusterCache, store: CrStore, namespace: str) -> GatewayContext:
    # The test's own namespace stands in for the operator namespace, so tests do not share a schedule.
    settings = Settings(namespace=namespace, operatorNamespace=namespace)
    return GatewayContext(settings=settings, client=kube, cache=cache, store=store, bus=cache.bus)


@pytest.fixture
async def http(ctx: GatewayContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://controlpilot.test") as session:
        yield session


async def schedule_data(kube: KubeClient, namespace: str) -> JsonObject:
    config = await kube.request("GET", CONFIGMAPS.path(namespace, OperatorSettings().scheduleConfigMap))
    return dict(config.get("data") or {})


async def test_scheduling_writes_the_configmap_the_operator_reads(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    before = datetime.now(UTC)
    response = await http.post("/api/shutdown/schedule", json={"value": 30, "unit": "minutes"})
    assert response.status_code == 200
    assert response.json() == {"status": "scheduled", "message": "Shutdown scheduled in 30 minutes"}

    data = await schedule_data(kube, namespace)
    assert set(data) == {sd.SHUTDOWN_AT_KEY}
    due = operator_parse(data["shutdownAt"])
    assert due is not None and due.tzinfo is not None
    expected = before + timedelta(minutes=30)
    assert expected - timedelta(seconds=1) <= due <= expected + timedelta(seconds=5)

    status = (await http.get("/api/shutdown/status")).json()
    assert status["scheduled"] is True
    assert 29 * 60 <= status["time_remaining"] <= 30 * 60
    assert status["shutdown_time"] == due.strftime("%Y-%m-%d %H:%M:%S UTC")


async def test_rescheduling_updates_the_same_configmap_and_keeps_the_operators_record(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    assert (await http.post("/api/shutdown/schedule", json={"value": 2, "unit": "hours"})).status_code == 200
    first = (await schedule_data(kube, namespace))["shutdownAt"]
    # What the operator writes after carrying out an earlier schedule.
    await kube.request(
        "PATCH",
        CONFIGMAPS.path(namespace, "kubepilot-schedule"),
        body={"data": {"executedAt": "2020-01-01T00:00:00Z"}},
        content_type="application/merge-patch+json",
    )
    response = await http.post("/api/shutdown/schedule", json={"value": 1, "unit": "days"})
    assert response.json()["message"] == "Shutdown scheduled in 1 days"
    data = await schedule_data(kube, namespace)
    assert data["executedAt"] == "2020-01-01T00:00:00Z"
    assert data["shutdownAt"] != first
    remaining = (await http.get("/api/shutdown/status")).json()["time_remaining"]
    assert 86400 - 10 <= remaining <= 86400


async def test_cancel_empties_the_time_and_status_reads_not_scheduled(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    await http.post("/api/shutdown/schedule", json={"value": 45, "unit": "seconds"})
    response = await http.post("/api/shutdown/cancel")
    assert response.status_code == 200
    assert response.json() == {"status": "cancelled", "message": "Shutdown cancelled"}
    assert (await schedule_data(kube, namespace))["shutdownAt"] == ""
    assert (await http.get("/api/shutdown/status")).json() == {
        "scheduled": False,
        "time_remaining": None,
        "shutdown_time": None,
    }


async def test_cancel_and_status_without_any_schedule_create_nothing(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    status = await http.get("/api/shutdown/status")
    assert status.status_code == 200 and status.json()["scheduled"] is False
    assert (await http.post("/api/shutdown/cancel")).json()["status"] == "cancelled"
    with pytest.raises(NotFound):
        await schedule_data(kube, namespace)


async def test_a_schedule_the_operator_carried_out_or_that_is_past_is_not_pending(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str
) -> None:
    await http.post("/api/shutdown/schedule", json={"value": 10, "unit": "minutes"})
    wanted = (await schedule_data(kube, namespace))["shutdownAt"]
    path = CONFIGMAPS.path(namespace, "kubepilot-schedule")
    merge = "application/merge-patch+json"
    await kube.request("PATCH", path, body={"data": {"executedAt": wanted}}, content_type=merge)
    assert (await http.get("/api/shutdown/status")).json()["scheduled"] is False

    past = sd.format_rfc3339(datetime.now(UTC) - timedelta(minutes=1))
    await kube.request("PATCH", path, body={"data": {"shutdownAt": past}}, content_type=merge)
    assert (await http.get("/api/shutdown/status")).json()["scheduled"] is False


@pytest.mark.parametrize("unit", ["weeks", "Minutes", "", "min"])
async def test_an_unknown_unit_is_a_400_with_controlpilots_text(
    http: httpx.AsyncClient, kube: KubeClient, namespace: str, unit: str
) -> None:
    response = await http.post("/api/shutdown/schedule", json={"value": 5, "unit": unit})
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid unit. Must be: seconds, minutes, hours, days"}
    with pytest.raises(NotFound):
        await schedule_data(kube, namespace)


@pytest.mark.parametrize(
    "body",
    [
        {"value": "soon", "unit": "minutes"},
        {"value": -1, "unit": "minutes"},
        {"unit": "minutes"},
        {"value": 5},
    ],
)
async def test_a_missing_non_integer_or_negative_value_is_a_422(
    http: httpx.AsyncClient, body: JsonObject
) -> None:
    response = await http.post("/api/shutdown/schedule", json=body)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


async def test_a_schedule_beyond_a_year_is_refused_not_overflowed(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/shutdown/schedule", json={"value": 10**12, "unit": "days"})
    assert response.status_code == 400
    assert response.json() == {"detail": sd.TOO_FAR}


async def test_an_api_server_failure_is_a_500_with_its_message(
    http: httpx.AsyncClient, devcluster: DevCluster
) -> None:
    devcluster.inject_fault("500", count=5, verb="get", resource="configmaps")
    response = await http.get("/api/shutdown/status")
    assert response.status_code == 500
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_the_status_translation_reads_the_operators_time_forms() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    naive = sd.status_body({"shutdownAt": "2026-01-02T03:05:05"}, now)
    assert naive == {"scheduled": True, "time_remaining": 60, "shutdown_time": "2026-01-02 03:05:05 UTC"}
    offset = sd.status_body({"shutdownAt": "2026-01-02T05:14:05+02:00"}, now)
    assert offset == {"scheduled": True, "time_remaining": 600, "shutdown_time": "2026-01-02 03:14:05 UTC"}
    assert sd.status_body({"shutdownAt": "not a time"}, now)["scheduled"] is False
    assert sd.status_body(None, now)["scheduled"] is False
    written = sd.shutdown_at(now, 90)
    assert written == "2026-01-02T03:05:35Z" and operator_parse(written) == now + timedelta(seconds=90)
