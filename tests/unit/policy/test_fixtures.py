"""Fixtures: partial expectations, the run-all report, and readable differences."""

# ruff: noqa: E501 - tables of cases read best one case per line

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from evaluator_sidecar.policy.errors import EvaluationError
from evaluator_sidecar.policy.fixtures import FixtureReport, check_expectation, run_fixtures

RESULT: dict[str, Any] = {
    "subtasks": [
        {"name": "escalate_vip", "type": "escalate", "params": {"level": "high"}, "rule_id": "rule-001",
         "rule_name": "high_priority_vip"},
        {"name": "audit", "type": "notify", "params": {}, "rule_id": "rule-009", "rule_name": "log"},
    ],
    "dag": [{"from": "escalate_vip", "to": "audit", "type": "sequential", "rule": "rule-001"}],
    "rules": [
        {"rule_id": "rule-001", "rule_name": "high_priority_vip", "rule_priority": 10,
         "matched_conditions": 1, "emissions_count": 1},
        {"rule_id": "rule-009", "rule_name": "log", "rule_priority": 0, "matched_conditions": 0,
         "emissions_count": 1},
    ],
    "snapshot": "rules@1.4.0",
}  # fmt: skip


@pytest.mark.parametrize(
    "expect",
    [
        {},
        {"subtasks": ["escalate_vip", "audit"]},
        {"subtasks": [{"name": "escalate_vip", "params": {"level": "high"}}, "audit"]},
        {"rules": ["rule-001", {"rule_id": "rule-009", "rule_priority": 0}]},
        {"dag": [{"from": "escalate_vip", "type": "sequential"}]},
        {"snapshot": "rules@1.4.0"},
        {"rules": [{"rule_priority": 10.0}, {}]},  # numbers compare by value
        RESULT,
    ],
)
def test_partial_expectations_that_hold(expect: dict[str, Any]) -> None:
    assert check_expectation(expect, RESULT) == []


def test_extra_result_items_are_a_difference() -> None:
    (diff,) = check_expectation({"subtasks": ["escalate_vip"]}, RESULT)
    assert diff.key == "subtasks"
    assert diff.expected == ["escalate_vip"]
    assert diff.got == ["escalate_vip", "audit"]
    assert diff.details == ("expected 1 item(s), got 2", '[1] unexpected "audit"')


def test_missing_result_items_are_a_difference() -> None:
    (diff,) = check_expectation({"rules": ["rule-001", "rule-009", "rule-010"]}, RESULT)
    assert diff.details == ("expected 3 item(s), got 2", '[2] missing "rule-010"')


def test_field_differences_name_index_and_field() -> None:
    expect = {
        "subtasks": [
            {"name": "escalate_vip", "params": {"level": "low"}},
            {"name": "audit", "color": "red"},
        ]
    }
    (diff,) = check_expectation(expect, RESULT)
    assert diff.details == (
        '[0].params expected {"level": "low"}, got {"level": "high"}',
        '[1].color expected "red", but it is absent',
    )


def test_order_matters() -> None:
    (diff,) = check_expectation({"rules": ["rule-009", "rule-001"]}, RESULT)
    assert diff.details == (
        "[0] expected rule_id 'rule-009', got 'rule-001'",
        "[1] expected rule_id 'rule-001', got 'rule-009'",
    )


def test_booleans_do_not_equal_numbers() -> None:
    (diff,) = check_expectation({"rules": [{"matched_conditions": True}, {}]}, RESULT)
    assert diff.details == ("[0].matched_conditions expected true, got 1",)


def test_every_key_is_checked() -> None:
    diffs = check_expectation(
        {"subtasks": [], "rules": [], "dag": [], "snapshot": "rules@1.5.0"}, RESULT
    )
    assert [d.key for d in diffs] == ["subtasks", "rules", "dag", "snapshot"]
    assert diffs[3].expected == "rules@1.5.0"
    assert diffs[3].got == "rules@1.4.0"


@pytest.mark.parametrize(
    ("expect", "fragment"),
    [
        ({"subtask": []}, "unknown expect key 'subtask'; use subtasks, rules, dag, snapshot"),
        ({"subtasks": "escalate_vip"}, "expect.subtasks must be a list"),
        ({"dag": ["escalate_vip"]}, 'expect.dag[0] must be a mapping; got "escalate_vip"'),
        ({"rules": [5]}, "expect.rules[0] must be a rule_id string or a mapping; got 5"),
        ({"snapshot": 1.4}, "expect.snapshot must be a version string"),
    ],
)
def test_malformed_expectations_are_rejected(expect: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match="expect") as info:
        check_expectation(expect, RESULT)
    assert fragment in str(info.value)


def _evaluate(task_facts: Mapping[str, Any]) -> dict[str, Any]:
    if task_facts.get("broken"):
        raise EvaluationError("invalid task facts: broken")
    return RESULT


def test_run_fixtures_reports_each_outcome() -> None:
    report = run_fixtures(
        _evaluate,
        [
            {"name": "passes", "input": {}, "expect": {"rules": ["rule-001", "rule-009"]}},
            {"name": "fails", "input": {}, "expect": {"snapshot": "rules@2.0.0"}},
            {"name": "errors", "input": {"broken": True}, "expect": {}},
            {"name": "malformed", "input": {}, "expect": {"subtask": []}},
            {"input": [], "expect": {}},
            "not a fixture",
        ],
    )
    assert (report.passed, report.failed, report.total, report.success) == (1, 5, 6, False)
    outcomes = [(r.name, r.passed, r.error) for r in report.results]
    assert outcomes == [
        ("passes", True, None),
        ("fails", False, None),
        ("errors", False, "evaluation failed: invalid task facts: broken"),
        ("malformed", False, "unknown expect key 'subtask'; use subtasks, rules, dag, snapshot"),
        ("fixtures[4]", False, "input must be a mapping of task facts"),
        ("fixtures[5]", False, "a fixture must be a mapping"),
    ]


def test_report_as_text_and_json() -> None:
    report = run_fixtures(
        _evaluate,
        [
            {"name": "ok", "input": {}, "expect": {"subtasks": ["escalate_vip", "audit"]}},
            {"name": "wrong", "input": {}, "expect": {"subtasks": ["escalate_vip"]}},
        ],
    )
    text = report.format()
    assert text.splitlines() == [
        "PASS  ok",
        "FAIL  wrong",
        "      subtasks:",
        '        expected: ["escalate_vip"]',
        '        got:      ["escalate_vip", "audit"]',
        "        - expected 1 item(s), got 2",
        '        - [1] unexpected "audit"',
        "1 passed, 1 failed, 2 total",
    ]
    assert report.to_dict() == {
        "passed": 1,
        "failed": 1,
        "total": 2,
        "fixtures": [
            {"name": "ok", "passed": True},
            {
                "name": "wrong",
                "passed": False,
                "differences": [
                    {
                        "key": "subtasks",
                        "expected": ["escalate_vip"],
                        "got": ["escalate_vip", "audit"],
                        "details": ["expected 1 item(s), got 2", '[1] unexpected "audit"'],
                    }
                ],
            },
        ],
    }


def test_no_fixtures_is_a_success() -> None:
    report = run_fixtures(_evaluate, [])
    assert (report.total, report.success) == (0, True)
    assert FixtureReport().format() == "0 passed, 0 failed, 0 total"


def test_missing_input_means_empty_task_facts() -> None:
    seen: list[Mapping[str, Any]] = []

    def evaluate(task_facts: Mapping[str, Any]) -> dict[str, Any]:
        seen.append(task_facts)
        return RESULT

    assert run_fixtures(evaluate, [{"name": "n", "expect": {}}]).success
    assert seen == [{}]
