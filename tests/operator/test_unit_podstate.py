"""Unit tests of reconcile/podstate.py on synthetic pod and Job bodies."""

from __future__ import annotations

from typing import Any

from kubepilot_api.common import ErrorInfo, now
from kubepilot_api.modelpull import DownloadProgress
from kubepilot_api.workers.progress import DownloadReport, WorkState, termination_message
from kubepilot_operator.reconcile.podstate import job_view, termination_report, view

Obj = dict[str, Any]


def pod(
    name: str = "p-1",
    *,
    phase: str = "Pending",
    created: str = "2024-01-01T00:00:00Z",
    containers: list[Obj] | None = None,
    conditions: list[Obj] | None = None,
    **status: Any,
) -> Obj:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {
            "phase": phase,
            "podIP": "10.1.2.3",
            "containerStatuses": containers or [],
            "conditions": conditions or [],
            **status,
        },
    }


def container(name: str = "worker", **fields: Any) -> Obj:
    return {"name": name, "ready": False, "restartCount": 0, "state": {}, **fields}


def final_report_message() -> str:
    report = DownloadReport(
        sequence=12,
        time=now(),
        state=WorkState.FAILED,
        final=True,
        message="download failed",
        error=ErrorInfo(code="DOWNLOAD_FAILED", message="404 from the hub"),
        progress=DownloadProgress(bytesDone=10, bytesTotal=100, lastUpdatedTime=now()),
    )
    return termination_message(report)


def test_no_pods_is_pending_and_not_failing() -> None:
    result = view([])
    assert result.reason == "Pending"
    assert result.message == "no pod yet"
    assert not result.failing
    assert not result.running


def test_unschedulable_pod_is_failing() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    result = view([pod(conditions=[scheduled])])
    assert result.reason == "Unschedulable"
    assert result.failing
    assert "Insufficient nvidia.com/gpu" in result.message


def test_scheduled_pending_pod_is_not_failing() -> None:
    result = view([pod(conditions=[{"type": "PodScheduled", "status": "True"}])])
    assert result.reason == "Pending"
    assert not result.failing
    assert result.pod_name == "p-1"


def test_image_never_pull_is_image_pull_back_off() -> None:
    waiting = {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}}
    result = view([pod(containers=[container(state=waiting)])])
    assert result.reason == "ImagePullBackOff"
    assert result.failing
    assert "ErrImageNeverPull" in result.message
    assert "worker" in result.message


def test_image_pull_back_off_is_failing() -> None:
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    result = view([pod(containers=[container(state=waiting)])])
    assert result.reason == "ImagePullBackOff"
    assert result.failing


def test_crash_loop_reports_the_last_exit_code() -> None:
    status = container(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        lastState={"terminated": {"exitCode": 3, "reason": "Error"}},
        restartCount=4,
    )
    result = view([pod(phase="Running", containers=[status])])
    assert result.reason == "CrashLoopBackOff"
    assert result.failing
    assert "exit code 3" in result.message
    assert result.last_exit_code == 3
    assert result.restart_count == 4


def test_crash_loop_after_oom_is_oom_killed() -> None:
    status = container(
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    )
    result = view([pod(phase="Running", containers=[status])])
    assert result.reason == "OOMKilled"
    assert result.failing


def test_terminated_oom_killed_is_oom_killed() -> None:
    status = container(state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    result = view([pod(phase="Failed", containers=[status])])
    assert result.reason == "OOMKilled"
    assert result.failing
    assert "out of memory" in result.message
    assert result.last_exit_code == 137


def test_evicted_pod_is_evicted() -> None:
    result = view([pod(phase="Failed", reason="Evicted", message="The node was low on resource: memory.")])
    assert result.reason == "Evicted"
    assert result.failing
    assert "low on resource" in result.message


def test_create_container_config_error_is_a_container_error() -> None:
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "x" not found'}}
    result = view([pod(containers=[container(state=waiting)])])
    assert result.reason == "ContainerError"
    assert result.failing


def test_running_and_ready_pod() -> None:
    ready = container(ready=True, state={"running": {"startedAt": "2024-01-01T00:00:05Z"}})
    result = view([pod(phase="Running", containers=[ready])])
    assert result.reason == "PodRunning"
    assert result.running
    assert result.ready
    assert not result.failing
    assert result.pod_ip == "10.1.2.3"


def test_running_pod_with_an_unready_container_is_not_ready() -> None:
    ready = container("a", ready=True, state={"running": {}})
    unready = container("b", ready=False, state={"running": {}})
    result = view([pod(phase="Running", containers=[ready, unready])])
    assert result.running
    assert not result.ready


def test_restart_counts_are_summed_over_containers() -> None:
    first = container("a", ready=True, restartCount=2, state={"running": {}})
    second = container("b", ready=True, restartCount=5, state={"running": {}})
    assert view([pod(phase="Running", containers=[first, second])]).restart_count == 7


def test_newest_live_pod_is_viewed() -> None:
    old = pod("old", phase="Failed", created="2024-01-01T00:00:00Z")
    new = pod("new", phase="Running", created="2024-01-02T00:00:00Z", containers=[container(ready=True)])
    deleting = pod("gone", created="2024-01-03T00:00:00Z")
    deleting["metadata"]["deletionTimestamp"] = "2024-01-03T00:00:01Z"
    assert view([old, deleting, new]).pod_name == "new"


def test_succeeded_pod_is_completed() -> None:
    done = container(state={"terminated": {"exitCode": 0, "reason": "Completed"}})
    result = view([pod(phase="Succeeded", containers=[done])])
    assert result.reason == "Completed"
    assert not result.failing
    assert result.last_exit_code == 0


def test_termination_report_parses_a_final_report() -> None:
    message = final_report_message()
    status = container(state={"terminated": {"exitCode": 1, "reason": "Error", "message": message}})
    report = termination_report([pod(phase="Failed", containers=[status])])
    assert isinstance(report, DownloadReport)
    assert report.final
    assert report.sequence == 12
    assert report.error is not None
    assert report.error.code == "DOWNLOAD_FAILED"
    assert view([pod(phase="Failed", containers=[status])]).final_report == report


def test_termination_report_reads_the_last_state_too() -> None:
    status = container(
        state={"running": {}},
        lastState={"terminated": {"exitCode": 1, "message": final_report_message()}},
    )
    assert termination_report([pod(phase="Running", containers=[status])]) is not None


def test_termination_report_ignores_plain_and_broken_logs() -> None:
    for message in ("Traceback (most recent call last):\n  boom", "{not json at all", '{"kind": "Nope"}'):
        status = container(state={"terminated": {"exitCode": 1, "message": message}})
        assert termination_report([pod(phase="Failed", containers=[status])]) is None


def test_termination_report_of_no_pods_is_none() -> None:
    assert termination_report([]) is None


def test_job_view_of_no_job() -> None:
    result = job_view(None)
    assert not result.exists
    assert not result.complete
    assert not result.failed


def test_job_view_complete() -> None:
    result = job_view({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    assert result.exists
    assert result.complete
    assert not result.failed


def test_job_view_failed_by_deadline() -> None:
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}
    result = job_view({"status": {"conditions": [failed]}})
    assert result.failed
    assert result.reason == "DeadlineExceeded"
    assert result.message == "too long"


def test_job_view_failed_by_backoff_limit() -> None:
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    result = job_view({"status": {"conditions": [failed], "active": 0}})
    assert result.failed
    assert result.reason == "BackoffLimitExceeded"


def test_job_view_failed_without_reason_says_job_failed() -> None:
    result = job_view({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})
    assert result.reason == "JobFailed"


def test_job_view_suspended_and_active() -> None:
    result = job_view({"status": {"active": 2, "conditions": [{"type": "Suspended", "status": "True"}]}})
    assert result.suspended
    assert result.active == 2


def test_job_view_ignores_false_conditions() -> None:
    conditions = [
        {"type": "Suspended", "status": "False"},
        {"type": "Failed", "status": "False", "reason": "DeadlineExceeded"},
    ]
    result = job_view({"status": {"conditions": conditions}})
    assert not result.suspended
    assert not result.failed
