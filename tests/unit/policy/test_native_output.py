"""What a matched rule produces: rule order, subtasks and params, the DAG, and results
that never share mutable state; the documented examples reproduced exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import cond, emit, rule, snapshot

from evaluator_sidecar import PKGEvaluator, PKGSnapshotData
from evaluator_sidecar.policy.engines.native import NativeRuleEngine

Run = Callable[..., dict[str, Any]]

ALWAYS: list[dict[str, Any]] = []  # no conditions: the rule always matches


def _ids(result: dict[str, Any]) -> list[str]:
    return [r["rule_id"] for r in result["rules"]]


def _names(result: dict[str, Any]) -> list[str]:
    return [s["name"] for s in result["subtasks"]]


def _edges(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(e["from"], e["to"], e["type"], e["rule"]) for e in result["dag"]]


# -- the documented examples (docs/rule-language.md) ------------------------------------

VIP_RULE = {
    "rule_id": "rule-001",
    "rule_name": "high_priority_vip",
    "priority": 10,
    "disabled": False,
    "conditions": [
        {"condition_type": "TAG", "condition_key": "vip", "operator": "EXISTS", "value": None, "position": 0}  # noqa: E501
    ],
    "emissions": [
        {"subtask_type": "escalate", "subtask_name": "escalate_vip", "relationship_type": "EMITS",
         "params": {"level": "high"}, "position": 0, "default_params": {}}
    ],
}  # fmt: skip


def _example_snapshot(rules: list[dict[str, Any]]) -> PKGSnapshotData:
    return PKGSnapshotData(
        id=1,
        version="rules@1.4.0",
        engine="native",
        wasm_artifact=None,
        checksum="sha256-abc",
        rules=rules,
    )


def test_documented_output_format_example_is_reproduced_exactly() -> None:
    evaluator = PKGEvaluator(_example_snapshot([VIP_RULE]))
    task_facts = {
        "tags": ["vip", "allergen"],
        "signals": {"x2": 0.8, "x6": 0.95},
        "context": {"domain": "hotel_ops", "task_type": "guest_request"},
    }
    assert evaluator.evaluate(task_facts) == {
        "subtasks": [
            {"name": "escalate_vip", "type": "escalate", "params": {"level": "high"},
             "rule_id": "rule-001", "rule_name": "high_priority_vip"}
        ],
        "dag": [],
        "rules": [
            {"rule_id": "rule-001", "rule_name": "high_priority_vip", "rule_priority": 10,
             "matched_conditions": 1, "emissions_count": 1}
        ],
        "snapshot": "rules@1.4.0",
    }  # fmt: skip


def test_documented_evaluation_example() -> None:
    evaluator = PKGEvaluator(_example_snapshot([VIP_RULE]))
    result = evaluator.evaluate(
        {"tags": ["vip"], "signals": {"x2": 0.8}, "context": {"domain": "hotel_ops"}}
    )
    assert list(result) == ["subtasks", "dag", "rules", "snapshot"]
    assert _names(result) == ["escalate_vip"]
    assert result["subtasks"][0]["params"] == {"level": "high"}


def test_documented_dag_example_sequential_edge() -> None:
    ordered = dict(
        VIP_RULE,
        emissions=[
            emit("task1", subtask_type="escalate"),
            emit("task2", "ORDERS", subtask_type="escalate"),
        ],
    )
    result = PKGEvaluator(_example_snapshot([ordered])).evaluate({"tags": ["vip"]})
    assert result["dag"] == [
        {"from": "task1", "to": "task2", "type": "sequential", "rule": "rule-001"}
    ]


# -- rule order ---------------------------------------------------------------------------


def test_rules_run_by_priority_descending(run: Run) -> None:
    rules = [
        rule("low", priority=1),
        rule("high", priority=10),
        rule("negative", priority=-5),
        rule("zero"),
    ]
    assert _ids(run(rules, {})) == ["high", "low", "zero", "negative"]


def test_priority_ties_break_by_rule_name_then_rule_id(run: Run) -> None:
    rules = [
        rule("r3", priority=5, name="beta"),
        rule("r2", priority=5, name="alpha"),
        rule("r1", priority=5, name="beta"),
        rule("r0", priority=5, name="Zeta"),  # code-point order: uppercase first
    ]
    assert _ids(run(rules, {})) == ["r0", "r2", "r1", "r3"]


def test_disabled_rules_never_match(run: Run) -> None:
    rules = [rule("off", priority=100, disabled=True), rule("on")]
    assert _ids(run(rules, {})) == ["on"]


def test_rule_entry_counts_conditions_and_emissions(run: Run) -> None:
    rules = [
        rule(
            "r1",
            [cond("TAG", "vip", "EXISTS"), cond("TAG", "tags", "!=", "x")],
            [emit("a"), emit("b"), emit("c")],
            priority=7,
            name="three",
        )
    ]
    assert run(rules, {"tags": ["vip"]})["rules"] == [
        {
            "rule_id": "r1",
            "rule_name": "three",
            "rule_priority": 7,
            "matched_conditions": 2,
            "emissions_count": 3,
        }
    ]


def test_no_match_gives_empty_lists(run: Run) -> None:
    assert run([rule("r1", [cond("TAG", "vip", "EXISTS")])], {}) == {
        "subtasks": [],
        "dag": [],
        "rules": [],
    }


def test_defaults_for_priority_name_relationship_params_and_position(run: Run) -> None:
    rules = [{"rule_id": "r1", "rule_name": "bare", "emissions": [{"subtask_type": "notify"}]}]
    assert run(rules, {}) == {
        "subtasks": [{"name": "notify", "type": "notify", "params": {}, "rule_id": "r1", "rule_name": "bare"}],  # noqa: E501
        "dag": [],
        "rules": [{"rule_id": "r1", "rule_name": "bare", "rule_priority": 0, "matched_conditions": 0,  # noqa: E501
                   "emissions_count": 1}],
    }  # fmt: skip


# -- subtasks and params ------------------------------------------------------------------


def test_emissions_follow_position_then_subtask_name(run: Run) -> None:
    emissions = [
        emit("c", position=2),
        emit("b", position=1),
        emit("a", position=1),
        emit("z", position=0),
    ]
    assert _names(run([rule("r1", ALWAYS, emissions)], {})) == ["z", "a", "b", "c"]


def test_subtasks_of_matched_rules_concatenate_in_rule_order(run: Run) -> None:
    rules = [
        rule("second", ALWAYS, [emit("s1"), emit("s2")], priority=1),
        rule("first", ALWAYS, [emit("f1")], priority=2),
    ]
    result = run(rules, {})
    assert _names(result) == ["f1", "s1", "s2"]
    assert [s["rule_id"] for s in result["subtasks"]] == ["first", "second", "second"]


def test_params_merge_over_subtask_type_defaults(run: Run) -> None:
    types = [{"name": "notify", "default_params": {"channel": "email", "urgency": "normal"}}]
    emissions = [
        emit("n1", subtask_type="notify", params={"channel": "sms"}),
        emit("n2", subtask_type="notify"),
        emit("o1", subtask_type="other", params={"x": 1}),
    ]
    result = run([rule("r1", ALWAYS, emissions)], {}, subtask_types=types)
    assert [s["params"] for s in result["subtasks"]] == [
        {"channel": "sms", "urgency": "normal"},
        {"channel": "email", "urgency": "normal"},
        {"x": 1},
    ]


def test_emission_default_params_override_the_subtask_type(run: Run) -> None:
    types = [{"name": "notify", "default_params": {"channel": "email"}}]
    emissions = [emit("n1", subtask_type="notify", default_params={"channel": "pager", "retry": 3})]
    result = run([rule("r1", ALWAYS, emissions)], {}, subtask_types=types)
    assert result["subtasks"][0]["params"] == {"channel": "pager", "retry": 3}


def test_merge_is_shallow(run: Run) -> None:
    types = [{"name": "t", "default_params": {"opts": {"a": 1, "b": 2}}}]
    emissions = [emit("n", subtask_type="t", params={"opts": {"a": 9}})]
    assert run([rule("r1", ALWAYS, emissions)], {}, subtask_types=types)["subtasks"][0][
        "params"
    ] == {"opts": {"a": 9}}


# -- the DAG ------------------------------------------------------------------------------


def test_emits_only_adds_no_edges(run: Run) -> None:
    assert run([rule("r1", ALWAYS, [emit("a"), emit("b"), emit("c")])], {})["dag"] == []


def test_orders_chain_adds_sequential_edges(run: Run) -> None:
    emissions = [emit("a", "ORDERS"), emit("b", "ORDERS"), emit("c", "ORDERS")]
    assert _edges(run([rule("r1", ALWAYS, emissions)], {})) == [
        ("a", "b", "sequential", "r1"),
        ("b", "c", "sequential", "r1"),
    ]


def test_gate_fans_out_to_every_later_subtask(run: Run) -> None:
    emissions = [emit("check", "GATE"), emit("x"), emit("y"), emit("z")]
    assert _edges(run([rule("r1", ALWAYS, emissions)], {})) == [
        ("check", "x", "gate", "r1"),
        ("check", "y", "gate", "r1"),
        ("check", "z", "gate", "r1"),
    ]


def test_mixed_relationships_follow_the_documented_example(run: Run) -> None:
    emissions = [
        emit("check", "GATE"),
        emit("fetch", "ORDERS"),
        emit("pack", "ORDERS"),
        emit("notify"),
    ]
    assert _edges(run([rule("rule-007", ALWAYS, emissions)], {})) == [
        ("check", "fetch", "gate", "rule-007"),
        ("check", "fetch", "sequential", "rule-007"),
        ("check", "pack", "gate", "rule-007"),
        ("fetch", "pack", "sequential", "rule-007"),
        ("check", "notify", "gate", "rule-007"),
    ]


def test_two_gates_each_gate_what_follows_them(run: Run) -> None:
    emissions = [emit("g1", "GATE"), emit("g2", "GATE"), emit("work")]
    assert _edges(run([rule("r1", ALWAYS, emissions)], {})) == [
        ("g1", "g2", "gate", "r1"),
        ("g1", "work", "gate", "r1"),
        ("g2", "work", "gate", "r1"),
    ]


def test_edges_follow_emission_order_not_list_order(run: Run) -> None:
    emissions = [emit("b", "ORDERS", position=1), emit("a", position=0)]
    assert _edges(run([rule("r1", ALWAYS, emissions)], {})) == [("a", "b", "sequential", "r1")]


def test_edges_of_matched_rules_concatenate_in_rule_order(run: Run) -> None:
    rules = [
        rule("late", ALWAYS, [emit("l1"), emit("l2", "ORDERS")], priority=1),
        rule("early", ALWAYS, [emit("e1", "GATE"), emit("e2")], priority=2),
        rule("never", [cond("TAG", "x", "EXISTS")], [emit("n1"), emit("n2", "ORDERS")], priority=3),
    ]
    assert _edges(run(rules, {})) == [
        ("e1", "e2", "gate", "early"),
        ("l1", "l2", "sequential", "late"),
    ]


# -- independence of results --------------------------------------------------------------


def test_results_share_no_mutable_objects(engine_cls: Any) -> None:
    types: list[dict[str, Any]] = [
        {"name": "t", "default_params": {"items": ["towels"], "opts": {"late": True}}}
    ]
    emissions = [emit("a", "GATE", subtask_type="t", params={"n": 1}), emit("b", subtask_type="t")]
    engine = engine_cls.from_snapshot(
        snapshot([rule("r1", ALWAYS, emissions)], subtask_types=types)
    )
    first = engine.evaluate({})
    pristine = engine.evaluate({})
    first["subtasks"][0]["params"]["items"].append("robe")
    first["subtasks"][0]["params"]["opts"]["late"] = False
    first["subtasks"][1]["params"]["n"] = 2
    first["subtasks"][0]["name"] = "changed"
    first["dag"][0]["type"] = "changed"
    first["rules"][0]["rule_priority"] = 99
    second = engine.evaluate({})
    assert second == pristine
    assert second["subtasks"][0]["params"] is not pristine["subtasks"][0]["params"]
    assert (
        second["subtasks"][0]["params"]["items"] is not pristine["subtasks"][0]["params"]["items"]
    )
    assert second["subtasks"][0]["params"]["items"] is not types[0]["default_params"]["items"]


def test_mutating_the_snapshot_after_load_does_not_change_results() -> None:
    rules = [rule("r1", ALWAYS, [emit("a", params={"level": "high", "opts": {"late": True}})])]
    data = snapshot(rules)
    engine = NativeRuleEngine.from_snapshot(data)
    data.rules[0]["emissions"][0]["params"]["level"] = "low"
    data.rules[0]["emissions"][0]["params"]["opts"]["late"] = False
    assert engine.evaluate({})["subtasks"][0]["params"] == {"level": "high", "opts": {"late": True}}


def test_task_facts_are_not_modified(run: Run) -> None:
    facts = {
        "tags": ["vip"],
        "signals": {"x": 1},
        "context": {"a": {"b": 1}},
        "now": "2026-01-01T00:00:00Z",
    }
    before = repr(facts)
    run([rule("r1", [cond("TAG", "vip", "EXISTS"), cond("VALUE", "context.a.b", "=", 1)])], facts)
    assert repr(facts) == before


def test_many_rules_match_in_order_like_the_reference() -> None:
    from evaluator_sidecar.policy.engines.reference import ReferenceEngine

    rules = [
        rule(f"r{i:03d}", [cond("TAG", f"t{i % 7}", "EXISTS"), cond("SIGNAL", f"x{i % 5}", ">=", (i % 10) / 10)],  # noqa: E501
             [emit(f"s{i}a"), emit(f"s{i}b", "ORDERS")], priority=i % 4)
        for i in range(200)
    ]  # fmt: skip
    data = snapshot(rules)
    facts = {"tags": ["t1", "t3", "t6"], "signals": {f"x{k}": 0.55 for k in range(5)}}
    compiled = NativeRuleEngine.from_snapshot(data).evaluate(facts)
    assert compiled == ReferenceEngine.from_snapshot(data).evaluate(facts)
    assert len(compiled["rules"]) > 20
