"""Unit tests of the progress intake (aiohttp app) through aiohttp's in-process test client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kubepilot_api.common import now
from kubepilot_api.modelpull import ModelPull
from kubepilot_api.workers.progress import (
    MAX_REPORT_BYTES,
    ActionAck,
    DownloadReport,
    IntakeReply,
    TrainingReport,
    WorkState,
    report_path,
)
from kubepilot_operator import tokens
from kubepilot_operator.cache import ObjectCache
from kubepilot_operator.intake import Intake
from kubepilot_operator.metrics import Metrics
from kubepilot_operator.reports import ReportStore
from kubepilot_operator.workqueue import WorkKey

KEY = b"k" * 32
UID = "5e5e5e5e-aaaa-4bbb-8ccc-dddddddddddd"
PATH = report_path("ns", "modelpulls", "pull")
WORK_KEY = WorkKey("modelpulls", "ns", "pull")


@dataclass
class Harness:
    client: TestClient[Any, Any]
    reports: ReportStore
    metrics: Metrics
    enqueued: list[tuple[WorkKey, float, bool]] = field(default_factory=list)
    leader: bool = True

    async def post(self, body: bytes | str, token: str | None = None, path: str = PATH) -> Any:
        auth = tokens.derive(KEY, UID) if token is None else token
        headers = {"Authorization": f"Bearer {auth}"} if auth else {}
        return await self.client.post(path, data=body, headers=headers)


def pull_body() -> dict[str, Any]:
    cr = ModelPull(
        spec={
            "source": {"type": "URL", "urls": [{"url": "https://x/a.bin", "path": "a.bin"}]},
            "destination": {"modelType": "other"},
        }
    ).to_dict()
    cr["metadata"] = {
        "name": "pull",
        "namespace": "ns",
        "uid": UID,
        "annotations": {
            "kubepilot.io/action-pause": "p1",
            "kubepilot.io/action-pause-params": '{"reason": "night"}',
        },
    }
    cr["status"] = {
        "actions": {
            "pause": {"requestedNonce": "p1", "state": "Pending"},
            "resume": {"requestedNonce": "r0", "state": "Done"},
        }
    }
    return cr


def download_report(sequence: int = 1, *, final: bool = False, acks: list[ActionAck] | None = None) -> str:
    report = DownloadReport(
        sequence=sequence,
        time=now(),
        state=WorkState.SUCCEEDED if final else WorkState.RUNNING,
        final=final,
        acks=acks or [],
    )
    return report.model_dump_json()


@pytest.fixture
async def intake() -> AsyncIterator[Harness]:
    cache = ObjectCache()
    cache.upsert("modelpulls", pull_body())
    reports, metrics = ReportStore(), Metrics()
    holder: dict[str, Harness] = {}

    def enqueue(key: WorkKey, interval: float, final: bool) -> None:
        holder["h"].enqueued.append((key, interval, final))

    app = Intake(
        cache=cache,
        reports=reports,
        metrics=metrics,
        key=KEY,
        interval=0.5,
        enqueue=enqueue,
        is_leader=lambda: holder["h"].leader,
    )
    async with TestClient(TestServer(app.app)) as client:
        holder["h"] = Harness(client, reports, metrics)
        yield holder["h"]


async def test_unknown_plural_is_404(intake: Harness) -> None:
    response = await intake.post(download_report(), path=report_path("ns", "widgets", "pull"))
    assert response.status == 404
    assert "error" in await response.json()


async def test_unknown_object_is_404(intake: Harness) -> None:
    response = await intake.post(download_report(), path=report_path("ns", "modelpulls", "nope"))
    assert response.status == 404


async def test_missing_token_is_401(intake: Harness) -> None:
    response = await intake.post(download_report(), token="")
    assert response.status == 401


async def test_wrong_token_is_401(intake: Harness) -> None:
    response = await intake.post(download_report(), token=tokens.derive(KEY, "another-uid"))
    assert response.status == 401
    response = await intake.post(download_report(), token=tokens.derive(b"x" * 32, UID))
    assert response.status == 401


async def test_wrong_scheme_is_401(intake: Harness) -> None:
    headers = {"Authorization": f"Token {tokens.derive(KEY, UID)}"}
    response = await intake.client.post(PATH, data=download_report(), headers=headers)
    assert response.status == 401


async def test_oversized_body_is_413(intake: Harness) -> None:
    response = await intake.post(b"x" * (MAX_REPORT_BYTES + 1))
    assert response.status == 413
    assert intake.enqueued == []


async def test_oversized_chunked_body_is_413(intake: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * (MAX_REPORT_BYTES // 4)

    headers = {"Authorization": f"Bearer {tokens.derive(KEY, UID)}"}
    response = await intake.client.post(PATH, data=chunks(), headers=headers)
    assert response.status == 413


async def test_invalid_json_is_422(intake: Harness) -> None:
    response = await intake.post(b"{not json")
    assert response.status == 422


async def test_invalid_report_is_422(intake: Harness) -> None:
    response = await intake.post(json.dumps({"kind": "ModelPull", "sequence": -1}))
    assert response.status == 422


async def test_report_of_another_kind_is_422(intake: Harness) -> None:
    body = TrainingReport(sequence=1, time=now(), state=WorkState.RUNNING).model_dump_json()
    response = await intake.post(body)
    assert response.status == 422
    assert "TrainingRun" in (await response.json())["error"]
    assert intake.reports.latest(WORK_KEY) is None


async def test_not_leader_is_503(intake: Harness) -> None:
    intake.leader = False
    response = await intake.post(download_report())
    assert response.status == 503
    assert intake.enqueued == []
    assert intake.reports.latest(WORK_KEY) is None


async def test_accepted_report_replies_with_pending_actions(intake: Harness) -> None:
    response = await intake.post(download_report(3))
    assert response.status == 200
    reply = IntakeReply.model_validate(await response.json())
    assert reply.accepted is True
    assert [(a.name, a.nonce, a.params) for a in reply.pendingActions] == [
        ("pause", "p1", {"reason": "night"})
    ]
    assert intake.enqueued == [(WORK_KEY, 0.5, False)]
    latest = intake.reports.latest(WORK_KEY)
    assert latest is not None
    assert latest.sequence == 3


async def test_acked_action_is_no_longer_pending(intake: Harness) -> None:
    body = download_report(1, acks=[ActionAck(name="pause", nonce="p1")])
    response = await intake.post(body)
    reply = IntakeReply.model_validate(await response.json())
    assert reply.pendingActions == []


async def test_stale_report_is_not_accepted(intake: Harness) -> None:
    await intake.post(download_report(5))
    response = await intake.post(download_report(4))
    assert response.status == 200
    assert (await response.json())["accepted"] is False
    latest = intake.reports.latest(WORK_KEY)
    assert latest is not None
    assert latest.sequence == 5


async def test_final_report_is_enqueued_as_final(intake: Harness) -> None:
    response = await intake.post(download_report(9, final=True))
    assert response.status == 200
    assert intake.enqueued == [(WORK_KEY, 0.5, True)]


async def test_metrics_count_intake_results(intake: Harness) -> None:
    await intake.post(download_report(1))
    await intake.post(download_report(1), token="bad")
    response = await intake.client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert 'kubepilot_intake_reports_total{kind="ModelPull",result="accepted"} 1.0' in text
    assert 'kubepilot_intake_reports_total{kind="ModelPull",result="rejected"} 1.0' in text


async def test_health_reports_leadership_and_cache_size(intake: Harness) -> None:
    response = await intake.client.get("/healthz")
    assert await response.json() == {"ok": True, "leader": True, "cached": 1}
