"""Kubernetes conditions: one per type, lastTransitionTime moves only when status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pkg_operator.conditions import find_condition, format_time, is_true, parse_time, set_condition

T0 = datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


class TestSettingACondition:
    def test_a_new_type_is_appended_with_now_and_the_generation(self) -> None:
        conditions = set_condition([], "Ready", "True", "Validated", "all fixtures passed", 3, T0)
        assert conditions == [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Validated",
                "message": "all fixtures passed",
                "lastTransitionTime": "2030-01-01T12:00:00Z",
                "observedGeneration": 3,
            }
        ]

    def test_the_same_status_keeps_the_transition_time_but_takes_the_new_words(self) -> None:
        first = set_condition([], "Progressing", "True", "Analyzing", "step 1", 1, T0)
        second = set_condition(
            first, "Progressing", "True", "WaitingForCoverage", "step 2", 2, LATER
        )
        assert second[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
        assert second[0]["reason"] == "WaitingForCoverage"
        assert second[0]["message"] == "step 2"
        assert second[0]["observedGeneration"] == 2

    def test_a_status_change_moves_the_transition_time(self) -> None:
        first = set_condition([], "Available", "False", "RolloutInProgress", "", 1, T0)
        second = set_condition(first, "Available", "True", "RolloutComplete", "", 1, LATER)
        assert second[0]["lastTransitionTime"] == "2030-01-01T12:05:00Z"

    def test_other_conditions_are_kept_in_order_and_the_input_is_not_modified(self) -> None:
        start = set_condition([], "A", "True", "Yes", "", 1, T0)
        start = set_condition(start, "B", "False", "No", "", 1, T0)
        snapshot = [dict(c) for c in start]
        updated = set_condition(start, "A", "False", "Changed", "", 2, LATER)
        assert [c["type"] for c in updated] == ["A", "B"]
        assert updated[1] == start[1]
        assert start == snapshot

    def test_a_condition_without_a_transition_time_gets_one(self) -> None:
        broken = [{"type": "Ready", "status": "True"}]
        updated = set_condition(broken, "Ready", "True", "Validated", "", 1, T0)
        assert updated[0]["lastTransitionTime"] == "2030-01-01T12:00:00Z"

    @pytest.mark.parametrize("status", ["true", "Yes", ""])
    def test_status_must_be_true_false_or_unknown(self, status: str) -> None:
        with pytest.raises(ValueError, match="True, False or Unknown"):
            set_condition([], "Ready", status, "Validated", "", 1, T0)  # type: ignore[arg-type]

    @pytest.mark.parametrize("reason", ["", "two words", "snapshot-not-ready", "1Leading"])
    def test_reason_must_be_one_camel_case_word(self, reason: str) -> None:
        with pytest.raises(ValueError, match="CamelCase"):
            set_condition([], "Ready", "True", reason, "", 1, T0)


class TestReadingConditions:
    def test_find_and_is_true(self) -> None:
        conditions = set_condition([], "Ready", "True", "Validated", "", 1, T0)
        conditions = set_condition(conditions, "Active", "False", "NotPromoted", "", 1, T0)
        assert find_condition(conditions, "Active") == conditions[1]
        assert find_condition(conditions, "Missing") is None
        assert is_true(conditions, "Ready")
        assert not is_true(conditions, "Active")
        assert not is_true(conditions, "Missing")


class TestTimestamps:
    def test_utc_with_z_and_the_fraction_only_when_there_is_one(self) -> None:
        assert format_time(T0) == "2030-01-01T12:00:00.250000Z"
        assert format_time(T0, whole_seconds=True) == "2030-01-01T12:00:00Z"
        assert format_time(T0.replace(microsecond=0)) == "2030-01-01T12:00:00Z"

    def test_other_offsets_are_converted_to_utc(self) -> None:
        paris = T0.astimezone(timezone(timedelta(hours=1)))
        assert format_time(paris) == "2030-01-01T12:00:00.250000Z"

    def test_parse_is_the_inverse_of_format(self) -> None:
        assert parse_time(format_time(T0)) == T0
        assert parse_time("2030-01-01T13:00:00+01:00") == T0.replace(microsecond=0)

    def test_naive_times_are_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            format_time(datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="timezone-aware"):
            parse_time("2030-01-01T12:00:00")

    def test_garbage_is_refused_with_the_text(self) -> None:
        with pytest.raises(ValueError, match="not an RFC 3339 timestamp: 'yesterday'"):
            parse_time("yesterday")
