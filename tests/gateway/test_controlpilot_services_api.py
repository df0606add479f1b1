"""ControlPilot's Service Management API (CP-01 … CP-07) against the devcluster, in-process.

No operator runs here: these tests check the translation between ControlPilot's requests and
ServiceInstances (what is created and patched, and how a status reads back), not that a
service then starts. Where a test needs a status the operator would write (a phase, a version,
the serving pod), it writes it through the status subresource itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kubepilot_api.constants import LABEL_PROFILE
from kubepilot_devcluster.testing import DevCluster
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.kube import PODS, ClusterCache, CrStore, KubeClient, KubeError, resource_for
from kubepilot_gateway.profiles.controlpilot import NO_CACHE_HEADERS, PROFILE, create_app
from kubepilot_gateway.profiles.controlpilot import services as svc
from kubepilot_gateway.profiles.controlpilot.podlogs import read_pod_log
from kubepilot_gateway.settings import Settings

JsonObject = dict[str, Any]
SI = resource_for("ServiceInstance")


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


def by_name(items: list[JsonObject]) -> dict[str, JsonObject]:
    return {item["name"]: item for item in items}


async def services(http: httpx.AsyncClient) -> dict[str, JsonObject]:
    response = await http.get("/api/services")
    assert response.status_code == 200
    return by_name(response.json())


# -- CP-01 -----------------------------------------------------------------------------------------


async def test_every_known_service_is_listed_stopped_when_it_has_no_service_instance(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/api/services")
    assert response.status_code == 200
    items = response.json()
    assert isinstance(items, list)  # a bare array, as ControlPilot answers
    assert [item["name"] for item in items] == list(svc.SERVICE_NAMES)
    for item in items:
        assert list(item) == ["name", "display", "state", "state_raw", "running", "autostart"]
        if item["name"] == "controlpilot":
            assert (item["state"], item["running"], item["autostart"]) == ("RUNNING", True, True)
        else:
            assert (item["state"], item["state_raw"], item["running"]) == ("STOPPED", "STOPPED", False)
    assert by_name(items)["comfy"]["display"] == "Comfy UI"


async def test_the_list_is_read_from_the_cache_not_listed_per_request(
    http: httpx.AsyncClient, devcluster: DevCluster
) -> None:
    devcluster.inject_fault("500", count=100, verb="list", resource="serviceinstances")
    devcluster.inject_fault("500", count=100, verb="get", resource="serviceinstances")
    assert (await http.get("/api/services")).status_code == 200
    assert (await http.get("/api/services/versions")).status_code == 200


# -- CP-03 -----------------------------------------------------------------------------------------


async def test_start_creates_the_service_instance_and_the_list_shows_it_at_once(
    http: httpx.AsyncClient, store: CrStore, cache: ClusterCache
) -> None:
    response = await http.post("/api/services/comfy/start")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    # Read-your-writes: the cache holds it before the watch could have delivered it.
    assert cache.get(SI, "comfy") is not None
    listed = await services(http)
    assert listed["comfy"]["state"] == "STARTING"  # no operator: it never becomes Running here
    assert listed["comfy"]["running"] is False and listed["comfy"]["autostart"] is True

    created = await store.get(SI, "comfy")
    assert created["spec"]["serviceType"] == "comfyui"
    assert created["spec"]["running"] is True
    assert created["metadata"]["labels"][LABEL_PROFILE] == "controlpilot"

    for name, service_type in [("kohya", "kohya-ui"), ("diffpipe", "tensorboard"), ("copilot", "copilot")]:
        assert (await http.post(f"/api/services/{name}/start")).status_code == 200
        assert (await store.get(SI, name))["spec"]["serviceType"] == service_type


async def test_stop_and_start_patch_spec_running_of_the_same_object(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    await http.post("/api/services/jupyter/start")
    uid = (await store.get(SI, "jupyter"))["metadata"]["uid"]

    response = await http.post("/api/services/jupyter/stop")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    stopped = await store.get(SI, "jupyter")
    assert stopped["spec"]["running"] is False and stopped["metadata"]["uid"] == uid
    assert (await services(http))["jupyter"]["state"] == "STOPPED"

    assert (await http.post("/api/services/jupyter/start")).json() == {"status": "ok"}
    started = await store.get(SI, "jupyter")
    assert started["spec"]["running"] is True and started["metadata"]["uid"] == uid


async def test_stopping_a_service_that_has_no_object_creates_nothing(
    http: httpx.AsyncClient, cache: ClusterCache
) -> None:
    response = await http.post("/api/services/invoke/stop")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert cache.get(SI, "invoke") is None


async def test_restart_sets_a_new_nonce_each_time(http: httpx.AsyncClient, store: CrStore) -> None:
    await http.post("/api/services/code-server/start")
    await http.post("/api/services/code-server/stop")
    assert (await http.post("/api/services/code-server/restart")).json() == {"status": "ok"}
    first = await store.get(SI, "code-server")
    nonce = first["metadata"]["annotations"][svc.RESTART_ANNOTATION]
    assert nonce and first["spec"]["running"] is True  # restart of a stopped program starts it
    await http.post("/api/services/code-server/restart")
    second = await store.get(SI, "code-server")
    assert second["metadata"]["annotations"][svc.RESTART_ANNOTATION] not in ("", nonce)


async def test_restart_of_a_missing_service_creates_it_running(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    assert (await http.post("/api/services/ai-toolkit/restart")).json() == {"status": "ok"}
    created = await store.get(SI, "ai-toolkit")
    assert (created["spec"]["serviceType"], created["spec"]["running"]) == ("ai-toolkit", True)


async def test_start_of_a_failed_service_tries_it_again(http: httpx.AsyncClient, store: CrStore) -> None:
    await http.post("/api/services/comfy/start")
    await store.patch_status(
        SI,
        "comfy",
        {
            "phase": "Error",
            "conditions": [
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "CrashLoopBackOff",
                    "message": "main: CrashLoopBackOff",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        },
    )
    assert (await services(http))["comfy"]["state"] == "BACKOFF"
    await http.post("/api/services/comfy/start")
    assert svc.RESTART_ANNOTATION in (await store.get(SI, "comfy"))["metadata"]["annotations"]


async def test_unknown_service_is_404_before_a_bad_action_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/services/nope/start")
    assert (response.status_code, response.json()) == (404, {"detail": "Unknown service"})
    response = await http.post("/api/services/nope/explode")
    assert (response.status_code, response.json()) == (404, {"detail": "Unknown service"})
    response = await http.post("/api/services/comfy/explode")
    assert (response.status_code, response.json()) == (400, {"detail": "Bad action"})


async def test_controlpilot_itself_starts_but_cannot_be_stopped(
    http: httpx.AsyncClient, cache: ClusterCache
) -> None:
    assert (await http.post("/api/services/controlpilot/start")).json() == {"status": "ok"}
    for action in ("stop", "restart"):
        response = await http.post(f"/api/services/controlpilot/{action}")
        assert response.status_code == 400 and "gateway itself" in response.json()["detail"]
    assert cache.get(SI, "controlpilot") is None


async def test_an_api_server_failure_is_a_500_with_its_message(
    http: httpx.AsyncClient, devcluster: DevCluster
) -> None:
    await http.post("/api/services/comfy/start")
    devcluster.inject_fault("500", count=1, verb="patch", resource="serviceinstances")
    response = await http.post("/api/services/comfy/stop")
    assert response.status_code == 500 and "injected failure" in response.json()["detail"]


# -- CP-06 -----------------------------------------------------------------------------------------


async def test_autostart_patches_spec_autostart(http: httpx.AsyncClient, store: CrStore) -> None:
    await http.post("/api/services/comfy/start")
    response = await http.post("/api/services/comfy/settings/autostart", json={"enabled": False})
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ok", "name": "comfy", "autostart": False},
    )
    obj = await store.get(SI, "comfy")
    assert obj["spec"]["autostart"] is False and obj["spec"]["running"] is True
    assert (await services(http))["comfy"]["autostart"] is False


async def test_autostart_of_a_missing_service_creates_it_stopped(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    response = await http.post("/api/services/kohya/settings/autostart", json={"enabled": True})
    assert response.json() == {"status": "ok", "name": "kohya", "autostart": True}
    obj = await store.get(SI, "kohya")
    assert obj["spec"]["running"] is False and obj["spec"]["autostart"] is True
    assert (await services(http))["kohya"]["state"] == "STOPPED"


@pytest.mark.parametrize("body", [{}, {"enabled": "yes"}, {"enabled": 1}, {"enabled": None}, None])
async def test_autostart_needs_a_boolean(http: httpx.AsyncClient, body: JsonObject | None) -> None:
    response = await http.post("/api/services/comfy/settings/autostart", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, list) and {"loc", "msg", "type"} <= set(detail[0])


async def test_autostart_of_an_unknown_service_is_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/services/nope/settings/autostart", json={"enabled": True})
    assert (response.status_code, response.json()) == (404, {"detail": "Unknown service"})


# -- CP-02, CP-04, CP-05 ---------------------------------------------------------------------------


async def test_versions_render_status_version(http: httpx.AsyncClient, store: CrStore) -> None:
    await http.post("/api/services/comfy/start")
    await store.patch_status(
        SI, "comfy", {"version": {"installed": "v0.3.9", "latest": "v0.3.10", "updateAvailable": True}}
    )
    response = await http.get("/api/services/versions")
    assert response.status_code == 200
    items = by_name(response.json())
    assert [item["name"] for item in response.json()] == list(svc.SERVICE_NAMES)
    assert items["comfy"] == {
        "name": "comfy",
        "display": "Comfy UI",
        "source": "git",
        "update_supported": True,
        "installed": "v0.3.9",
        "latest": "v0.3.10",
        "update_available": True,
        "detail": None,
    }
    assert items["kohya"]["detail"] == "Not installed"
    assert items["jupyter"]["update_supported"] is False
    assert items["jupyter"]["detail"] == "Managed by image build"


async def test_update_start_sets_spec_version_and_status_follows_the_service(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    idle = await http.get("/api/services/comfy/update/status")
    assert idle.json() == {"name": "comfy", "state": "idle"}

    await http.post("/api/services/comfy/start")
    await store.patch_status(
        SI, "comfy", {"phase": "Running", "version": {"installed": "v1", "latest": "v2"}}
    )
    response = await http.post("/api/services/comfy/update/start", json={})
    assert response.status_code == 200
    job = response.json()
    assert (job["state"], job["target_version"], job["installed_before"]) == ("running", "v2", "v1")
    assert (await store.get(SI, "comfy"))["spec"]["version"] == "v2"

    # While it runs, starting again answers the same job.
    again = (await http.post("/api/services/comfy/update/start", json={"target_version": "v3"})).json()
    assert again["target_version"] == "v2" and again["started_at"] == job["started_at"]
    assert (await http.get("/api/services/comfy/update/status")).json()["state"] == "running"

    await store.patch_status(SI, "comfy", {"version": {"installed": "v2"}})
    done = (await http.get("/api/services/comfy/update/status")).json()
    assert (done["state"], done["installed_after"]) == ("done", "v2")


async def test_update_start_with_a_body_target_or_without_a_body(
    http: httpx.AsyncClient, store: CrStore
) -> None:
    response = await http.post("/api/services/invoke/update/start", json={"target_version": "5.0.1"})
    assert response.status_code == 200 and response.json()["target_version"] == "5.0.1"
    created = await store.get(SI, "invoke")  # created stopped, at that version
    assert created["spec"]["version"] == "5.0.1" and created["spec"]["running"] is False

    response = await http.post("/api/services/kohya/update/start")  # no body, no latest known
    assert response.status_code == 400 and "target_version" in response.json()["detail"]


async def test_update_errors(http: httpx.AsyncClient) -> None:
    response = await http.post("/api/services/jupyter/update/start", json={"target_version": "x"})
    assert (response.status_code, response.json()) == (
        400,
        {"detail": "Updates are not supported for this service"},
    )
    response = await http.post("/api/services/nope/update/start")
    assert (response.status_code, response.json()) == (404, {"detail": "Unknown service"})
    response = await http.get("/api/services/nope/update/status")
    assert (response.status_code, response.json()) == (404, {"detail": "Unknown service"})
    response = await http.post("/api/services/comfy/update/start", json={"target_version": 3})
    assert response.status_code == 422


# -- CP-07 -----------------------------------------------------------------------------------------


def log_pod(name: str) -> JsonObject:
    script = "print('one'); print('two'); print('three', flush=True); import time; time.sleep(30)"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": "kubepilot/test:1", "command": ["python", "-c", script]}
            ],
        },
    }


async def wait_for_log(kube: KubeClient, namespace: str, pod: str, text: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if text in await read_pod_log(kube, namespace, pod, tail_lines=10):
                return
        except KubeError:
            pass  # not scheduled or not started yet
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {pod} never logged {text!r}")
        await asyncio.sleep(0.1)


async def test_log_is_the_tail_of_the_current_pods_log(
    http: httpx.AsyncClient, store: CrStore, kube: KubeClient, namespace: str
) -> None:
    await kube.request("POST", PODS.path(namespace), body=log_pod("comfy-pod"))
    await http.post("/api/services/comfy/start")
    await store.patch_status(SI, "comfy", {"phase": "Running", "podName": "comfy-pod"})
    await wait_for_log(kube, namespace, "comfy-pod", "three")

    response = await http.get("/api/services/comfy/log", params={"lines": 2})
    assert response.status_code == 200
    assert response.json() == {"log": "two\nthree\n", "path": f"k8s://{namespace}/comfy-pod/main"}
    everything = (await http.get("/api/services/comfy/log")).json()  # lines defaults to 100
    assert everything["log"] == "one\ntwo\nthree\n"
    assert response.headers["Cache-Control"] == NO_CACHE_HEADERS["Cache-Control"]


async def test_log_without_a_pod_is_404_log_not_found(http: httpx.AsyncClient, store: CrStore) -> None:
    for name in ("comfy", "controlpilot"):  # no object at all; the gateway itself
        response = await http.get(f"/api/services/{name}/log")
        assert (response.status_code, response.json()) == (404, {"detail": "Log not found"})
    await http.post("/api/services/comfy/start")  # an object, but no pod yet
    response = await http.get("/api/services/comfy/log")
    assert (response.status_code, response.json()) == (404, {"detail": "Log not found"})
    await store.patch_status(SI, "comfy", {"phase": "Running", "podName": "gone-pod"})  # a pod that is gone
    response = await http.get("/api/services/comfy/log")
    assert (response.status_code, response.json()) == (404, {"detail": "Log not found"})


async def test_log_errors(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/services/nope/log")
    assert (response.status_code, response.json()) == (404, {"detail": "Unknown service"})
    response = await http.get("/api/services/comfy/log", params={"lines": "many"})
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


# -- the app as ControlPilot configures it ---------------------------------------------------------


async def test_no_cache_headers_on_every_api_answer_errors_included(http: httpx.AsyncClient) -> None:
    for response in (
        await http.get("/api/services"),
        await http.post("/api/services/nope/start"),
        await http.post("/api/services/comfy/settings/autostart", json={}),
        await http.get("/api/not-a-route"),
    ):
        for header, value in NO_CACHE_HEADERS.items():
            assert response.headers.get(header) == value, (response.request.url, header)
    assert "Cloudflare-Cache-Status" not in (await http.get("/openapi.json")).headers


async def test_no_swagger_or_redoc_but_the_openapi_document(http: httpx.AsyncClient) -> None:
    assert (await http.get("/docs")).status_code == 404
    assert (await http.get("/redoc")).status_code == 404
    document = await http.get("/openapi.json")
    assert document.status_code == 200 and document.json()["info"]["title"] == "LoRA Pilot Portal"


async def test_cors_allows_every_origin_with_credentials(http: httpx.AsyncClient) -> None:
    origin = "http://ui.example"
    preflight = await http.options(
        "/api/services/comfy/start",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin  # "*" with credentials echoes
    assert preflight.headers["access-control-allow-credentials"] == "true"
    simple = await http.get("/api/services", headers={"Origin": origin})
    assert simple.headers["access-control-allow-origin"] in (origin, "*")


async def test_no_cache_headers_follow_the_app_when_mounted_under_a_prefix(ctx: GatewayContext) -> None:
    from fastapi import FastAPI

    outer = FastAPI()
    outer.mount("/p/controlpilot", PROFILE.create_app(ctx))
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://combined.test") as session:
        response = await session.get("/p/controlpilot/api/services")
        assert response.status_code == 200 and len(response.json()) == len(svc.SERVICE_NAMES)
        assert response.headers["CF-Cache-Status"] == "BYPASS"
        assert "CF-Cache-Status" not in (await session.get("/p/controlpilot/openapi.json")).headers


def test_the_profile() -> None:
    assert (PROFILE.name, PROFILE.native_port) == ("controlpilot", 7878)
    assert PROFILE.cors is not None and PROFILE.cors.allowOrigins == ["*"] and PROFILE.cors.allowCredentials
