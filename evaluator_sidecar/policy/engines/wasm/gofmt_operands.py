"""What OPA hands Go's ``fmt.Sprintf`` for each Rego value, and Rego's text of values.

An ``int64`` for integer numbers that fit, a ``*big.Int`` (:class:`BigInt`) for
larger ones, a ``float64`` for numbers written with a fraction or exponent, the
string itself for strings, and the Rego text of any other value (``[1, "a"]``,
``{"k": 1}``, ``set()``) as OPA's ``Value.String()`` writes it, keys and set
elements in OPA's order of values.
"""

from __future__ import annotations

from typing import Any

from evaluator_sidecar.policy.engines.wasm.gostrconv import GoFormatError, go_quote
from evaluator_sidecar.policy.engines.wasm.values import RegoBigNumber, RegoSet

__all__ = ["BigInt", "rego_text", "sprintf_operand"]


_INT64_MIN = -(1 << 63)


_INT64_MAX = (1 << 63) - 1


class BigInt(int):
    """An integer outside int64: Go formats it as ``*big.Int``."""


def sprintf_operand(value: Any) -> Any:
    """The Go operand OPA makes of one Rego value: int, BigInt, float or str."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, RegoSet)):
        return rego_text(value)
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else BigInt(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, RegoBigNumber):
        # OPA passes a number a double cannot hold as its text (sprintf("%v", [2e308]) is "2e308").
        return value.text
    raise GoFormatError(f"no sprintf operand for {type(value).__name__}")


def rego_text(value: Any) -> str:
    """A Rego value as OPA's ``Value.String()`` writes it (keys and set elements sorted)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, RegoBigNumber):
        return value.text
    if isinstance(value, float):
        text = getattr(value, "text", None)
        return text if isinstance(text, str) else _shortest_json_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, RegoSet):
        if not len(value):
            return "set()"
        return "{" + ", ".join(rego_text(v) for v in sorted(value, key=_RegoKey)) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(rego_text(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=_RegoKey)
        return "{" + ", ".join(f"{rego_text(k)}: {rego_text(value[k])}" for k in keys) + "}"
    raise GoFormatError(f"no Rego text for {type(value).__name__}")


def _shortest_json_float(value: float) -> str:
    text = repr(value)
    return text if any(c in text for c in ".eE") else text + ".0"


class _RegoKey:
    """Sort key in OPA's order of values: null, bool, number, string, array, object, set."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _RegoKey) -> bool:
        return _rego_compare(self.value, other.value) < 0


def _rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, list):
        return 4
    if isinstance(value, dict):
        return 5
    return 6


def _rego_compare(a: Any, b: Any) -> int:
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra in (1, 2):
        return int(a > b) - int(a < b)
    if ra == 3:
        ab, bb = a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
        return int(ab > bb) - int(ab < bb)
    if ra == 4:
        for x, y in zip(a, b, strict=False):
            c = _rego_compare(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 5:
        ka, kb = sorted(a, key=_RegoKey), sorted(b, key=_RegoKey)
        for x, y in zip(ka, kb, strict=False):
            c = _rego_compare(x, y) or _rego_compare(a[x], b[y])
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    if ra == 6:
        sa, sb = sorted(a, key=_RegoKey), sorted(b, key=_RegoKey)
        return _rego_compare(sa, sb)
    return 0
