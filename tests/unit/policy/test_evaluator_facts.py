"""Task facts are checked before any engine sees them: types and documented size limits."""

# ruff: noqa: E501 - tables of cases read best one case per line

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator_sidecar.policy.errors import EvaluationError
from evaluator_sidecar.policy.facts import (
    MAX_DEPTH,
    MAX_FACTS,
    MAX_NODES,
    MAX_SIGNALS,
    MAX_STRING_LENGTH,
    MAX_TAGS,
    validate_task_facts,
)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


VALID: list[Any] = [
    {},
    {"tags": None, "signals": None, "context": None, "facts": None, "now": None},
    {"tags": ["vip", "allergen"], "signals": {"x2": 0.8, "x6": 1}, "context": {"domain": "hotel_ops"}},
    {"context": {"a": [1, 2.5, "x", True, None, {"b": []}]}},
    {"facts": [{"subject": "guest:Ben", "predicate": "p", "object": {"service": "lounge"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_to": 1767229200, "id": 7}]},
    {"facts": [{"subject": "s", "predicate": "p"}]},
    {"now": "2026-01-01T00:00:00.123456789+05:30"},
    {"now": 1767225600.5},
    {"now": "2016-12-31T23:59:60Z"},
    {"tags": ["t"] * MAX_TAGS},
    {"context": _nested(MAX_DEPTH - 1)},
    {"context": {"s": "x" * MAX_STRING_LENGTH}},
    OrderedDict(tags=["vip"]),
]  # fmt: skip


@pytest.mark.parametrize("task_facts", VALID, ids=range(len(VALID)))
def test_well_formed_task_facts_pass_unchanged(task_facts: Any) -> None:
    assert validate_task_facts(task_facts) is task_facts


INVALID: list[tuple[Any, str]] = [
    (["vip"], "expected a JSON object with tags, signals, context, facts, now; got list"),
    (None, "got NoneType None"),
    ({"tag": ["vip"]}, "unknown key(s) 'tag'; the keys are tags, signals, context, facts, now (put application data under 'context')"),
    ({"tags": "vip"}, "tags must be a list of strings; got str 'vip'"),
    ({"tags": ("vip",)}, "tags must be a list of strings; got tuple"),
    ({"tags": ["vip", 5]}, "tags[1] must be a string; got int 5"),
    ({"tags": ["x" * (MAX_STRING_LENGTH + 1)]}, f"tags[0] is longer than {MAX_STRING_LENGTH} characters"),
    ({"tags": ["t"] * (MAX_TAGS + 1)}, f"{MAX_TAGS + 1} tags; at most {MAX_TAGS} are accepted"),
    ({"signals": [0.8]}, "signals must be an object of numbers; got list"),
    ({"signals": {"x2": "0.9"}}, "signals['x2'] must be a number; got str '0.9' (send 0.8, not \"0.8\")"),
    ({"signals": {"x2": True}}, "signals['x2'] must be a number; got bool True"),
    ({"signals": {"x2": None}}, "signals['x2'] must be a number; got NoneType None"),
    ({"signals": {"x2": float("nan")}}, "signals['x2'] is nan; signals must be finite numbers"),
    ({"signals": {"x2": float("inf")}}, "signals['x2'] is inf; signals must be finite numbers"),
    ({"signals": {5: 1.0}}, "signal name 5 must be a string"),
    ({"signals": {f"s{i}": 1 for i in range(MAX_SIGNALS + 1)}}, f"at most {MAX_SIGNALS} are accepted"),
    ({"context": "hotel"}, "context must be an object; got str 'hotel'"),
    ({"context": {"a": {1, 2}}}, "context.a is a set; only JSON values are accepted"),
    ({"context": {"a": [1, (2, 3)]}}, "context.a[1] is a tuple; only JSON values are accepted"),
    ({"context": {1: "a"}}, "context has a non-string key 1"),
    ({"context": {"a": float("-inf")}}, "context.a is -inf: JSON numbers are finite"),
    ({"context": _nested(MAX_DEPTH + 1)}, f"is nested more than {MAX_DEPTH} levels deep"),
    ({"context": {"a": list(range(MAX_NODES))}}, f"more than {MAX_NODES} values in all"),
    ({"facts": {"subject": "s"}}, "facts must be a list of facts; got dict"),
    ({"facts": ["guest:Ben p o"]}, "facts[0] must be an object with subject, predicate, object"),
    ({"facts": [{"predicate": "p"}]}, "facts[0].subject is required and must be a non-empty string"),
    ({"facts": [{"subject": "s", "predicate": ""}]}, "facts[0].predicate is required and must be a non-empty string"),
    ({"facts": [{"subject": "s", "predicate": "p", "valid_to": "tomorrow"}]},
     "facts[0].valid_to: 'tomorrow' is not an RFC 3339 time: write e.g. '2026-01-01T00:00:00Z'"),
    ({"facts": [{"subject": "s", "predicate": "p", "valid_from": "2026-01-01T00:00:00"}]},
     "(the offset, Z or +hh:mm, is required)"),
    ({"facts": [{"subject": "s", "predicate": "p", "object": {1}}]}, "facts[0].object is a set"),
    ({"facts": [{"subject": "s", "predicate": "p"}] * (MAX_FACTS + 1)}, f"at most {MAX_FACTS} are accepted"),
    ({"now": "yesterday"}, "now: 'yesterday' is not an RFC 3339 time"),
    ({"now": True}, "now: True is not a time"),
    ({"now": "2026-13-01T00:00:00Z"}, "a field is out of range"),
    ({"now": float("nan")}, "epoch seconds must be finite"),
]  # fmt: skip


@pytest.mark.parametrize(("task_facts", "fragment"), INVALID, ids=range(len(INVALID)))
def test_malformed_task_facts_say_what_is_wrong(task_facts: Any, fragment: str) -> None:
    with pytest.raises(EvaluationError) as info:
        validate_task_facts(task_facts)
    message = str(info.value)
    assert message.startswith("invalid task facts: ")
    assert fragment in message


def test_limits_are_documented_in_the_module() -> None:
    import evaluator_sidecar.policy.facts as module

    doc = module.__doc__ or ""
    for name in (
        "MAX_TAGS",
        "MAX_SIGNALS",
        "MAX_FACTS",
        "MAX_NODES",
        "MAX_DEPTH",
        "MAX_STRING_LENGTH",
    ):
        assert name in doc


def test_large_but_allowed_input_still_passes() -> None:
    facts = {
        "tags": [f"t{i}" for i in range(100)],
        "signals": {f"x{i}": i / 7 for i in range(100)},
        "context": {"items": [{"id": i, "name": f"n{i}"} for i in range(500)]},
    }
    assert validate_task_facts(facts) is facts


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, float("nan"), float("inf"), -0.0]),
    st.text(max_size=3),
    st.builds(tuple, st.lists(st.integers(), max_size=1)),
    st.builds(frozenset, st.lists(st.integers(), max_size=1)),
)
_json_like = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 2)), inner, max_size=3),
    ),
    max_leaves=8,
)
_task_facts_like = st.dictionaries(
    st.sampled_from(["tags", "signals", "context", "facts", "now", "other"]), _json_like, max_size=4
)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(task_facts=_task_facts_like)
def test_fast_check_never_accepts_what_the_detailed_check_rejects(
    task_facts: dict[str, Any],
) -> None:
    from evaluator_sidecar.policy.facts import _explain, _fits

    if _fits(task_facts):
        _explain(task_facts)  # must not raise


def test_times_take_ascii_digits_only() -> None:
    with pytest.raises(EvaluationError, match="is not an RFC 3339 time"):
        validate_task_facts({"now": "\uff12\uff10\uff12\uff16-01-01T00:00:00Z"})  # fullwidth 2026
