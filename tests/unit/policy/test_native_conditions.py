"""Every condition type with every operator it supports, held to the compiled engine and
the reference interpreter alike (see the specification in
evaluator_sidecar.policy.engines.native)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import cond, rule

NOW = "2026-01-01T01:00:00Z"

# (id, condition, task facts, expected match)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # TAG
    ("tag-exists", cond("TAG", "vip", "EXISTS"), {"tags": ["vip"]}, True),
    ("tag-exists-absent", cond("TAG", "vip", "EXISTS"), {"tags": ["gold"]}, False),
    ("tag-exists-no-tags", cond("TAG", "vip", "EXISTS"), {}, False),
    ("tag-eq", cond("TAG", "tags", "=", "vip"), {"tags": ["x", "vip"]}, True),
    ("tag-eq-absent", cond("TAG", "tags", "=", "vip"), {"tags": ["x"]}, False),
    ("tag-eq-without-key", cond("TAG", None, "=", "vip"), {"tags": ["vip"]}, True),
    ("tag-eq-number-value", cond("TAG", "tags", "=", 5), {"tags": ["5"]}, True),
    ("tag-ne", cond("TAG", "tags", "!=", "blocked"), {"tags": ["vip"]}, True),
    ("tag-ne-present", cond("TAG", "tags", "!=", "blocked"), {"tags": ["blocked"]}, False),
    ("tag-ne-no-tags", cond("TAG", "tags", "!=", "blocked"), {}, True),
    ("tag-in-list", cond("TAG", "tags", "IN", ["gold", "platinum"]), {"tags": ["platinum"]}, True),
    (
        "tag-in-list-none",
        cond("TAG", "tags", "IN", ["gold", "platinum"]),
        {"tags": ["silver"]},
        False,
    ),
    (
        "tag-in-json-text",
        cond("TAG", "tags", "IN", '["gold", "platinum"]'),
        {"tags": ["gold"]},
        True,
    ),
    (
        "tag-in-comma-text",
        cond("TAG", "tags", "IN", "gold, platinum"),
        {"tags": ["platinum"]},
        True,
    ),
    ("tag-in-many", cond("TAG", "tags", "IN", "a,b,c,d,e,f"), {"tags": ["f"]}, True),
    ("tag-in-numbers", cond("TAG", "tags", "IN", [1, 2]), {"tags": ["2"]}, True),
    (
        "tag-matches",
        cond("TAG", "tags", "MATCHES", "^loyalty-"),
        {"tags": ["x", "loyalty-gold"]},
        True,
    ),
    (
        "tag-matches-none",
        cond("TAG", "tags", "MATCHES", "^loyalty-"),
        {"tags": ["royalty-gold"]},
        False,
    ),
    ("tag-matches-searches", cond("TAG", "tags", "MATCHES", "ol"), {"tags": ["gold"]}, True),
    ("tag-matches-anchored", cond("TAG", "tags", "MATCHES", "^ol$"), {"tags": ["gold"]}, False),
    ("tag-matches-unicode", cond("TAG", "tags", "MATCHES", "^caf.$"), {"tags": ["café"]}, True),
    # SIGNAL
    ("signal-eq", cond("SIGNAL", "x", "=", 3), {"signals": {"x": 3.0}}, True),
    ("signal-eq-text", cond("SIGNAL", "x", "=", "0.8"), {"signals": {"x": 0.8}}, True),
    ("signal-eq-other", cond("SIGNAL", "x", "=", 3), {"signals": {"x": 3.5}}, False),
    ("signal-eq-missing", cond("SIGNAL", "x", "=", 3), {"signals": {"y": 3}}, False),
    ("signal-ne", cond("SIGNAL", "x", "!=", "0"), {"signals": {"x": 1}}, True),
    ("signal-ne-equal", cond("SIGNAL", "x", "!=", 0), {"signals": {"x": 0.0}}, False),
    ("signal-ne-missing", cond("SIGNAL", "x", "!=", 0), {}, False),
    ("signal-ge-boundary", cond("SIGNAL", "x", ">=", 0.8), {"signals": {"x": 0.8}}, True),
    ("signal-ge-below", cond("SIGNAL", "x", ">=", 0.8), {"signals": {"x": 0.79}}, False),
    ("signal-gt-boundary", cond("SIGNAL", "x", ">", "0.5"), {"signals": {"x": 0.5}}, False),
    ("signal-gt-above", cond("SIGNAL", "x", ">", "0.5"), {"signals": {"x": 0.51}}, True),
    ("signal-le-boundary", cond("SIGNAL", "x", "<=", 0.95), {"signals": {"x": 0.95}}, True),
    ("signal-le-above", cond("SIGNAL", "x", "<=", 0.95), {"signals": {"x": 0.96}}, False),
    ("signal-lt-boundary", cond("SIGNAL", "x", "<", 10), {"signals": {"x": 10}}, False),
    ("signal-lt-below", cond("SIGNAL", "x", "<", 10), {"signals": {"x": -1}}, True),
    ("signal-lt-missing", cond("SIGNAL", "x", "<", 10), {"signals": {}}, False),
    ("signal-in-json", cond("SIGNAL", "x", "IN", "[1, 2.5]"), {"signals": {"x": 2.5}}, True),
    ("signal-in-comma", cond("SIGNAL", "x", "IN", "1,2,3"), {"signals": {"x": 2.0}}, True),
    ("signal-in-list", cond("SIGNAL", "x", "IN", [1, "2"]), {"signals": {"x": 2}}, True),
    ("signal-in-none", cond("SIGNAL", "x", "IN", [1, 2]), {"signals": {"x": 3}}, False),
    ("signal-exists", cond("SIGNAL", "x", "EXISTS"), {"signals": {"x": 0}}, True),
    ("signal-exists-missing", cond("SIGNAL", "x", "EXISTS"), {"signals": {"y": 0}}, False),
    # VALUE
    (
        "value-eq",
        cond("VALUE", "context.domain", "=", "hotel_ops"),
        {"context": {"domain": "hotel_ops"}},
        True,
    ),
    (
        "value-eq-other",
        cond("VALUE", "context.domain", "=", "hotel_ops"),
        {"context": {"domain": "spa"}},
        False,
    ),
    ("value-eq-missing", cond("VALUE", "context.domain", "=", "hotel_ops"), {"context": {}}, False),
    ("value-eq-no-context", cond("VALUE", "context.domain", "=", "hotel_ops"), {}, False),
    (
        "value-eq-text-number",
        cond("VALUE", "context.code", "=", "5"),
        {"context": {"code": 5}},
        True,
    ),
    (
        "value-eq-number-text",
        cond("VALUE", "context.code", "=", 5),
        {"context": {"code": "5"}},
        True,
    ),
    (
        "value-eq-float-int",
        cond("VALUE", "context.code", "=", "5.0"),
        {"context": {"code": 5}},
        True,
    ),
    (
        "value-eq-not-numeric-text",
        cond("VALUE", "context.code", "=", 5),
        {"context": {"code": "05"}},
        False,
    ),
    (
        "value-eq-bool-text",
        cond("VALUE", "context.express", "=", "true"),
        {"context": {"express": True}},
        True,
    ),
    (
        "value-eq-bool-not-one",
        cond("VALUE", "context.flag", "=", 1),
        {"context": {"flag": True}},
        False,
    ),
    (
        "value-eq-bool-not-string",
        cond("VALUE", "context.flag", "=", True),
        {"context": {"flag": "true"}},
        False,
    ),
    (
        "value-eq-object",
        cond("VALUE", "context.o", "=", '{"a": 1}'),
        {"context": {"o": {"a": 1.0}}},
        True,
    ),
    ("value-eq-list", cond("VALUE", "context.o", "=", "[1, 2]"), {"context": {"o": [1, 2]}}, True),
    (
        "value-eq-nested-path",
        cond("VALUE", "context.guest.name", "=", "Ben"),
        {"context": {"guest": {"name": "Ben"}}},
        True,
    ),
    (
        "value-eq-through-string",
        cond("VALUE", "context.guest.name", "=", "Ben"),
        {"context": {"guest": "Ben"}},
        False,
    ),
    (
        "value-eq-top-level-path",
        cond("VALUE", "signals.x2", ">=", 0.5),
        {"signals": {"x2": 0.8}},
        True,
    ),
    (
        "value-ne",
        cond("VALUE", "context.domain", "!=", "hotel_ops"),
        {"context": {"domain": "spa"}},
        True,
    ),
    (
        "value-ne-equal",
        cond("VALUE", "context.domain", "!=", "hotel_ops"),
        {"context": {"domain": "hotel_ops"}},
        False,
    ),
    (
        "value-ne-missing",
        cond("VALUE", "context.domain", "!=", "hotel_ops"),
        {"context": {}},
        False,
    ),
    (
        "value-ne-null",
        cond("VALUE", "context.domain", "!=", "hotel_ops"),
        {"context": {"domain": None}},
        False,
    ),
    (
        "value-ne-numeric",
        cond("VALUE", "context.code", "!=", "5"),
        {"context": {"code": 5.0}},
        False,
    ),
    ("value-ge", cond("VALUE", "context.floor", ">=", 3), {"context": {"floor": 3}}, True),
    (
        "value-ge-text-side",
        cond("VALUE", "context.floor", ">=", "3"),
        {"context": {"floor": "3"}},
        True,
    ),
    (
        "value-ge-not-number",
        cond("VALUE", "context.floor", ">=", 3),
        {"context": {"floor": "three"}},
        False,
    ),
    ("value-ge-bool", cond("VALUE", "context.floor", ">=", 0), {"context": {"floor": True}}, False),
    ("value-gt", cond("VALUE", "context.floor", ">", 1), {"context": {"floor": 1}}, False),
    ("value-le", cond("VALUE", "context.floor", "<=", 5), {"context": {"floor": 5}}, True),
    ("value-lt", cond("VALUE", "context.floor", "<", "10"), {"context": {"floor": 9.5}}, True),
    ("value-lt-missing", cond("VALUE", "context.floor", "<", "10"), {}, False),
    (
        "value-in-list",
        cond("VALUE", "context.room", "IN", ["suite", "deluxe"]),
        {"context": {"room": "suite"}},
        True,
    ),
    (
        "value-in-none",
        cond("VALUE", "context.room", "IN", ["suite", "deluxe"]),
        {"context": {"room": "single"}},
        False,
    ),
    (
        "value-in-comma",
        cond("VALUE", "context.channel", "IN", "web, app"),
        {"context": {"channel": "app"}},
        True,
    ),
    (
        "value-in-numbers",
        cond("VALUE", "context.code", "IN", "1, 2"),
        {"context": {"code": 2}},
        True,
    ),
    (
        "value-in-mixed",
        cond("VALUE", "context.code", "IN", '["a", 2, true]'),
        {"context": {"code": True}},
        True,
    ),
    (
        "value-in-object",
        cond("VALUE", "context.o", "IN", '[{"a": 1}]'),
        {"context": {"o": {"a": 1}}},
        True,
    ),
    (
        "value-in-unhashable",
        cond("VALUE", "context.o", "IN", ["a", "b"]),
        {"context": {"o": ["a"]}},
        False,
    ),
    ("value-exists", cond("VALUE", "context.note", "EXISTS"), {"context": {"note": ""}}, True),
    (
        "value-exists-null",
        cond("VALUE", "context.note", "EXISTS"),
        {"context": {"note": None}},
        False,
    ),
    ("value-exists-missing", cond("VALUE", "context.note", "EXISTS"), {"context": {}}, False),
    (
        "value-exists-false",
        cond("VALUE", "context.flag", "EXISTS"),
        {"context": {"flag": False}},
        True,
    ),
    (
        "value-matches",
        cond("VALUE", "context.guest.name", "MATCHES", "^B"),
        {"context": {"guest": {"name": "Ben"}}},
        True,
    ),
    (
        "value-matches-number",
        cond("VALUE", "context.code", "MATCHES", "5"),
        {"context": {"code": 5}},
        False,
    ),
    (
        "value-matches-no",
        cond("VALUE", "context.guest.name", "MATCHES", "^B"),
        {"context": {"guest": {"name": "Ann"}}},
        False,
    ),
]

SNAPSHOT_FACTS = [
    {"subject": "guest:Ben", "predicate": "hasAccess", "object": {"service": "lounge"},
     "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2026-01-01T02:00:00Z"},
    {"subject": "guest:Ben", "predicate": "points", "object": 1200},
    {"subject": "guest:Ann", "predicate": "points", "object": "8000", "valid_to": "2025-12-31T00:00:00Z"},  # noqa: E501
    {"subject": "guest:Ben", "predicate": "tier", "object": "gold"},
    {"subject": "guest:Ben", "predicate": "email", "object": "ben@example.com"},
    {"subject": "guest:Ben Smith", "predicate": "nickname", "object": "Benny"},
]  # fmt: skip

# (id, condition, task facts (now is added), expected match)
FACT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("fact-exists", cond("FACT", "guest:Ben hasAccess", "EXISTS"), {}, True),
    ("fact-exists-predicate-only", cond("FACT", "hasAccess", "EXISTS"), {}, True),
    ("fact-exists-other-subject", cond("FACT", "guest:Ann hasAccess", "EXISTS"), {}, False),
    ("fact-exists-subject-with-space", cond("FACT", "guest:Ben Smith nickname", "EXISTS"), {}, True),  # noqa: E501
    ("fact-exists-expired", cond("FACT", "guest:Ann points", "EXISTS"), {}, False),
    ("fact-exists-request-fact", cond("FACT", "guest:Cy hasAccess", "EXISTS"),
     {"facts": [{"subject": "guest:Cy", "predicate": "hasAccess", "object": True}]}, True),
    ("fact-exists-null-object", cond("FACT", "flagged", "EXISTS"),
     {"facts": [{"subject": "guest:Cy", "predicate": "flagged"}]}, True),
    ("fact-eq-object", cond("FACT", "hasAccess", "=", '{"service": "lounge"}'), {}, True),
    ("fact-eq-string", cond("FACT", "tier", "=", "gold"), {}, True),
    ("fact-eq-numeric-text", cond("FACT", "points", "=", "1200"), {}, True),
    ("fact-eq-none", cond("FACT", "tier", "=", "silver"), {}, False),
    ("fact-ne-no-such-fact", cond("FACT", "banned", "!=", "yes"), {}, True),
    ("fact-ne-other-value", cond("FACT", "tier", "!=", "banned"), {}, True),
    ("fact-ne-equal-value", cond("FACT", "tier", "!=", "gold"), {}, False),
    ("fact-ne-request-fact", cond("FACT", "tier", "!=", "banned"),
     {"facts": [{"subject": "guest:Cy", "predicate": "tier", "object": "banned"}]}, False),
    ("fact-in", cond("FACT", "tier", "IN", ["gold", "platinum"]), {}, True),
    ("fact-in-none", cond("FACT", "tier", "IN", "silver, bronze"), {}, False),
    ("fact-matches", cond("FACT", "email", "MATCHES", r"@example\.com$"), {}, True),
    ("fact-matches-not-string", cond("FACT", "points", "MATCHES", "12"), {}, False),
    ("fact-ge", cond("FACT", "points", ">=", 1000), {}, True),
    ("fact-ge-expired-ignored", cond("FACT", "points", ">=", 5000), {}, False),
    ("fact-gt", cond("FACT", "guest:Ben points", ">", "1200"), {}, False),
    ("fact-le", cond("FACT", "points", "<=", 1200), {}, True),
    ("fact-lt", cond("FACT", "points", "<", 1000), {}, False),
    ("fact-window-start-inclusive", cond("FACT", "hasAccess", "EXISTS"), {"now": "2026-01-01T00:00:00Z"}, True),  # noqa: E501
    ("fact-window-end-exclusive", cond("FACT", "hasAccess", "EXISTS"), {"now": "2026-01-01T02:00:00Z"}, False),  # noqa: E501
    ("fact-window-before", cond("FACT", "hasAccess", "EXISTS"), {"now": "2025-12-31T23:59:59.999Z"}, False),  # noqa: E501
    ("fact-window-offset", cond("FACT", "hasAccess", "EXISTS"), {"now": "2026-01-01T02:30:00+01:00"}, True),  # noqa: E501
    ("fact-window-epoch", cond("FACT", "hasAccess", "EXISTS"), {"now": 1767229200}, True),
    ("fact-window-epoch-end", cond("FACT", "hasAccess", "EXISTS"), {"now": 1767232800.0}, False),
    ("fact-request-window", cond("FACT", "guest:Cy vip", "EXISTS"),
     {"facts": [{"subject": "guest:Cy", "predicate": "vip", "object": 1,
                 "valid_from": "2026-01-01T01:00:00Z", "valid_to": 1767232800}]}, True),
    ("fact-request-expired", cond("FACT", "guest:Cy vip", "EXISTS"),
     {"facts": [{"subject": "guest:Cy", "predicate": "vip", "object": 1,
                 "valid_to": "2026-01-01T01:00:00Z"}]}, False),
]  # fmt: skip


def _matches(
    run: Callable[..., dict[str, Any]],
    condition: dict[str, Any],
    task_facts: dict[str, Any],
    **kw: Any,
) -> bool:
    result = run([rule("r1", [condition])], task_facts, **kw)
    return [r["rule_id"] for r in result["rules"]] == ["r1"]


@pytest.mark.parametrize(
    ("condition", "task_facts", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_tag_signal_and_value_conditions(
    run: Callable[..., dict[str, Any]],
    condition: dict[str, Any],
    task_facts: dict[str, Any],
    expected: bool,
) -> None:
    assert _matches(run, condition, task_facts) is expected


@pytest.mark.parametrize(
    ("condition", "task_facts", "expected"),
    [c[1:] for c in FACT_CASES],
    ids=[c[0] for c in FACT_CASES],
)
def test_fact_conditions_with_validity_windows(
    run: Callable[..., dict[str, Any]],
    condition: dict[str, Any],
    task_facts: dict[str, Any],
    expected: bool,
) -> None:
    facts = {"now": NOW, **task_facts}
    assert _matches(run, condition, facts, facts=SNAPSHOT_FACTS) is expected


def test_every_supported_operator_is_covered() -> None:
    from evaluator_sidecar.policy.engines.native.loader import SUPPORTED_OPERATORS

    covered = {(c[1]["condition_type"], c[1]["operator"]) for c in [*CASES, *FACT_CASES]}
    expected = {(t, op) for t, ops in SUPPORTED_OPERATORS.items() for op in ops}
    assert expected <= covered


def test_fact_without_now_uses_the_wall_clock(run: Callable[..., dict[str, Any]]) -> None:
    facts = [
        {"subject": "s", "predicate": "always", "object": 1},
        {"subject": "s", "predicate": "past", "object": 1, "valid_to": "2000-01-01T00:00:00Z"},
        {"subject": "s", "predicate": "future", "object": 1, "valid_from": "2999-01-01T00:00:00Z"},
    ]
    assert _matches(run, cond("FACT", "always", "EXISTS"), {}, facts=facts)
    assert not _matches(run, cond("FACT", "past", "EXISTS"), {}, facts=facts)
    assert not _matches(run, cond("FACT", "future", "EXISTS"), {}, facts=facts)


def test_all_conditions_of_a_rule_must_hold(run: Callable[..., dict[str, Any]]) -> None:
    rules = [rule("r1", [cond("TAG", "vip", "EXISTS"), cond("SIGNAL", "x2", ">=", 0.8)])]
    assert run(rules, {"tags": ["vip"], "signals": {"x2": 0.9}})["rules"]
    assert not run(rules, {"tags": ["vip"], "signals": {"x2": 0.7}})["rules"]
    assert not run(rules, {"signals": {"x2": 0.9}})["rules"]


def test_typed_and_text_values_mean_the_same(run: Callable[..., dict[str, Any]]) -> None:
    typed = [
        cond("SIGNAL", "x", ">=", 0.8),
        cond("VALUE", "context.rooms", "IN", ["suite", "deluxe"]),
        cond("VALUE", "context.express", "=", True),
    ]
    text = [
        cond("SIGNAL", "x", ">=", "0.8"),
        cond("VALUE", "context.rooms", "IN", '["suite","deluxe"]'),
        cond("VALUE", "context.express", "=", "true"),
    ]
    for facts in (
        {"signals": {"x": 0.8}, "context": {"rooms": "suite", "express": True}},
        {"signals": {"x": 0.79}, "context": {"rooms": "suite", "express": True}},
        {"signals": {"x": 0.9}, "context": {"rooms": "single", "express": True}},
    ):
        assert run([rule("r", typed)], facts)["rules"] == run([rule("r", text)], facts)["rules"]
