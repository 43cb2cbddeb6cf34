"""Loading an invalid snapshot fails once, listing every problem with its rule and field."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import cond, emit, rule, snapshot

from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.reference import ReferenceEngine
from evaluator_sidecar.policy.errors import SnapshotLoadError


def _problems(rules: list[Any], **kw: Any) -> list[str]:
    with pytest.raises(SnapshotLoadError) as info:
        NativeRuleEngine.from_snapshot(snapshot(rules, **kw))
    return [str(p) for p in info.value.problems]


def _one(rules: list[Any], **kw: Any) -> str:
    problems = _problems(rules, **kw)
    assert len(problems) == 1, problems
    return problems[0]


@pytest.mark.parametrize(
    ("condition", "field", "fragment"),
    [
        (
            cond("COLOR", "x", "=", 1),
            "conditions[0].condition_type",
            "unknown condition type 'COLOR'",
        ),
        (cond("TAG", "x", "LIKE", "a"), "conditions[0].operator", "unknown operator 'LIKE'"),
        (cond("SIGNAL", "x", "MATCHES", "a"), "conditions[0].operator", "not supported for SIGNAL"),
        (cond("TAG", "x", ">=", "a"), "conditions[0].operator", "not supported for TAG"),
        (cond("TAG", "tags", "MATCHES", "(a"), "conditions[0].value", "not a valid RE2 pattern"),
        (
            cond("VALUE", "context.a", "MATCHES", r"(\w)\1"),
            "conditions[0].value",
            "not a valid RE2 pattern",
        ),
        (cond("SIGNAL", "x", ">=", "high"), "conditions[0].value", "'high' is not a number"),
        (cond("SIGNAL", "x", "=", True), "conditions[0].value", "not a number"),
        (cond("SIGNAL", "x", ">", " 0.5"), "conditions[0].value", "not a number"),
        (cond("SIGNAL", "x", "IN", "1, two"), "conditions[0].value", "'two' is not a number"),
        (cond("VALUE", "context.a", "<", "abc"), "conditions[0].value", "not a number"),
        (cond("VALUE", "context.a", "=", "null"), "conditions[0].value", "null never matches"),
        (cond("VALUE", "context.a", "IN", "[]"), "conditions[0].value", "IN list is empty"),
        (cond("VALUE", "context.a", "IN", " , "), "conditions[0].value", "IN list is empty"),
        (
            cond("VALUE", "context.a", "IN", "[1, null]"),
            "conditions[0].value",
            "must not contain null",
        ),
        (cond("VALUE", "context..a", "=", 1), "conditions[0].condition_key", "not a dotted path"),
        (
            cond("FACT", "a  b", "EXISTS"),
            "conditions[0].condition_key",
            "'predicate' or 'subject predicate'",
        ),
        (
            cond("FACT", " a", "EXISTS"),
            "conditions[0].condition_key",
            "'predicate' or 'subject predicate'",
        ),
        (cond("TAG", "vip", "="), "conditions[0].value", "is required for operator ="),
        (cond("SIGNAL", None, "EXISTS"), "conditions[0].condition_key", "is required"),
        (cond("TAG", 5, "EXISTS"), "conditions[0].condition_key", "must be a string"),
        (
            cond("TAG", "vip", "EXISTS", position="1"),
            "conditions[0].position",
            "must be an integer",
        ),
        (
            {"condition_key": "vip", "operator": "EXISTS"},
            "conditions[0].condition_type",
            "is required",
        ),
        (
            {"condition_type": "TAG", "condition_key": "vip"},
            "conditions[0].operator",
            "is required",
        ),
        ("TAG vip EXISTS", "conditions[0]", "must be a mapping"),
    ],
)
def test_bad_condition_names_rule_and_field(condition: Any, field: str, fragment: str) -> None:
    problem = _one([rule("rule-007", [condition])])
    assert problem.startswith(f"rule 'rule-007' {field}: "), problem
    assert fragment in problem


@pytest.mark.parametrize(
    ("emission", "field", "fragment"),
    [
        ({"subtask_name": "x"}, "emissions[0].subtask_type", "is required"),
        (emit("x", "FOLLOWS"), "emissions[0].relationship_type", "unknown relationship 'FOLLOWS'"),
        (emit("x", params=["a"]), "emissions[0].params", "must be a mapping"),
        (emit("x", default_params="a"), "emissions[0].default_params", "must be a mapping"),
        (emit("x", position=1.5), "emissions[0].position", "must be an integer"),
        ({"subtask_type": "t", "subtask_name": ""}, "emissions[0].subtask_name", "non-empty"),
    ],
)
def test_bad_emission_names_rule_and_field(emission: Any, field: str, fragment: str) -> None:
    problem = _one([rule("rule-007", [], [emission])])
    assert problem.startswith(f"rule 'rule-007' {field}: "), problem
    assert fragment in problem


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"priority": "high"}, "priority", "must be an integer"),
        ({"priority": True}, "priority", "must be an integer"),
        ({"disabled": "no"}, "disabled", "must be true or false"),
        ({"rule_name": ""}, "rule_name", "is required"),
        ({"conditions": "TAG"}, "conditions", "must be a list"),
        ({"emissions": {}}, "emissions", "must be a list"),
        ({"rule_source": 5}, "rule_source", "must be text"),
    ],
)
def test_bad_rule_field(changes: dict[str, Any], field: str, fragment: str) -> None:
    problem = _one([{**rule("rule-007"), **changes}])
    assert problem.startswith(f"rule 'rule-007' {field}: ")
    assert fragment in problem


def test_rule_without_id_is_named_by_its_index() -> None:
    problem = _one([rule("ok"), {"rule_name": "anonymous", "conditions": [], "emissions": []}])
    assert problem == "rules[1].rule_id: is required and must be a non-empty string"


def test_duplicate_rule_ids() -> None:
    problem = _one([rule("rule-001"), rule("rule-002"), rule("rule-001")])
    assert problem == "rule 'rule-001': duplicate rule_id: rules[0] and rules[2] both use it"


def test_every_problem_is_reported_at_once() -> None:
    rules = [
        rule("r1", [cond("TAG", "x", "LIKE", "a"), cond("SIGNAL", "s", ">", "big")]),
        rule("r2", [cond("VALUE", "context.a", "MATCHES", "(")], [emit("x", "SOMETIMES")]),
        rule("r1"),
    ]
    problems = _problems(rules, facts=[{"subject": "s", "predicate": "p", "valid_to": "tomorrow"}])
    assert len(problems) == 6
    wheres = [p.split(":")[0] for p in problems]
    assert wheres == [
        "rule 'r1' conditions[0].operator",
        "rule 'r1' conditions[1].value",
        "rule 'r2' conditions[0].value",
        "rule 'r2' emissions[0].relationship_type",
        "rule 'r1'",
        "facts[0].valid_to",
    ]


def test_error_message_lists_problems_under_the_version() -> None:
    with pytest.raises(SnapshotLoadError) as info:
        NativeRuleEngine.from_snapshot(
            snapshot([rule("r1", [cond("X", "k", "=", 1)])], version="rules@9.9.9")
        )
    message = str(info.value)
    assert message.startswith("snapshot 'rules@9.9.9' cannot be loaded (1 problem(s)):")
    assert "rule 'r1' conditions[0].condition_type: unknown condition type 'X'" in message
    assert info.value.version == "rules@9.9.9"


def test_rules_must_be_a_list() -> None:
    data = snapshot([])
    object.__setattr__(data, "rules", {"rule_id": "r1"})
    with pytest.raises(SnapshotLoadError, match="rules: must be a list"):
        NativeRuleEngine.from_snapshot(data)


def test_bad_subtask_types() -> None:
    problems = _problems(
        [rule("r1")],
        subtask_types=[
            {"name": "a"},
            {"name": "a"},
            {"default_params": {}},
            {"name": "b", "default_params": 3},
        ],
    )
    assert problems == [
        "subtask_types[1].name: subtask type 'a' is defined twice",
        "subtask_types[2].name: is required and must be a non-empty string",
        "subtask_types[3].default_params: must be a mapping; got int",
    ]


@pytest.mark.parametrize(
    ("fact", "fragment"),
    [
        ({"predicate": "p"}, "facts[0].subject: is required"),
        (
            {"subject": "s", "predicate": "has access"},
            "facts[0].predicate: 'has access' must be one word",
        ),
        (
            {"subject": "s", "predicate": "p", "valid_from": "2026-01-01"},
            "facts[0].valid_from: '2026-01-01' is not an RFC 3339",
        ),
        ({"subject": "s", "predicate": "p", "valid_to": "2026-02-30T00:00:00Z"}, "out of range"),
        (
            {"subject": "s", "predicate": "p", "valid_to": True},
            "facts[0].valid_to: True is not a time",
        ),
    ],
)
def test_bad_snapshot_facts(fact: dict[str, Any], fragment: str) -> None:
    assert fragment in _one([rule("r1")], facts=[fact])


# -- cycles ----------------------------------------------------------------------------


def test_cycle_across_rules_is_rejected_naming_it() -> None:
    rules = [
        rule("r-a", [], [emit("x", "GATE"), emit("y")]),
        rule("r-b", [], [emit("y"), emit("x", "ORDERS")]),
    ]
    problem = _one(rules)
    assert problem.startswith("dag: cycle x -> y -> x (edges from rule(s) r-a, r-b)")


def test_self_loop_is_a_cycle() -> None:
    problem = _one([rule("r1", [], [emit("x"), emit("x", "ORDERS")])])
    assert problem.startswith("dag: cycle x -> x (edges from rule(s) r1)")


def test_longer_cycle_is_reported_with_its_path() -> None:
    rules = [
        rule("r1", [], [emit("a"), emit("b", "ORDERS")]),
        rule("r2", [], [emit("b"), emit("c", "ORDERS")]),
        rule("r3", [], [emit("c"), emit("a", "ORDERS")]),
        rule("r4", [], [emit("c"), emit("d", "ORDERS")]),
    ]
    assert _one(rules).startswith("dag: cycle a -> b -> c -> a (edges from rule(s) r1, r2, r3)")


def test_disabled_rules_count_for_cycles() -> None:
    rules = [
        rule("r1", [], [emit("a"), emit("b", "ORDERS")]),
        rule("r2", [], [emit("b"), emit("a", "ORDERS")], disabled=True),
    ]
    assert "cycle a -> b -> a" in _one(rules)


def test_shared_subtasks_without_cycle_are_fine() -> None:
    rules = [
        rule("r1", [], [emit("a", "GATE"), emit("b"), emit("c")]),
        rule("r2", [], [emit("b"), emit("c", "ORDERS")]),
        rule("r3", [], [emit("a"), emit("c", "ORDERS")]),
    ]
    NativeRuleEngine.from_snapshot(snapshot(rules))


def test_deep_acyclic_chain_loads() -> None:
    emissions = [emit(f"s{i}", "ORDERS") for i in range(3000)]
    NativeRuleEngine.from_snapshot(snapshot([rule("long", [], emissions)]))


def test_reference_interpreter_rejects_the_same_snapshots() -> None:
    with pytest.raises(SnapshotLoadError):
        ReferenceEngine.from_snapshot(snapshot([rule("r1", [cond("TAG", "x", "LIKE", "a")])]))


def test_problems_of_one_condition_are_all_reported() -> None:
    problems = _problems([rule("r1", [cond("VALUE", "context..a", "=")])])
    assert problems == [
        "rule 'r1' conditions[0].value: is required for operator =",
        "rule 'r1' conditions[0].condition_key: 'context..a' is not a dotted path: "
        "write e.g. 'context.domain' (no empty segments)",
    ]
