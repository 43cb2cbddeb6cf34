"""Property: the compiled engine and the reference interpreter agree on generated rules and facts.

The rules and facts are drawn from small vocabularies so that conditions often
hold and often fail: ties in priority and name, numeric text against numbers,
IN lists in all three forms, MATCHES patterns, FACT validity windows around
the pinned ``now``, request facts beside snapshot facts, missing and null
values. Derandomized, so a run is repeatable; sized to keep the suite fast.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from conftest import snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.reference import ReferenceEngine

TAGS = ["a", "b", "5", "loyalty-gold"]
SIGNALS = ["x", "y"]
PATHS = ["context.p", "context.q", "context.n.m", "signals.x", "context"]
PREDICATES = ["p1", "p2"]
SUBJECTS = ["s1", "s2", "s 3"]
PATTERNS = ["^a", "b$", "[a5]", "gold|x", "^$", "."]
TIMES = [
    None,
    None,
    "2026-01-01T00:00:00Z",
    "2026-01-01T01:00:00Z",
    "2026-01-01T02:00:00+01:00",
    1767225600,
]
NOWS = ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", 1767229200.5, "2026-01-01T03:00:00Z"]

NUMBERS = [0, 1, 2.5, 5, 5.0, -1]
PLAIN = ["a", "b", "5", "5.0", "05", "true", "gold", ""]
numbers = st.sampled_from(NUMBERS)
plain = st.sampled_from(PLAIN)
scalars = st.one_of(numbers, plain, st.booleans())
json_values = st.one_of(
    scalars, st.none(), st.lists(scalars, max_size=2), st.dictionaries(plain, scalars, max_size=2)
)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _in_value(draw: st.DrawFn, items: list[Any]) -> Any:
    """An IN list typed, as JSON text, or as comma-separated text."""
    forms: list[Any] = [items, json.dumps(items)]
    texts = [_as_text(x) for x in items]
    if all(t.strip() and "," not in t for t in texts):
        forms.append(", ".join(texts))
    return draw(st.sampled_from(forms))


def _number_value(draw: st.DrawFn) -> Any:
    value = draw(numbers)
    return draw(st.sampled_from([value, _as_text(value)]))


OPERATORS = {
    "TAG": ["EXISTS", "=", "!=", "IN", "MATCHES"],
    "SIGNAL": ["=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS"],
    "VALUE": ["=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS", "MATCHES"],
    "FACT": ["=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS", "MATCHES"],
}
ALL_OPERATORS = [(ctype, op) for ctype, ops in OPERATORS.items() for op in ops]


@st.composite
def _condition(draw: st.DrawFn, ctype: str | None = None, op: str | None = None) -> dict[str, Any]:
    if ctype is None or op is None:
        ctype, op = draw(st.sampled_from(ALL_OPERATORS))
    if ctype == "TAG":
        out: dict[str, Any] = {"condition_type": "TAG", "condition_key": "tags", "operator": op}
        if op == "EXISTS":
            out["condition_key"] = draw(st.sampled_from(TAGS))
        elif op in ("=", "!="):
            out["value"] = draw(st.sampled_from([*TAGS, 5]))
        elif op == "IN":
            out["value"] = _in_value(
                draw, draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=3))
            )
        else:
            out["value"] = draw(st.sampled_from(PATTERNS))
    elif ctype == "SIGNAL":
        out = {
            "condition_type": "SIGNAL",
            "condition_key": draw(st.sampled_from(SIGNALS)),
            "operator": op,
        }
        if op == "IN":
            out["value"] = _in_value(draw, draw(st.lists(numbers, min_size=1, max_size=3)))
        elif op != "EXISTS":
            out["value"] = _number_value(draw)
    else:
        if ctype == "VALUE":
            key = draw(st.sampled_from(PATHS))
        else:
            predicate = draw(st.sampled_from(PREDICATES))
            subject = draw(st.sampled_from([None, *SUBJECTS]))
            key = predicate if subject is None else f"{subject} {predicate}"
        out = {"condition_type": ctype, "condition_key": key, "operator": op}
        if op in ("=", "!="):
            value = draw(st.one_of(scalars, st.lists(scalars, min_size=1, max_size=2)))
            out["value"] = draw(st.sampled_from([value, _as_text(value)]))
        elif op in (">=", "<=", ">", "<"):
            out["value"] = _number_value(draw)
        elif op == "IN":
            out["value"] = _in_value(draw, draw(st.lists(scalars, min_size=1, max_size=3)))
        elif op == "MATCHES":
            out["value"] = draw(st.sampled_from(PATTERNS))
    position = draw(st.sampled_from([None, 0, 1, 2]))
    if position is not None:
        out["position"] = position
    return out


@st.composite
def _rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    rules = []
    for i in range(draw(st.integers(1, 12))):
        emissions = []
        for j in range(draw(st.integers(0, 3))):
            emission: dict[str, Any] = {"subtask_type": draw(st.sampled_from(["t1", "t2", "t3"]))}
            if draw(st.booleans()):
                emission["subtask_name"] = f"r{i}_{draw(st.sampled_from(['a', 'b', 'c']))}{j}"
            else:
                emission["subtask_type"] = f"r{i}_type{j}"  # the name defaults to the type
            relationship = draw(st.sampled_from([None, "EMITS", "ORDERS", "GATE"]))
            if relationship is not None:
                emission["relationship_type"] = relationship
            position = draw(st.sampled_from([None, 0, 1]))
            if position is not None:
                emission["position"] = position
            if draw(st.booleans()):
                emission["params"] = draw(
                    st.dictionaries(st.sampled_from(["k1", "k2"]), json_values, max_size=2)
                )
            if draw(st.integers(0, 4)) == 0:
                emission["default_params"] = {"k2": "own"}
            emissions.append(emission)
        rules.append(
            {
                "rule_id": f"rule-{i}",
                "rule_name": draw(st.sampled_from(["alpha", "beta", f"rule{i}"])),
                "priority": draw(st.sampled_from([0, 1, 2, -1])),
                "disabled": draw(st.integers(0, 5)) == 0,
                "conditions": draw(st.lists(_condition(), max_size=3)),
                "emissions": emissions,
            }
        )
    return rules


def _pool(count: int, seed: int) -> list[dict[str, Any]]:
    """A fixed, varied pool of task facts (plain ``random``: cheap, and the same every run)."""
    rng = random.Random(seed)

    def scalar() -> Any:
        return rng.choice([*NUMBERS, *PLAIN, True, False])

    def value() -> Any:
        kind = rng.randrange(6)
        if kind == 0:
            return None
        if kind == 1:
            return [scalar() for _ in range(rng.randrange(3))]
        if kind == 2:
            return {rng.choice(PLAIN): scalar() for _ in range(rng.randrange(3))}
        return scalar()

    def fact() -> dict[str, Any]:
        out: dict[str, Any] = {"subject": rng.choice(SUBJECTS), "predicate": rng.choice(PREDICATES)}
        if rng.randrange(6):
            out["object"] = value()
        for bound in ("valid_from", "valid_to"):
            moment = rng.choice(TIMES)
            if moment is not None:
                out[bound] = moment
        return out

    pool = []
    for _ in range(count):
        context: dict[str, Any] = {k: value() for k in ("p", "q") if rng.randrange(5)}
        if rng.randrange(4):
            context["n"] = {"m": value()} if rng.randrange(3) else scalar()
        pool.append(
            {
                "tags": rng.sample(TAGS, rng.randrange(4)),
                "signals": {k: rng.choice(NUMBERS) for k in SIGNALS if rng.randrange(4)},
                "context": context,
                "facts": [fact() for _ in range(rng.randrange(3))],
                "now": rng.choice(NOWS),
            }
        )
    return pool


POOL = _pool(80, seed=20260101)
SNAPSHOT_FACT_POOL = [
    _pool(1, seed=i)[0]["facts"] + _pool(1, seed=1000 + i)[0]["facts"] for i in range(40)
]


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rules=_rules(),
    snapshot_facts=st.sampled_from(SNAPSHOT_FACT_POOL),
)
def test_compiled_engine_agrees_with_reference(
    rules: list[dict[str, Any]], snapshot_facts: list[dict[str, Any]]
) -> None:
    data = snapshot(
        rules,
        subtask_types=[
            {"name": "t1", "default_params": {"k1": "default", "k3": [1]}},
            {"name": "t2"},
        ],
        facts=snapshot_facts,
    )
    compiled = NativeRuleEngine.from_snapshot(data)
    reference = ReferenceEngine.from_snapshot(data)
    for task_facts in POOL:
        assert compiled.evaluate(task_facts) == reference.evaluate(task_facts), compiled.source


_SAME_DIRECTION = {">=": ">", ">": ">=", "<=": "<", "<": "<="}


def _rules_around(condition: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules that reach ``condition`` by each path the compiler can take.

    Alone (it may be the rule's guard), behind a tag guard (so it is tested
    inline), before a signal bound (so it may sit in a signal chain), and, for a
    signal bound, beside the same bound of the other strictness (chain order).
    """

    def rule(rule_id: str, conditions: list[dict[str, Any]]) -> dict[str, Any]:
        return {"rule_id": rule_id, "rule_name": "n", "conditions": conditions,
                "emissions": [{"subtask_type": "t", "subtask_name": rule_id}]}  # fmt: skip

    tag_guard = {"condition_type": "TAG", "condition_key": "a", "operator": "EXISTS", "position": 0}
    bound = {"condition_type": "SIGNAL", "condition_key": "y", "operator": ">=", "value": 1}
    rules = [
        rule("alone", [condition]),
        rule("tagged", [tag_guard, {**condition, "position": 1}]),
        rule("bounded", [bound, condition]),
    ]
    if condition["condition_type"] == "SIGNAL" and condition["operator"] in _SAME_DIRECTION:
        twin = {**condition, "operator": _SAME_DIRECTION[condition["operator"]]}
        rules += [rule("twin", [twin]), rule("twin-first", [twin, condition])]
    return rules


@pytest.mark.parametrize(("ctype", "op"), ALL_OPERATORS, ids=[f"{t}{o}" for t, o in ALL_OPERATORS])
def test_each_condition_agrees_with_reference(ctype: str, op: str) -> None:
    @settings(max_examples=20, derandomize=True, deadline=None, database=None)
    @given(condition=_condition(ctype, op), snapshot_facts=st.sampled_from(SNAPSHOT_FACT_POOL))
    def check(condition: dict[str, Any], snapshot_facts: list[dict[str, Any]]) -> None:
        data = snapshot(_rules_around(condition), facts=snapshot_facts)
        compiled = NativeRuleEngine.from_snapshot(data)
        reference = ReferenceEngine.from_snapshot(data)
        for task_facts in POOL:
            assert compiled.evaluate(task_facts) == reference.evaluate(task_facts), (
                condition,
                task_facts,
            )

    check()
