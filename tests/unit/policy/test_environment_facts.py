"""Environment facts (pure): a fact holds in [valid_from, valid_to), and a request's own
facts and the environment's meet as a union that FACT conditions read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evaluator_sidecar.policy.environment_facts import (
    EnvironmentFacts,
    EnvironmentFactsError,
    with_environment_facts,
)
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.model import PKGSnapshotData

NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NS = 1_000_000_000


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * NS


def fact_set(*facts: dict[str, Any], version: int = 3) -> EnvironmentFacts:
    return EnvironmentFacts.build("prod", version, list(facts))


class TestExpiry:
    def test_a_fact_holds_from_its_start_up_to_but_not_at_its_end(self) -> None:
        facts = fact_set(
            {
                "subject": "guest:Ben",
                "predicate": "hasTemporaryAccess",
                "object": "lounge",
                "valid_from": NOON,
                "valid_to": NOON + timedelta(hours=2),
            }
        )
        assert facts.valid_at(ns(NOON) - 1) == []
        assert [f["object"] for f in facts.valid_at(ns(NOON))] == ["lounge"]
        assert [f["object"] for f in facts.valid_at(ns(NOON + timedelta(hours=2)) - 1)] == [
            "lounge"
        ]
        assert facts.valid_at(ns(NOON + timedelta(hours=2))) == []

    def test_missing_bounds_are_open(self) -> None:
        facts = fact_set(
            {"subject": "a", "predicate": "always", "object": 1},
            {"subject": "a", "predicate": "until", "object": 2, "valid_to": NOON},
            {"subject": "a", "predicate": "from", "object": 3, "valid_from": NOON},
        )
        assert [f["object"] for f in facts.valid_at(ns(NOON) - NS)] == [1, 2]
        assert [f["object"] for f in facts.valid_at(ns(NOON))] == [1, 3]

    def test_bounds_are_accepted_as_datetimes_rfc3339_and_epoch_seconds(self) -> None:
        end = NOON + timedelta(hours=1)
        for bound in (end, end.isoformat(), int(end.timestamp())):
            facts = fact_set({"subject": "s", "predicate": "p", "object": 1, "valid_to": bound})
            assert facts.facts[0].valid_to == ns(end)

    @pytest.mark.parametrize(
        ("fact", "message"),
        [
            ({"subject": "", "predicate": "p"}, "subject"),
            ({"subject": "s", "predicate": None}, "predicate"),
            ({"subject": "s", "predicate": "p", "valid_to": "soon"}, "valid_to"),
            ({"subject": "s", "predicate": "p", "valid_from": NOON, "valid_to": NOON}, "later"),
            ({"subject": "s", "predicate": "p", "valid_to": datetime(2026, 1, 1)}, "offset"),
        ],
    )
    def test_a_bad_fact_is_refused_naming_it(self, fact: dict[str, Any], message: str) -> None:
        with pytest.raises(EnvironmentFactsError, match=message):
            fact_set({"subject": "ok", "predicate": "ok", "object": 0}, fact)

    def test_the_disk_form_reads_back_as_the_same_set(self) -> None:
        facts = fact_set(
            {"subject": "s", "predicate": "p", "object": {"k": [1]}, "valid_from": NOON},
            {"subject": "t", "predicate": "q", "object": None, "valid_to": NOON},
        )
        assert EnvironmentFacts.from_dict(facts.to_dict()) == facts


class TestMerging:
    ENV = fact_set(
        {"subject": "guest:Ben", "predicate": "hasTemporaryAccess", "object": "lounge"},
        {
            "subject": "guest:Ben",
            "predicate": "hasTemporaryAccess",
            "object": "spa",
            "valid_to": NOON,
        },
    )

    def test_request_facts_come_first_and_environment_facts_valid_now_follow(self) -> None:
        own = {"subject": "guest:Ben", "predicate": "hasTemporaryAccess", "object": "gym"}
        merged = with_environment_facts({"facts": [own], "now": NOON.isoformat()}, self.ENV)
        assert [f["object"] for f in merged["facts"]] == ["gym", "lounge"]

    def test_the_requests_now_decides_which_environment_facts_hold(self) -> None:
        before = (NOON - timedelta(minutes=1)).isoformat()
        merged = with_environment_facts({"now": before}, self.ENV)
        assert [f["object"] for f in merged["facts"]] == ["lounge", "spa"]

    def test_the_callers_task_facts_are_never_changed(self) -> None:
        task: dict[str, Any] = {"tags": ["vip"], "facts": []}
        merged = with_environment_facts(task, self.ENV)
        assert task == {"tags": ["vip"], "facts": []}
        assert merged is not task

    def test_without_environment_facts_the_request_is_passed_as_it_is(self) -> None:
        task: dict[str, Any] = {"tags": ["vip"]}
        assert with_environment_facts(task, None) is task
        assert with_environment_facts(task, fact_set()) is task


def _snapshot() -> PKGSnapshotData:
    rule = {
        "rule_id": "r1",
        "rule_name": "lounge_access",
        "priority": 10,
        "conditions": [
            {
                "condition_type": "FACT",
                "condition_key": "guest:Ben hasTemporaryAccess",
                "operator": "=",
                "value": "lounge",
            }
        ],
        "emissions": [{"subtask_type": "open", "subtask_name": "open_lounge"}],
    }
    not_rule = {
        "rule_id": "r2",
        "rule_name": "no_spa",
        "priority": 5,
        "conditions": [
            {
                "condition_type": "FACT",
                "condition_key": "guest:Ben hasTemporaryAccess",
                "operator": "!=",
                "value": "spa",
            }
        ],
        "emissions": [{"subtask_type": "open", "subtask_name": "deny_spa"}],
    }
    return PKGSnapshotData(
        id=1,
        version="rules@facts-unit",
        engine="native",
        wasm_artifact=None,
        checksum=None,
        rules=[rule, not_rule],
        subtask_types=[{"name": "open"}],
    )


class TestFactConditionsSeeTheUnion:
    def test_an_environment_fact_matches_as_a_request_fact_would(self) -> None:
        evaluator = PKGEvaluator(_snapshot())
        now = NOON.isoformat()
        assert evaluator.evaluate({"now": now})["subtasks"][0]["name"] == "deny_spa"
        names = [s["name"] for s in evaluator.evaluate({"now": now}, TestMerging.ENV)["subtasks"]]
        assert names == ["open_lounge", "deny_spa"]  # spa expired at noon

    def test_not_equal_fails_when_either_side_holds_the_value(self) -> None:
        evaluator = PKGEvaluator(_snapshot())
        early = (NOON - timedelta(minutes=1)).isoformat()
        names = [s["name"] for s in evaluator.evaluate({"now": early}, TestMerging.ENV)["subtasks"]]
        assert names == ["open_lounge"]  # the environment's spa fact still holds
        spa = {"subject": "guest:Ben", "predicate": "hasTemporaryAccess", "object": "spa"}
        later = {"now": NOON.isoformat(), "facts": [spa]}
        names = [s["name"] for s in evaluator.evaluate(later, TestMerging.ENV)["subtasks"]]
        assert names == ["open_lounge"]  # the request's own spa fact counts as well

    def test_the_seed_result_format_is_unchanged(self) -> None:
        result = PKGEvaluator(_snapshot()).evaluate({}, TestMerging.ENV)
        assert set(result) == {"subtasks", "dag", "rules", "snapshot"}
