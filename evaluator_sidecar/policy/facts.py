"""Checking task facts before any engine sees them.

``validate_task_facts`` accepts exactly the documented shape and raises
``EvaluationError`` saying what is wrong and where (``signals['x2']``,
``facts[1].valid_to``), so that engines only ever see well-formed input::

    {"tags": [str],                       # tag names
     "signals": {str: number},            # finite ints or floats, not booleans
     "context": {...},                    # any JSON object (VALUE paths read it)
     "facts": [{"subject": str, "predicate": str, "object": JSON,
                "valid_from": time | null, "valid_to": time | null}],
     "now": time}                         # time: RFC 3339 with offset, or epoch seconds

Every part is optional, and null means absent. Other top-level keys are
rejected (a misspelt ``tag`` would otherwise silently match nothing); put
application data under ``context``. Extra keys inside a fact (e.g. a database
row's ``id``) are ignored.

Size limits (per evaluation), so that one request cannot make a sidecar spend
unbounded time or memory: at most ``MAX_TAGS`` tags, ``MAX_SIGNALS`` signals and
``MAX_FACTS`` facts; at most ``MAX_NODES`` JSON values in all; nesting at most
``MAX_DEPTH`` deep; strings (tags, keys, values) at most ``MAX_STRING_LENGTH``
characters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.engines.native.values import timestamp_ns
from evaluator_sidecar.policy.errors import EvaluationError, InvalidTaskFactsError

__all__ = [
    "MAX_DEPTH",
    "MAX_FACTS",
    "MAX_NODES",
    "MAX_SIGNALS",
    "MAX_STRING_LENGTH",
    "MAX_TAGS",
    "TASK_FACT_KEYS",
    "validate_task_facts",
]

MAX_TAGS = 1_000
MAX_SIGNALS = 1_000
MAX_FACTS = 1_000
MAX_NODES = 20_000
MAX_DEPTH = 32
MAX_STRING_LENGTH = 16_384

TASK_FACT_KEYS = ("tags", "signals", "context", "facts", "now")
_ALLOWED = frozenset(TASK_FACT_KEYS)
_SCALAR_TYPES = (str, int, float, bool, type(None))


def _fail(message: str) -> EvaluationError:
    return InvalidTaskFactsError(f"invalid task facts: {message}")


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


class _Walker:
    """Checks JSON values, counting them against the size limits."""

    __slots__ = ("nodes",)

    def __init__(self) -> None:
        self.nodes = 0

    def count(self, n: int, where: str) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise _fail(f"more than {MAX_NODES} values in all (at {where}); send less data")

    def string(self, value: str, where: str) -> None:
        if len(value) > MAX_STRING_LENGTH:
            raise _fail(f"{where} is longer than {MAX_STRING_LENGTH} characters")

    def json(self, value: Any, where: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _fail(f"{where} is nested more than {MAX_DEPTH} levels deep")
        self.count(1, where)
        cls = value.__class__
        if cls is str:
            self.string(value, where)
        elif cls is float:
            if not math.isfinite(value):
                raise _fail(f"{where} is {value!r}: JSON numbers are finite")
        elif cls is dict:
            for key, item in value.items():
                if key.__class__ is not str:
                    raise _fail(
                        f"{where} has a non-string key {key!r}; JSON object keys are strings"
                    )
                self.string(key, f"{where} key")
                self.json(item, f"{where}.{key}", depth + 1)
        elif cls is list:
            for i, item in enumerate(value):
                self.json(item, f"{where}[{i}]", depth + 1)
        elif not isinstance(value, _SCALAR_TYPES):
            raise _fail(f"{where} is a {type(value).__name__}; only JSON values are accepted")


def _check_time(value: Any, where: str) -> None:
    try:
        timestamp_ns(value)
    except ValueError as exc:
        raise _fail(f"{where}: {exc}") from exc


def _check_tags(tags: Any, walker: _Walker) -> None:
    if tags.__class__ is not list:
        raise _fail(f"tags must be a list of strings; got {_describe(tags)}")
    if len(tags) > MAX_TAGS:
        raise _fail(f"{len(tags)} tags; at most {MAX_TAGS} are accepted")
    walker.count(len(tags), "tags")
    for i, tag in enumerate(tags):
        if tag.__class__ is not str:
            raise _fail(f"tags[{i}] must be a string; got {_describe(tag)}")
        if len(tag) > MAX_STRING_LENGTH:
            raise _fail(f"tags[{i}] is longer than {MAX_STRING_LENGTH} characters")


def _check_signals(signals: Any, walker: _Walker) -> None:
    if signals.__class__ is not dict:
        raise _fail(f"signals must be an object of numbers; got {_describe(signals)}")
    if len(signals) > MAX_SIGNALS:
        raise _fail(f"{len(signals)} signals; at most {MAX_SIGNALS} are accepted")
    walker.count(len(signals), "signals")
    for key, value in signals.items():
        if key.__class__ is not str:
            raise _fail(f"signal name {key!r} must be a string")
        cls = value.__class__
        if cls is float:
            if not math.isfinite(value):
                raise _fail(f"signals[{key!r}] is {value!r}; signals must be finite numbers")
        elif cls is not int:
            raise _fail(
                f"signals[{key!r}] must be a number; got {_describe(value)}"
                + (' (send 0.8, not "0.8")' if cls is str else "")
            )


def _check_facts(facts: Any, walker: _Walker) -> None:
    if facts.__class__ is not list:
        raise _fail(f"facts must be a list of facts; got {_describe(facts)}")
    if len(facts) > MAX_FACTS:
        raise _fail(f"{len(facts)} facts; at most {MAX_FACTS} are accepted")
    for i, fact in enumerate(facts):
        where = f"facts[{i}]"
        if fact.__class__ is not dict:
            raise _fail(
                f"{where} must be an object with subject, predicate, object; got {_describe(fact)}"
            )
        for name in ("subject", "predicate"):
            value = fact.get(name)
            if value.__class__ is not str or not value:
                raise _fail(f"{where}.{name} is required and must be a non-empty string")
            walker.string(value, f"{where}.{name}")
        walker.json(fact.get("object"), f"{where}.object", 1)
        for name in ("valid_from", "valid_to"):
            bound = fact.get(name)
            if bound is not None:
                _check_time(bound, f"{where}.{name}")


def _json_fits(value: Any, depth: int, budget: list[int]) -> bool:
    """True when ``value`` is JSON within the limits; ``budget[0]`` counts values left.

    Scalars inside objects and arrays are checked inline: this runs on every call.
    """
    budget[0] -= 1
    cls = value.__class__
    if cls is str:
        return len(value) <= MAX_STRING_LENGTH
    if cls is int or cls is bool or value is None:
        return True
    if cls is float:
        return bool(value - value == 0)  # false for inf and nan
    if depth >= MAX_DEPTH:
        return False
    if cls is dict:
        for key in value:
            if key.__class__ is not str or len(key) > MAX_STRING_LENGTH:
                return False
        items: Any = value.values()
    elif cls is list:
        items = value
    else:
        return False
    budget[0] -= len(value)
    if budget[0] < 0:
        return False
    for item in items:
        cls = item.__class__
        if cls is str:
            if len(item) > MAX_STRING_LENGTH:
                return False
        elif cls is float:
            if item - item != 0:
                return False
        elif not (cls is int or cls is bool or item is None):
            budget[0] += 1  # counted above; the recursive call counts it again
            if not _json_fits(item, depth + 1, budget):
                return False
    return True


def _fits(task_facts: Mapping[str, Any]) -> bool:
    """The fast check: True when the task facts are certainly well-formed.

    False sends them to the detailed check (``_explain``), which decides and says
    why; so this check may be stricter than the rules, never looser.
    """
    if not task_facts.keys() <= _ALLOWED:
        return False
    budget = [MAX_NODES]
    tags = task_facts.get("tags")
    if tags is not None:
        if tags.__class__ is not list or len(tags) > MAX_TAGS:
            return False
        for tag in tags:
            if tag.__class__ is not str or len(tag) > MAX_STRING_LENGTH:
                return False
        budget[0] -= len(tags)
    signals = task_facts.get("signals")
    if signals is not None:
        if signals.__class__ is not dict or len(signals) > MAX_SIGNALS:
            return False
        for key, value in signals.items():
            cls = value.__class__
            if key.__class__ is not str or not (cls is float or cls is int) or value - value != 0:
                return False  # value - value is nan for inf and nan
        budget[0] -= len(signals)
    context = task_facts.get("context")
    if context is not None and not (context.__class__ is dict and _json_fits(context, 1, budget)):
        return False
    facts = task_facts.get("facts")
    if facts is not None:
        if facts.__class__ is not list or len(facts) > MAX_FACTS:
            return False
        for fact in facts:
            if fact.__class__ is not dict:
                return False
            subject, predicate = fact.get("subject"), fact.get("predicate")
            if subject.__class__ is not str or predicate.__class__ is not str:
                return False
            if not subject or not predicate:
                return False
            if len(subject) > MAX_STRING_LENGTH or len(predicate) > MAX_STRING_LENGTH:
                return False
            if not _json_fits(fact.get("object"), 1, budget):
                return False
            for name in ("valid_from", "valid_to"):
                bound = fact.get(name)
                if bound is not None and not _is_time(bound):
                    return False
    now = task_facts.get("now")
    if now is not None and not _is_time(now):
        return False
    return budget[0] >= 0


def _is_time(value: Any) -> bool:
    try:
        timestamp_ns(value)
    except ValueError:
        return False
    return True


def validate_task_facts(task_facts: Any) -> Mapping[str, Any]:
    """Return ``task_facts`` when they are well-formed; else raise EvaluationError saying why."""
    if not (isinstance(task_facts, Mapping) and _fits(task_facts)):
        _explain(task_facts)
    checked: Mapping[str, Any] = task_facts
    return checked


def _explain(task_facts: Any) -> None:
    """The detailed check: raise EvaluationError saying what is wrong and where."""
    if not isinstance(task_facts, Mapping):
        raise _fail(
            "expected a JSON object with tags, signals, context, facts, now; "
            f"got {_describe(task_facts)}"
        )
    unknown = [key for key in task_facts if key not in _ALLOWED]
    if unknown:
        raise _fail(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)}; the keys are "
            f"{', '.join(TASK_FACT_KEYS)} (put application data under 'context')"
        )
    walker = _Walker()
    tags = task_facts.get("tags")
    if tags is not None:
        _check_tags(tags, walker)
    signals = task_facts.get("signals")
    if signals is not None:
        _check_signals(signals, walker)
    context = task_facts.get("context")
    if context is not None:
        if context.__class__ is not dict:
            raise _fail(f"context must be an object; got {_describe(context)}")
        walker.json(context, "context", 1)
    facts = task_facts.get("facts")
    if facts is not None:
        _check_facts(facts, walker)
    now = task_facts.get("now")
    if now is not None:
        _check_time(now, "now")
