"""Checking one raw condition and parsing its operands: the largest part of a load.

``parse_condition`` checks a condition's type, operator, key and value against
each other, and parses the value for its operator (numbers, IN lists, RE2
patterns, VALUE paths, FACT keys), adding a problem per mistake to the load's
``Problems``. Semantics: docs/rule-language.md ("Condition values",
"Conditions by type").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.engines.native.loaded import (
    COMPARISONS,
    CONDITION_TYPES,
    OPERATORS,
    SUPPORTED_OPERATORS,
    Condition,
)
from evaluator_sidecar.policy.engines.native.regex import compile_pattern
from evaluator_sidecar.policy.engines.native.values import (
    as_number,
    list_items,
    parse_number_text,
    parse_operand,
    value_text,
)
from evaluator_sidecar.policy.errors import Problem

__all__ = ["Problems", "is_int", "parse_condition", "split_fact_key"]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Problems:
    """Collects problems so that one load reports all of them."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(Problem(where, message))


def split_fact_key(key: str) -> tuple[str | None, str] | None:
    """A FACT condition_key as (subject or None, predicate), or None when malformed.

    ``hasTemporaryAccess`` -> (None, 'hasTemporaryAccess');
    ``guest:Ben hasTemporaryAccess`` -> ('guest:Ben', 'hasTemporaryAccess'). The
    predicate is the last word; the subject is everything before the last space.
    """
    if not key or key != key.strip():
        return None
    subject, _, predicate = key.rpartition(" ")
    if not predicate:
        return None
    if not subject:
        return (None, predicate)
    if subject != subject.strip():
        return None
    return (subject, predicate)


def _key_shape(ctype: str, key: str) -> Any:
    """A VALUE key's path segments, a FACT key's (subject, predicate), else None when malformed."""
    if ctype == "VALUE":
        segments = tuple(key.split("."))
        return segments if all(segments) else None
    return split_fact_key(key)


def parse_condition(raw: Any, index: int, where: str, problems: Problems) -> Condition | None:
    if not isinstance(raw, Mapping):
        problems.add(
            where, f"must be a mapping with condition_type, operator, ...; got {type(raw).__name__}"
        )
        return None
    ok = True
    ctype = raw.get("condition_type")
    if ctype is None:
        problems.add(f"{where}.condition_type", "is required (one of TAG, SIGNAL, VALUE, FACT)")
        ok = False
    elif ctype not in CONDITION_TYPES:
        problems.add(
            f"{where}.condition_type",
            f"unknown condition type {ctype!r}; use one of {', '.join(CONDITION_TYPES)}",
        )
        ok = False
    op = raw.get("operator")
    if op is None:
        problems.add(f"{where}.operator", f"is required (one of {' '.join(OPERATORS)})")
        ok = False
    elif op not in OPERATORS:
        problems.add(
            f"{where}.operator", f"unknown operator {op!r}; use one of {' '.join(OPERATORS)}"
        )
        ok = False
    elif ctype in SUPPORTED_OPERATORS and op not in SUPPORTED_OPERATORS[ctype]:
        problems.add(
            f"{where}.operator",
            f"operator {op} is not supported for {ctype} conditions; "
            f"use one of {' '.join(SUPPORTED_OPERATORS[ctype])}",
        )
        ok = False
    position = raw.get("position", index)
    if position is None:
        position = index
    if not is_int(position):
        problems.add(f"{where}.position", f"must be an integer; got {position!r}")
        ok = False
    key = raw.get("condition_key")
    key_needed = not (ctype == "TAG" and op != "EXISTS")
    if key is None:
        key = ""
        if key_needed:
            problems.add(f"{where}.condition_key", "is required")
            ok = False
    elif not isinstance(key, str):
        problems.add(f"{where}.condition_key", f"must be a string; got {type(key).__name__}")
        ok = False
    elif key_needed and not key:
        problems.add(f"{where}.condition_key", "must not be empty")
        ok = False
    value = raw.get("value")
    try:
        text = value_text(value)
    except ValueError:
        problems.add(f"{where}.value", f"is not JSON: {value!r}")
        return None
    if op != "EXISTS" and op in OPERATORS and text is None:
        problems.add(f"{where}.value", f"is required for operator {op}")
        ok = False
    if (
        isinstance(key, str)
        and key
        and ctype in ("VALUE", "FACT")
        and _key_shape(ctype, key) is None
    ):
        problems.add(
            f"{where}.condition_key",
            f"{key!r} is not a dotted path: write e.g. 'context.domain' (no empty segments)"
            if ctype == "VALUE"
            else f"{key!r} must be 'predicate' or 'subject predicate' separated by one space",
        )
        ok = False
    if not ok:
        return None
    return _parse_operands(
        str(ctype),
        str(op),
        str(key),
        text,
        position=int(position),
        index=index,
        where=where,
        problems=problems,
    )


def _parse_operands(
    ctype: str,
    op: str,
    key: str,
    text: str | None,
    *,
    position: int,
    index: int,
    where: str,
    problems: Problems,
) -> Condition | None:
    base: dict[str, Any] = {
        "index": index,
        "position": position,
        "ctype": ctype,
        "key": key,
        "op": op,
        "text": text,
    }
    vwhere = f"{where}.value"
    shape = _key_shape(ctype, key)
    if ctype == "VALUE":
        base["path"] = shape
    elif ctype == "FACT":
        assert isinstance(shape, tuple)
        base["fact_subject"], base["fact_predicate"] = shape
    if op == "EXISTS":
        return Condition(**base)
    assert text is not None
    if op == "MATCHES":
        try:
            base["pattern"] = compile_pattern(text)
        except ValueError as exc:
            problems.add(vwhere, str(exc))
            return None
        return Condition(**base)
    if op == "IN":
        items = list_items(text)
        if not items:
            problems.add(vwhere, "the IN list is empty: list at least one value")
            return None
        if ctype == "TAG":
            base["items"] = tuple(dict.fromkeys(str(value_text(item)) for item in items))
        elif ctype == "SIGNAL":
            numbers = [as_number(item) for item in items]
            bad = [item for item, number in zip(items, numbers, strict=True) if number is None]
            if bad:
                problems.add(
                    vwhere,
                    f"SIGNAL IN lists numbers; {', '.join(repr(b) for b in bad)} is not a number",
                )
                return None
            base["items"] = tuple(numbers)
        else:
            if any(item is None for item in items):
                problems.add(
                    vwhere, "an IN list must not contain null: null values count as missing"
                )
                return None
            base["items"] = tuple(items)
        return Condition(**base)
    # =, !=, >=, <=, >, <
    if ctype == "TAG":
        base["operand"] = text
        return Condition(**base)
    if ctype == "SIGNAL" or op in COMPARISONS:
        number = parse_number_text(text)
        if number is None:
            problems.add(
                vwhere,
                f"{text!r} is not a number; {ctype} {op} compares numbers "
                '(write e.g. 0.8 or "0.8")',
            )
            return None
        base["operand"] = number
        return Condition(**base)
    operand = parse_operand(text)
    if operand is None:
        problems.add(vwhere, f"null never matches {op}: a null value counts as missing; use EXISTS")
        return None
    base["operand"] = operand
    return Condition(**base)
