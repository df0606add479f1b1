"""Unit tests of imperative actions (reconcile/actions.py) and the ReportStore (reports.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kubepilot_api.common import now
from kubepilot_api.workers.progress import ActionAck, DownloadReport, WorkState
from kubepilot_operator.reconcile import actions
from kubepilot_operator.reports import ReportStore
from kubepilot_operator.workqueue import WorkKey

Obj = dict[str, Any]
KEY = WorkKey("modelpulls", "ns", "pull")
OLD = "2020-01-01T00:00:00Z"


def cr_with(annotations: dict[str, str], status_actions: Obj | None = None) -> Obj:
    return {
        "metadata": {"name": "x", "annotations": annotations},
        "status": {"actions": status_actions or {}},
    }


def report(sequence: int, *, final: bool = False, acks: list[ActionAck] | None = None) -> DownloadReport:
    return DownloadReport(
        sequence=sequence,
        time=now(),
        state=WorkState.SUCCEEDED if final else WorkState.RUNNING,
        final=final,
        acks=acks or [],
    )


def test_requested_reads_action_annotations_only() -> None:
    cr = cr_with(
        {
            "kubepilot.io/action-save": "n1",
            "kubepilot.io/action-sample": "n2",
            "kubepilot.io/action-sample-params": '{"prompt": "a cat"}',
            "kubepilot.io/action-backup": "",
            "kubepilot.io/other": "x",
            "example.com/action-save": "y",
        }
    )
    assert actions.requested(cr) == {"save": "n1", "sample": "n2"}


def test_requested_without_annotations_is_empty() -> None:
    assert actions.requested({"metadata": {}}) == {}


def test_update_records_a_new_nonce_as_pending() -> None:
    result = actions.update(cr_with({"kubepilot.io/action-save": "n1"}), {}, [])
    assert result["save"]["requestedNonce"] == "n1"
    assert result["save"]["state"] == "Pending"
    assert result["save"]["requestedAt"].endswith("Z")


def test_update_keeps_an_unchanged_nonce() -> None:
    current = {"save": {"requestedNonce": "n1", "state": "Done", "requestedAt": OLD, "observedNonce": "n1"}}
    result = actions.update(cr_with({"kubepilot.io/action-save": "n1"}), current, [])
    assert result["save"] == current["save"]


def test_update_a_new_nonce_requests_the_action_again() -> None:
    current = {"save": {"requestedNonce": "n1", "state": "Done", "requestedAt": OLD}}
    result = actions.update(cr_with({"kubepilot.io/action-save": "n2"}), current, [])
    assert result["save"]["requestedNonce"] == "n2"
    assert result["save"]["state"] == "Pending"
    assert result["save"]["requestedAt"] != OLD


def test_update_does_not_mutate_the_stored_actions() -> None:
    current = {"save": {"requestedNonce": "n1", "state": "Pending", "requestedAt": OLD}}
    actions.update(cr_with({"kubepilot.io/action-save": "n1"}), current, [ActionAck(name="save", nonce="n1")])
    assert current["save"]["state"] == "Pending"


def test_update_applies_a_matching_ack_as_done() -> None:
    current = {"save": {"requestedNonce": "n1", "state": "Pending", "requestedAt": OLD}}
    ack = ActionAck(name="save", nonce="n1", message="saved step 100")
    result = actions.update(cr_with({"kubepilot.io/action-save": "n1"}), current, [ack])
    assert result["save"]["state"] == "Done"
    assert result["save"]["observedNonce"] == "n1"
    assert result["save"]["message"] == "saved step 100"
    assert result["save"]["completedAt"].endswith("Z")


def test_update_applies_a_failed_ack_with_its_message() -> None:
    current = {"sample": {"requestedNonce": "n1", "state": "Pending", "requestedAt": OLD}}
    ack = ActionAck(name="sample", nonce="n1", ok=False, message="no prompts")
    result = actions.update(cr_with({"kubepilot.io/action-sample": "n1"}), current, [ack])
    assert result["sample"]["state"] == "Failed"
    assert result["sample"]["message"] == "no prompts"


def test_update_ignores_an_ack_with_a_stale_nonce() -> None:
    current = {"save": {"requestedNonce": "n2", "state": "Pending", "requestedAt": OLD}}
    result = actions.update(
        cr_with({"kubepilot.io/action-save": "n2"}), current, [ActionAck(name="save", nonce="n1")]
    )
    assert result["save"]["state"] == "Pending"
    assert "observedNonce" not in result["save"]


def test_update_ignores_an_ack_for_an_unknown_action() -> None:
    result = actions.update(cr_with({}), {}, [ActionAck(name="save", nonce="n1")])
    assert result == {}


def test_pending_excludes_acked_and_finished_actions() -> None:
    cr = cr_with(
        {},
        {
            "save": {"requestedNonce": "n1", "state": "Pending"},
            "backup": {"requestedNonce": "b1", "state": "Pending"},
            "sample": {"requestedNonce": "s1", "state": "Done"},
        },
    )
    result = actions.pending(cr, acked={("backup", "b1")})
    assert [(a.name, a.nonce) for a in result] == [("save", "n1")]


def test_pending_carries_params_from_the_params_annotation() -> None:
    cr = cr_with(
        {
            "kubepilot.io/action-sample": "s1",
            "kubepilot.io/action-sample-params": '{"prompt": "a cat", "n": 2}',
        },
        {"sample": {"requestedNonce": "s1", "state": "Pending"}},
    )
    (action,) = actions.pending(cr, set())
    assert action.params == {"prompt": "a cat", "n": 2}


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", ""])
def test_pending_params_that_are_not_an_object_are_empty(raw: str) -> None:
    cr = cr_with(
        {"kubepilot.io/action-sample-params": raw}, {"sample": {"requestedNonce": "s1", "state": "Pending"}}
    )
    (action,) = actions.pending(cr, set())
    assert action.params == {}


def test_complete_marks_a_pending_operator_action() -> None:
    state = {"restart": {"requestedNonce": "r1", "state": "Pending"}}
    actions.complete(state, "restart", True, "rolled")
    assert state["restart"]["state"] == "Done"
    assert state["restart"]["observedNonce"] == "r1"
    done = {"restart": {"requestedNonce": "r1", "state": "Done", "message": "first"}}
    actions.complete(done, "restart", False, "second")
    assert done["restart"]["message"] == "first"


def test_store_accepts_newer_reports() -> None:
    store = ReportStore()
    assert store.put(KEY, report(1))
    assert store.put(KEY, report(2))
    latest = store.latest(KEY)
    assert latest is not None
    assert latest.sequence == 2


def test_store_drops_stale_reports_but_keeps_their_acks() -> None:
    store = ReportStore()
    store.put(KEY, report(5))
    ack = ActionAck(name="save", nonce="n1")
    assert store.put(KEY, report(3, acks=[ack])) is False
    latest = store.latest(KEY)
    assert latest is not None
    assert latest.sequence == 5
    assert store.acks(KEY) == [ack]
    assert store.acked_nonces(KEY) == {("save", "n1")}


def test_store_always_accepts_a_final_report() -> None:
    store = ReportStore()
    store.put(KEY, report(9))
    assert store.put(KEY, report(2, final=True))
    latest = store.latest(KEY)
    assert latest is not None
    assert latest.final


def test_store_accumulates_acks_until_recorded() -> None:
    store = ReportStore()
    first = ActionAck(name="save", nonce="n1")
    second = ActionAck(name="sample", nonce="s1", ok=False)
    store.put(KEY, report(1, acks=[first]))
    store.put(KEY, report(2, acks=[second]))
    assert store.acks(KEY) == [first, second]
    store.recorded(KEY, [first])
    assert store.acks(KEY) == [second]


def test_store_keys_are_independent_and_forget_drops_one() -> None:
    store = ReportStore()
    other = WorkKey("modelpulls", "ns", "other")
    store.put(KEY, report(4))
    assert store.put(other, report(1))
    store.forget(KEY)
    assert store.latest(KEY) is None
    assert store.acks(KEY) == []
    assert store.latest(other) is not None


def test_store_accepts_a_new_run_after_a_final_report() -> None:
    store = ReportStore()
    store.put(KEY, report(40, final=True))
    assert store.put(KEY, report(1))
