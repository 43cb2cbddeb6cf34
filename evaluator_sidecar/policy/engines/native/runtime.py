"""What compiled rules call at evaluation time: path lookup, value tests, the fact view.

The generated evaluation function inlines the hot, simple tests (tags, signals,
plain comparisons); the rarer ones call the helpers here. Everything is built
at load; nothing here parses a condition value or compiles a pattern per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from evaluator_sidecar.policy.engines.native.loaded import Condition, Fact
from evaluator_sidecar.policy.engines.native.regex import Pattern
from evaluator_sidecar.policy.engines.native.values import (
    as_number,
    copy_json,
    json_equal,
    timestamp_ns,
    values_equal,
)

__all__ = [
    "FactEntry",
    "FactKey",
    "FactState",
    "FactStore",
    "InSet",
    "ValueTest",
    "as_mapping",
    "copy_json",
    "fact_any",
    "index_facts",
    "make_fact_lookup",
    "make_value_test",
    "resolve_path",
    "tag_matches",
]

FactKey = tuple[str | None, str]
ValueTest = Callable[[Any], bool]

_NAN = float("nan")


def resolve_path(root: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or None when a segment is missing or not an object."""
    current: Any = root
    for segment in path:
        if not isinstance(current, dict | Mapping):
            return None
        current = current.get(segment)
        if current is None:
            return None
    return current


_EMPTY: Mapping[str, Any] = {}


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one (a context that is not an object)."""
    return value if isinstance(value, Mapping) else _EMPTY


def tag_matches(tags: Iterable[str], pattern: Pattern) -> bool:
    """True when any tag matches ``pattern``."""
    search = pattern.search_memo
    for tag in tags:  # noqa: SIM110 - a loop beats any(<genexpr>) on the hot path
        if search(tag):
            return True
    return False


class InSet:
    """An IN list prepared for membership of one value (numbers by value, bools apart)."""

    __slots__ = ("numbers", "others", "strings")

    def __init__(self, items: Iterable[Any]) -> None:
        numbers: set[int | float] = set()
        strings: set[str] = set()
        others: list[Any] = []
        for item in items:
            number = as_number(item)
            if number is not None:
                numbers.add(number)
            elif isinstance(item, str):
                strings.add(item)
            else:
                others.append(item)
        self.numbers = frozenset(numbers)
        self.strings = frozenset(strings)
        self.others = tuple(others)

    def __contains__(self, value: Any) -> bool:
        if value is None:
            return False
        number = as_number(value)
        if number is not None:
            return number in self.numbers
        if value.__class__ is str:
            return value in self.strings
        return any(json_equal(value, other) for other in self.others)


def make_value_test(condition: Condition) -> ValueTest:
    """A test of one value against a VALUE or FACT condition (None is missing: False)."""
    op = condition.op
    if op == "EXISTS":
        return lambda value: value is not None
    if op == "MATCHES":
        assert condition.pattern is not None
        search = condition.pattern.search_memo
        return lambda value: value.__class__ is str and search(value)
    if op == "IN":
        members = InSet(condition.items)
        if not members.numbers and not members.others:
            strings = members.strings
            return lambda value: value.__class__ is str and value in strings
        return lambda value: value in members
    operand = condition.operand
    if op in (">=", "<=", ">", "<"):
        compare: Callable[[Any, Any], bool] = {
            ">=": lambda a, b: a >= b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            "<": lambda a, b: a < b,
        }[op]

        def numeric(value: Any) -> bool:
            number = as_number(value)
            return number is not None and compare(number, operand)

        return numeric
    if isinstance(operand, str) and as_number(operand) is None:
        # Plain text: only an equal string equals it (None never does).
        if op == "=":
            return lambda value: value == operand
        return lambda value: value is not None and value != operand
    if op == "=":
        return lambda value: value is not None and values_equal(value, operand)
    # "!=": a missing value is false here; FACT '!=' is handled by its caller.
    return lambda value: value is not None and not values_equal(value, operand)


def fact_any(objects: Iterable[Any], test: ValueTest) -> bool:
    """True when any valid fact's object passes ``test``."""
    for obj in objects:  # noqa: SIM110 - a loop beats any(<genexpr>) on the hot path
        if test(obj):
            return True
    return False


#: Per fact key: the objects of facts valid at all times, and (from, to, object) of the rest.
FactEntry = tuple[tuple[Any, ...], tuple[tuple[int | None, int | None, Any], ...]]
FactStore = dict[FactKey, FactEntry]


def index_facts(facts: Iterable[Fact]) -> FactStore:
    """The snapshot's facts by (subject, predicate) and by (None, predicate)."""
    always: dict[FactKey, list[Any]] = {}
    windowed: dict[FactKey, list[tuple[int | None, int | None, Any]]] = {}
    for fact in facts:
        for key in ((fact.subject, fact.predicate), (None, fact.predicate)):
            always.setdefault(key, [])
            windowed.setdefault(key, [])
            if fact.valid_from is None and fact.valid_to is None:
                always[key].append(fact.object)
            else:
                windowed[key].append((fact.valid_from, fact.valid_to, fact.object))
    return {key: (tuple(always[key]), tuple(windowed[key])) for key in always}


def _bound(value: Any) -> int | None:
    return None if value is None else timestamp_ns(value)


#: One evaluation's fact state, a plain list because it is made on every call:
#: [task facts, now in ns or None until read, {key: valid objects} or None].
FactState = list[Any]


def make_fact_lookup(store: FactStore) -> Callable[[FactState, FactKey], Sequence[Any]]:
    """``objects(state, key)``: the objects of the facts valid now with this key.

    The facts are the snapshot's (``store``) and the request's. The clock (task
    facts' ``now`` when given, else the wall clock) is read once per evaluation,
    and only when the answer depends on time or on the request; facts valid at
    all times are returned as prepared.
    """

    def objects(state: FactState, key: FactKey) -> Sequence[Any]:
        task_facts = state[0]
        entry = store.get(key)
        request = task_facts.get("facts")
        if not request:
            if entry is None:
                return ()
            if not entry[1]:
                return entry[0]
        cache = state[2]
        if cache is None:
            cache = state[2] = {}
        else:
            hit = cache.get(key)
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        now = state[1]
        if now is None:
            given = task_facts.get("now")
            now = state[1] = time.time_ns() if given is None else timestamp_ns(given)
        found: list[Any] = []
        if entry is not None:
            found.extend(entry[0])
            for start, end, obj in entry[1]:
                if (start is None or start <= now) and (end is None or now < end):
                    found.append(obj)
        if request:
            subject, predicate = key
            for fact in request:
                if fact["predicate"] != predicate:
                    continue
                if subject is not None and fact["subject"] != subject:
                    continue
                start, end = fact.get("valid_from"), fact.get("valid_to")
                # Most facts (environment facts always: they come checked) have no bounds.
                if start is None and end is None:
                    found.append(fact.get("object"))
                    continue
                start, end = _bound(start), _bound(end)
                if (start is None or start <= now) and (end is None or now < end):
                    found.append(fact.get("object"))
        cache[key] = found
        return found

    return objects
