"""Value primitives of the native rule language: condition values, numbers, equality, time.

Both the compiled engine and the reference interpreter use these, so that the
two agree on what a condition value *means*; each does its own matching.

A condition's ``value`` may arrive typed (YAML: ``0.8``, ``[gold, platinum]``)
or as text (PostgreSQL stores it as TEXT: ``"0.8"``, ``'["gold","platinum"]'``).
Everything here works on the *text form* (:func:`value_text`), so the two
arrive at the same meaning by construction. Semantics: docs/rule-language.md
("Condition values").
"""

from __future__ import annotations

import calendar
import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "NUMBER_TEXT",
    "as_number",
    "copy_json",
    "json_equal",
    "list_items",
    "parse_number_text",
    "parse_operand",
    "timestamp_ns",
    "value_text",
    "values_equal",
]

#: JSON's number grammar: the only text that counts as a number ("5", "-0.8",
#: "1e3"; not "05", " 5", "+5", "inf" or "NaN"). Shared with the Rego policy.
NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

# ASCII digits only (``\d`` would also take other scripts' digits, which OPA's parser refuses).
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

_NS_PER_S = 1_000_000_000


def value_text(value: Any) -> str | None:
    """The text form of a condition value: strings as they are, anything else as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_number_text(text: str) -> int | float | None:
    """``text`` as a number when it is one by JSON's grammar, else None.

    Integers stay ``int`` so that large identifiers compare exactly.
    """
    if not NUMBER_TEXT.fullmatch(text):
        return None
    if "." in text or "e" in text or "E" in text:
        number = float(text)
        return number if math.isfinite(number) else None
    return int(text)


def as_number(value: Any) -> int | float | None:
    """A number for numeric comparison: ints and floats (never bools) and numeric text."""
    cls = value.__class__
    if cls is int or cls is float:
        return value  # type: ignore[no-any-return]
    if cls is str:
        return parse_number_text(value)
    return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_operand(text: str) -> Any:
    """A condition value's text parsed as JSON when it is JSON, else the text itself.

    ``"0.8"`` -> 0.8, ``"true"`` -> True, ``'{"a": 1}'`` -> {"a": 1}, ``"hotel_ops"``
    -> "hotel_ops". NaN and Infinity are not JSON and stay text.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def list_items(text: str) -> list[Any]:
    """The items of an IN list: a JSON list, else comma-separated text.

    Comma-separated items are stripped of surrounding whitespace, empty items are
    dropped, and each item is read like a single value (:func:`parse_operand`).
    A single value that is not a list is a list of one.
    """
    parsed = parse_operand(text)
    if isinstance(parsed, list):
        return parsed
    items = (part.strip() for part in text.split(","))
    return [parse_operand(item) for item in items if item]


def json_equal(left: Any, right: Any) -> bool:
    """Structural JSON equality: numbers by value, booleans only equal booleans."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            json_equal(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if left.__class__ is not right.__class__:
        return False
    return bool(left == right)


def values_equal(actual: Any, operand: Any) -> bool:
    """VALUE/FACT equality: numerically when both sides are numbers or numeric text, else JSON."""
    left = as_number(actual)
    if left is not None:
        right = as_number(operand)
        if right is not None:
            return left == right
    return json_equal(actual, operand)


#: Parsed RFC 3339 texts: the same few instants (a pinned ``now``, fact bounds) recur.
_TIMESTAMP_MEMO: dict[str, int] = {}
_TIMESTAMP_MEMO_ENTRIES = 4096


def timestamp_ns(value: Any) -> int:
    """An instant as integer nanoseconds since the epoch.

    Accepts an RFC 3339 string with an explicit offset (``2026-01-01T00:00:00Z``,
    ``...T01:00:00.5+01:00``) or epoch seconds as a number (taken exactly as
    written: 1767225600.5 is half a second past the full second). Raises ValueError
    saying what is accepted otherwise.
    """
    if isinstance(value, bool):  # a bool is an int to Python, never a time to us
        raise ValueError(  # noqa: TRY004 - callers handle every unusable input as ValueError
            f"{value!r} is not a time: give an RFC 3339 string or epoch seconds"
        )
    if isinstance(value, int):
        return value * _NS_PER_S
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a time: epoch seconds must be finite")
        try:
            return int(Decimal(repr(value)) * _NS_PER_S)
        except InvalidOperation as exc:  # pragma: no cover - repr of a finite float parses
            raise ValueError(f"{value!r} is not a time") from exc
    if isinstance(value, str):
        known = _TIMESTAMP_MEMO.get(value)
        if known is not None:
            return known
        parsed = _parse_rfc3339(value)
        if len(_TIMESTAMP_MEMO) < _TIMESTAMP_MEMO_ENTRIES:
            _TIMESTAMP_MEMO[value] = parsed
        return parsed
    raise ValueError(
        f"{value!r} ({type(value).__name__}) is not a time: "
        "give an RFC 3339 string or epoch seconds"
    )


def _parse_rfc3339(value: str) -> int:
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{value!r} is not an RFC 3339 time: write e.g. '2026-01-01T00:00:00Z' "
            "(the offset, Z or +hh:mm, is required)"
        )
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    offset = match.group(8)
    if not (
        year >= 1
        and 1 <= month <= 12
        and 1 <= day <= calendar.monthrange(year, month)[1]
        and hour < 24
        and minute < 60
        and second < 61  # 60: a leap second, counted as the next second
    ):
        raise ValueError(f"{value!r} is not a valid RFC 3339 time: a field is out of range")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        seconds -= sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return seconds * _NS_PER_S + (int(fraction.ljust(9, "0")) if fraction else 0)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts and lists copied; scalars shared, being immutable)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value
