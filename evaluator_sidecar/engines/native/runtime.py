"""What compiled rules call at evaluation time: path lookup, value tests, the fact view.

The generated evaluation function inlines the hot, simple tests (tags, signals,
plain comparisons); the rarer ones call the helpers here. Everything is built
at load; nothing here parses a condition value or compiles a pattern per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from evaluator_sidecar.engines.native.loader import Condition, Fact
from evaluator_sidecar.engines.native.regex import Pattern
from evaluator_sidecar.engines.native.values import (
    as_number,
    json_equal,
    timestamp_ns,
    values_equal,
)

__all__ = [
    "FactKey",
    "FactStore",
    "FactView",
    "InSet",
    "ValueTest",
    "copy_json",
    "fact_any",
    "index_facts",
    "make_value_test",
    "resolve_path",
    "tag_matches",
]

FactKey = tuple[str | None, str]
FactStore = dict[FactKey, tuple[Fact, ...]]
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


def tag_matches(tags: Iterable[str], pattern: Pattern) -> bool:
    """True when any tag matches ``pattern``."""
    search = pattern.search
    return any(search(tag) for tag in tags)


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
        search = condition.pattern.search
        return lambda value: value.__class__ is str and search(value)
    if op == "IN":
        members = InSet(condition.items)
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
    if op == "=":
        return lambda value: value is not None and values_equal(value, operand)
    # "!=": a missing value is false here; FACT '!=' is handled by its caller.
    return lambda value: value is not None and not values_equal(value, operand)


def fact_any(objects: Iterable[Any], test: ValueTest) -> bool:
    """True when any valid fact's object passes ``test``."""
    return any(test(obj) for obj in objects)


def index_facts(facts: Iterable[Fact]) -> FactStore:
    """Facts by (subject, predicate) and by (None, predicate), for FACT condition keys."""
    index: dict[FactKey, list[Fact]] = {}
    for fact in facts:
        index.setdefault((fact.subject, fact.predicate), []).append(fact)
        index.setdefault((None, fact.predicate), []).append(fact)
    return {key: tuple(value) for key, value in index.items()}


class FactView:
    """The facts one evaluation sees: the snapshot's and the request's, valid at ``now``.

    Built per call and lazy: the clock is read, the request's facts are parsed
    and a key's valid objects are collected only when a FACT condition asks.
    """

    __slots__ = ("_cache", "_now", "_request", "_store", "_task_facts")

    def __init__(self, task_facts: Mapping[str, Any], store: FactStore) -> None:
        self._task_facts = task_facts
        self._store = store
        self._cache: dict[FactKey, list[Any]] | None = None
        self._now: int | None = None
        self._request: FactStore | None = None

    def now_ns(self) -> int:
        """The evaluation instant: task facts' ``now`` when given, else the wall clock (once)."""
        if self._now is None:
            given = self._task_facts.get("now")
            self._now = time.time_ns() if given is None else timestamp_ns(given)
        return self._now

    def _request_store(self) -> FactStore:
        if self._request is None:
            raw = self._task_facts.get("facts") or ()
            self._request = index_facts(
                Fact(
                    subject=entry["subject"],
                    predicate=entry["predicate"],
                    object=entry.get("object"),
                    valid_from=None
                    if entry.get("valid_from") is None
                    else timestamp_ns(entry["valid_from"]),
                    valid_to=None
                    if entry.get("valid_to") is None
                    else timestamp_ns(entry["valid_to"]),
                )
                for entry in raw
            )
        return self._request

    def objects(self, key: FactKey) -> list[Any]:
        """The objects of the facts valid now that have this (subject or None, predicate)."""
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        else:
            hit = cache.get(key)
            if hit is not None:
                return hit
        now = self.now_ns()
        found = [fact.object for fact in self._store.get(key, ()) if fact.valid_at(now)]
        if self._task_facts.get("facts"):
            found.extend(
                fact.object for fact in self._request_store().get(key, ()) if fact.valid_at(now)
            )
        cache[key] = found
        return found


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts and lists copied; scalars shared, being immutable)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value
