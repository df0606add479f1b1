"""Unit tests of child names, labels and condition bookkeeping (no cluster)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from kubepilot_api.constants import KUEUE_QUEUE_LABEL, LABEL_COMPONENT, LABEL_KIND, LABEL_NAME
from kubepilot_operator.conditions import ConditionSet, timestamp
from kubepilot_operator.naming import MAX_NAME, child_name, label_value, labels, selector

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
OLD = "2020-01-01T00:00:00Z"


def test_child_name_of_short_owner_is_owner_dash_suffix() -> None:
    assert child_name("sdxl", "download") == "sdxl-download"


def test_child_name_of_long_owner_fits_a_dns_label() -> None:
    name = child_name("a" * 250, "download", "uid-1")
    assert len(name) <= MAX_NAME
    assert DNS_LABEL.match(name)
    assert name.endswith("-download")


def test_child_name_is_deterministic() -> None:
    owner = "very-long-owner-name-" * 5
    assert child_name(owner, "train", "u") == child_name(owner, "train", "u")


def test_child_name_keeps_long_owners_with_a_shared_prefix_apart() -> None:
    prefix = "x" * 70
    first = child_name(prefix + "-one", "svc")
    second = child_name(prefix + "-two", "svc")
    assert first != second
    assert len(first) <= MAX_NAME
    assert len(second) <= MAX_NAME


def test_child_name_cut_does_not_leave_a_dash_before_the_hash() -> None:
    # The cut point falls on a dash: it must not produce "--".
    owner = "a" * 50 + "-" + "b" * 30
    name = child_name(owner, "kp")
    assert "--" not in name
    assert DNS_LABEL.match(name)


def test_child_name_at_exactly_63_characters_is_not_cut() -> None:
    owner = "o" * (MAX_NAME - len("-svc"))
    assert child_name(owner, "svc") == owner + "-svc"


def test_label_value_of_short_name_is_unchanged() -> None:
    assert label_value("my-pull") == "my-pull"


def test_label_value_of_long_name_is_valid_and_unique() -> None:
    first = label_value("n" * 80 + "a")
    second = label_value("n" * 80 + "b")
    assert first != second
    for value in (first, second):
        assert len(value) <= MAX_NAME
        assert LABEL_VALUE.match(value)


def test_labels_carry_the_standard_and_kind_labels() -> None:
    result = labels("TrainingRun", "lora-1", "trainer")
    assert result["app.kubernetes.io/name"] == "kubepilot"
    assert result["app.kubernetes.io/instance"] == "lora-1"
    assert result["app.kubernetes.io/component"] == "trainer"
    assert result["app.kubernetes.io/managed-by"] == "kubepilot-operator"
    assert result["kubepilot.io/trainingrun"] == "lora-1"
    assert result[LABEL_KIND] == "TrainingRun"
    assert result[LABEL_NAME] == "lora-1"
    assert result[LABEL_COMPONENT] == "trainer"
    assert KUEUE_QUEUE_LABEL not in result


def test_labels_copy_the_kueue_queue_label_from_the_owner_only() -> None:
    result = labels("ModelPull", "p", "downloader", {KUEUE_QUEUE_LABEL: "gpu-queue", "team": "a"})
    assert result[KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert "team" not in result


def test_labels_of_a_long_name_use_the_label_value() -> None:
    name = "z" * 100
    result = labels("ModelPull", name, "downloader")
    assert result[LABEL_NAME] == label_value(name)
    assert len(result["kubepilot.io/modelpull"]) <= MAX_NAME


def test_selector_is_a_subset_of_labels() -> None:
    full = labels("ServiceInstance", "comfy", "service")
    chosen = selector("ServiceInstance", "comfy", "service")
    assert chosen.items() <= full.items()


def _existing(status: str = "True") -> list[dict[str, object]]:
    return [
        {
            "type": "Ready",
            "status": status,
            "reason": "Old",
            "message": "old",
            "lastTransitionTime": OLD,
            "observedGeneration": 1,
        }
    ]


def test_condition_keeps_transition_time_when_status_unchanged() -> None:
    conditions = ConditionSet(_existing("True"), generation=2)
    conditions.set("Ready", True, "NewReason", "new message")
    ready = conditions.get("Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == OLD
    assert ready["reason"] == "NewReason"
    assert ready["message"] == "new message"


def test_condition_transition_time_changes_when_status_flips() -> None:
    conditions = ConditionSet(_existing("True"), generation=2)
    conditions.set("Ready", False, "Broken")
    ready = conditions.get("Ready")
    assert ready is not None
    assert ready["status"] == "False"
    assert ready["lastTransitionTime"] != OLD
    stamped = datetime.strptime(ready["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - stamped) < timedelta(minutes=1)


def test_condition_stamps_observed_generation() -> None:
    conditions = ConditionSet(_existing(), generation=7)
    conditions.set("Ready", True, "Same")
    conditions.set("Progressing", None, "Waiting")
    assert conditions.get("Ready")["observedGeneration"] == 7  # type: ignore[index]
    progressing = conditions.get("Progressing")
    assert progressing is not None
    assert progressing["observedGeneration"] == 7
    assert progressing["status"] == "Unknown"


def test_conditions_not_set_in_a_pass_are_kept() -> None:
    conditions = ConditionSet(_existing(), generation=3)
    conditions.set("Failed", False, "NotFailed")
    assert conditions.get("Ready") is not None
    assert conditions.is_true("Ready")
    assert not conditions.is_true("Failed")


def test_conditions_to_list_is_sorted_by_type() -> None:
    conditions = ConditionSet(_existing(), generation=1)
    conditions.set("WorkloadReady", True, "PodRunning")
    conditions.set("Failed", False, "NotFailed")
    conditions.set("Progressing", True, "Running")
    assert [c["type"] for c in conditions.to_list()] == ["Failed", "Progressing", "Ready", "WorkloadReady"]


def test_condition_remove_drops_it() -> None:
    conditions = ConditionSet(_existing(), generation=1)
    conditions.remove("Ready")
    assert conditions.to_list() == []


def test_condition_message_is_capped() -> None:
    conditions = ConditionSet(None, generation=1)
    conditions.set("Ready", True, "Long", "m" * 40000)
    assert len(conditions.get("Ready")["message"]) == 32768  # type: ignore[index]


def test_timestamp_format_is_rfc3339_utc_seconds() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert timestamp(moment) == "2024-05-06T07:08:09Z"
