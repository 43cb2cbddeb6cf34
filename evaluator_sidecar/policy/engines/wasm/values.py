"""Rego values as text: what ``opa_value_dump`` writes and ``opa_value_parse`` reads.

Host builtins receive their arguments from the policy as OPA values and must
hand back an OPA value. The module's own serializer is the boundary: it dumps
a value as Rego text (JSON plus set literals ``{1, 2}`` and ``set()``, and
object keys that need not be strings) and parses such text back. This module
converts that text to Python values and back, without I/O:

* sets become :class:`RegoSet` (an ordered, immutable sequence: OPA keeps set
  elements sorted, and elements may be unhashable lists or objects);
* numbers written without ``.``, ``e`` or ``E`` become ``int`` (any size),
  others :class:`RegoFloat`, a ``float`` that remembers the text it was read
  from. The distinction matters: OPA formats ``1.0`` as a float, and prints a
  number inside a composite value exactly as written (``1.50``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

__all__ = [
    "RegoBigNumber",
    "RegoFloat",
    "RegoKey",
    "RegoSet",
    "RegoValueError",
    "dump_rego",
    "float_text",
    "parse_rego",
]


class RegoValueError(ValueError):
    """Text that is not a Rego value, or a Python value with no Rego form."""


class RegoFloat(float):
    """A float read from Rego text, with that text (``1.50`` stays ``1.50`` when written back)."""

    text: str

    def __new__(cls, text: str) -> RegoFloat:
        value = super().__new__(cls, text)
        if not math.isfinite(value):
            raise RegoValueError(f"number {text!r} is out of the range of a double")
        value.text = text
        return value


class RegoBigNumber:
    """A number beyond a double's range (``2e308``): OPA keeps its text, and so does the engine.

    Builtins that need a number refuse it (their call is undefined); ``sprintf``
    formats it as its text, as OPA does.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegoBigNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RegoBigNumber({self.text!r})"


class RegoSet:
    """A Rego set: an immutable sequence of distinct values, in OPA's order."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        unique: list[Any] = []
        for item in items:
            if item not in unique:
                unique.append(item)
        self._items = tuple(unique)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegoSet):
            return NotImplemented
        return len(self._items) == len(other._items) and all(x in other._items for x in self._items)

    def __hash__(self) -> int:
        return hash(len(self._items))

    def __repr__(self) -> str:
        return f"RegoSet({list(self._items)!r})"


class RegoKey:
    """An object key that is itself an array or object (Rego allows them; Python dicts do not).

    Only results are read with such keys (``parse_rego(..., composite_keys=True)``);
    builtin operands with them stay unreadable (the call is undefined).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegoKey) and other.value == self.value

    def __hash__(self) -> int:
        return hash((type(self.value).__name__, len(self.value)))

    def __repr__(self) -> str:
        return f"RegoKey({self.value!r})"


_WS = " \t\r\n"
_NUMBER_CHARS = frozenset("0123456789+-.eE")


class _Parser:
    def __init__(self, text: str, *, composite_keys: bool = False) -> None:
        self.text = text
        self.pos = 0
        self.composite_keys = composite_keys

    def fail(self, what: str) -> RegoValueError:
        return RegoValueError(f"{what} at offset {self.pos} in Rego value {self.text[:80]!r}")

    def skip(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def value(self) -> Any:
        char = self.peek()
        if char == "{":
            return self.brace()
        if char == "[":
            self.pos += 1
            items: list[Any] = []
            if self.peek() == "]":
                self.pos += 1
                return items
            while True:
                items.append(self.value())
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.expect("]")
                return items
        if char == '"':
            return self.string()
        for word, result in (("null", None), ("true", True), ("false", False)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return result
        if self.text.startswith("set()", self.pos):
            self.pos += 5
            return RegoSet()
        if char and char in _NUMBER_CHARS:
            return self.number()
        raise self.fail("expected a value")

    def brace(self) -> Any:
        self.expect("{")
        if self.peek() == "}":
            self.pos += 1
            return {}
        first = self.value()
        if self.peek() == ":":
            obj: dict[Any, Any] = {}
            key = first
            while True:
                self.expect(":")
                if self.composite_keys and isinstance(key, (list, dict)):
                    key = RegoKey(key)
                try:
                    obj[key] = self.value()
                except TypeError:
                    raise self.fail("object key that is a collection is not supported") from None
                if self.peek() != ",":
                    self.expect("}")
                    return obj
                self.pos += 1
                key = self.value()
        items = [first]
        while self.peek() == ",":
            self.pos += 1
            items.append(self.value())
        self.expect("}")
        return RegoSet(items)

    def string(self) -> str:
        start = self.pos
        pos = start + 1
        text = self.text
        while True:
            end = text.find('"', pos)
            if end < 0:
                raise self.fail("unterminated string")
            backslashes = 0
            back = end - 1
            while text[back] == "\\":
                backslashes += 1
                back -= 1
            if backslashes % 2 == 0:
                break
            pos = end + 1
        self.pos = end + 1
        try:
            return str(json.loads(text[start : end + 1]))
        except ValueError as exc:
            raise self.fail(f"invalid string ({exc})") from None

    def number(self) -> int | RegoFloat | RegoBigNumber:
        start = self.pos
        text = self.text
        pos = start
        while pos < len(text) and text[pos] in _NUMBER_CHARS:
            pos += 1
        raw = text[start:pos]
        self.pos = pos
        try:
            if any(c in raw for c in ".eE"):
                if not math.isfinite(float(raw)):
                    return RegoBigNumber(raw)
                return RegoFloat(raw)
            return int(raw)
        except RegoValueError:
            raise
        except ValueError:
            raise self.fail(f"invalid number {raw!r}") from None


def parse_rego(text: str, *, composite_keys: bool = False) -> Any:
    """Parse one Rego value as ``opa_value_dump`` writes it.

    ``composite_keys`` reads array and object keys as :class:`RegoKey` (else they fail).
    """
    if text[:1] == '"' and text[-1:] == '"':
        # The common case of a builtin operand: one string, which is JSON.
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(value, str):
                return value
    parser = _Parser(text, composite_keys=composite_keys)
    result = parser.value()
    if parser.peek():
        raise parser.fail("trailing characters")
    return result


def dump_rego(value: Any) -> str:
    """Write ``value`` as Rego text ``opa_value_parse`` reads (JSON plus set literals)."""
    parts: list[str] = []
    _dump(value, parts)
    return "".join(parts)


def _dump(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, (RegoFloat, RegoBigNumber)):
        out.append(value.text)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RegoValueError(f"{value!r} is not a Rego number")
        out.append(float_text(value))
    elif isinstance(value, str):
        try:
            out.append(orjson.dumps(value).decode("utf-8"))
        except TypeError:  # lone surrogates: orjson refuses them, json escapes them
            out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, RegoSet):
        if not len(value):
            out.append("set()")
            return
        out.append("{")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            _dump(key, out)
            out.append(":")
            _dump(item, out)
        out.append("}")
    else:
        raise RegoValueError(f"{type(value).__name__} has no Rego form")


def float_text(value: float) -> str:
    """A float as a JSON number; integral floats keep their fraction (``2.0``), like OPA."""
    text = repr(value)
    return text if any(c in text for c in ".eE") else text + ".0"
