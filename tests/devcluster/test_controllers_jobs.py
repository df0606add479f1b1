"""The Job controller with real pods: completions, failures, deadlines, suspension, indexes and TTL."""

from __future__ import annotations

from typing import Any

import pytest
from _dc2_helpers import Clients, DevCluster, condition, kubectl, python_container, wait_until
from kubernetes import watch


@pytest.fixture
def kube(devcluster: DevCluster) -> Clients:
    return Clients(devcluster)


def _job(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [python_container("main", script)]}
            },
            **spec,
        },
    }


def _read(kube: Clients, namespace: str, name: str) -> dict[str, Any] | None:
    job: dict[str, Any] | None = kube.read(kube.batch.read_namespaced_job, name, namespace)
    return job


def _finished(kube: Clients, namespace: str, name: str, kind: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = _read(kube, namespace, name)
        return job if condition(job, kind).get("status") == "True" else None

    return wait_until(
        done,
        timeout=30,
        what=f"job {name} {kind}",
    )


def test_job_runs_completions_in_parallel_and_kubectl_wait_sees_it_complete(
    devcluster: DevCluster, kube: Clients, namespace: str
) -> None:
    kube.batch.create_namespaced_job(namespace, _job("twice", "print('done')", completions=3, parallelism=2))
    waited = kubectl(
        devcluster, "-n", namespace, "wait", "--for=condition=complete", "job/twice", "--timeout=30s"
    )
    assert waited.returncode == 0, waited.stderr
    job = _read(kube, namespace, "twice") or {}
    assert job["status"]["succeeded"] == 3 and job["status"]["active"] == 0
    assert job["status"]["completionTime"] and job["status"]["startTime"]
    pods = kube.pods(namespace, "job-name=twice")
    assert len(pods) == 3
    reasons = kube.event_reasons(namespace, "twice")
    assert reasons.count("SuccessfulCreate") == 3 and reasons.count("Completed") == 1
    uid = job["metadata"]["uid"]
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert (
            labels["batch.kubernetes.io/controller-uid"] == uid
            and labels["batch.kubernetes.io/job-name"] == "twice"
        )
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
            "Job",
            uid,
            True,
            True,
        )


def test_failing_job_stops_at_the_backoff_limit(kube: Clients, namespace: str) -> None:
    kube.batch.create_namespaced_job(namespace, _job("doomed", "raise SystemExit(2)", backoffLimit=1))
    job = _finished(kube, namespace, "doomed", "Failed")
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    assert len(kube.pods(namespace, "job-name=doomed")) == 2


def test_active_deadline_fails_the_job_and_kills_its_pods(kube: Clients, namespace: str) -> None:
    kube.batch.create_namespaced_job(
        namespace, _job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=2)
    )
    job = _finished(kube, namespace, "slow", "Failed")
    assert condition(job, "Failed")["reason"] == "DeadlineExceeded"
    wait_until(
        lambda: all(p["metadata"].get("deletionTimestamp") for p in kube.pods(namespace, "job-name=slow")),
        what="the job's pods to go away",
    )


def test_suspend_deletes_pods_and_resume_completes(kube: Clients, namespace: str) -> None:
    kube.batch.create_namespaced_job(namespace, _job("paused", "import time; time.sleep(1)", suspend=True))
    job = wait_until(
        lambda: (
            (j := _read(kube, namespace, "paused"))
            and condition(j, "Suspended").get("status") == "True"
            and j
        ),
        what="Suspended=True",
    )
    assert condition(job, "Suspended")["reason"] == "JobSuspended"
    assert kube.pods(namespace, "job-name=paused") == []
    kube.batch.patch_namespaced_job("paused", namespace, {"spec": {"suspend": False}})
    job = _finished(kube, namespace, "paused", "Complete")
    assert condition(job, "Suspended")["status"] == "False"


def test_indexed_job_gives_each_pod_its_index(kube: Clients, namespace: str) -> None:
    script = (
        "import os\n"
        "message = os.environ['JOB_COMPLETION_INDEX'] + ':' + os.environ['HOSTNAME']\n"
        "open('/dev/termination-log', 'w').write(message)"
    )
    kube.batch.create_namespaced_job(
        namespace, _job("idx", script, completions=3, parallelism=3, completionMode="Indexed")
    )
    job = _finished(kube, namespace, "idx", "Complete")
    assert job["status"]["completedIndexes"] == "0-2"
    messages = set()
    for pod in kube.pods(namespace, "job-name=idx"):
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        assert message == f"{index}:idx-{index}"
        messages.add(message)
    assert messages == {"0:idx-0", "1:idx-1", "2:idx-2"}


def test_finished_job_is_deleted_after_its_ttl(kube: Clients, namespace: str) -> None:
    # Watching from before the create sees every transition, so a one-second TTL cannot delete the
    # Job between two polls (it did on a loaded machine) and hide that it completed first.
    start = kube.batch.list_namespaced_job(namespace).metadata.resource_version
    kube.batch.create_namespaced_job(namespace, _job("brief", "pass", ttlSecondsAfterFinished=1))
    seen: list[tuple[str, str | None]] = []
    stream = watch.Watch().stream(
        kube.batch.list_namespaced_job, namespace, resource_version=start, timeout_seconds=45
    )
    for event in stream:
        seen.append((event["type"], condition(event["raw_object"], "Complete").get("status")))
        if event["type"] == "DELETED":
            break
    assert seen[-1][0] == "DELETED", f"the job was not deleted: {seen}"
    assert ("MODIFIED", "True") in seen[:-1], f"the job was deleted without completing: {seen}"
    wait_until(
        lambda: kube.pods(namespace, "job-name=brief") == [], timeout=15, what="its pods to be collected"
    )
