"""The engine's side of one evaluation's JSON: task facts in, OPA's result set out.

``result_from_json`` checks that the entrypoint produced an object whose
``subtasks``, ``dag`` and ``rules`` are lists of objects (a missing key is an
empty list, an undefined decision the empty result) and says which entrypoint
broke the contract otherwise.
"""

from __future__ import annotations

import decimal
import functools
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from evaluator_sidecar.policy.engines.base import EngineResult
from evaluator_sidecar.policy.engines.wasm.fallback import empty_result
from evaluator_sidecar.policy.engines.wasm.gofmt_operands import rego_text
from evaluator_sidecar.policy.engines.wasm.values import (
    RegoBigNumber,
    RegoFloat,
    RegoKey,
    RegoSet,
    RegoValueError,
    parse_rego,
)
from evaluator_sidecar.policy.errors import EvaluationError

__all__ = [
    "ResultFormatError",
    "canonical",
    "decode_result_set",
    "json_result_set",
    "json_slow",
    "load_result_set",
    "opa_compare",
    "result_from_json",
    "result_from_value",
]


def result_from_json(raw: bytes, entrypoint: str) -> EngineResult:
    """The engine result from OPA's JSON result set (``[]`` or ``[{"result": {...}}]``).

    JSON keeps sets in the module's internal order: the engine reads the value
    format instead (:func:`result_from_value`); this stays for JSON produced elsewhere.
    """
    result_set = orjson.loads(raw)
    if result_set.__class__ is not list:
        raise EvaluationError(f"entrypoint {entrypoint!r} returned {raw[:80]!r}, not a result set")
    return _engine_result(result_set, entrypoint)


def result_from_value(raw: bytes, entrypoint: str) -> EngineResult:
    """The engine result from ``opa_eval``'s value format, in OPA's canonical form.

    Sets become lists sorted in OPA's order (as OPA's SDKs return them);
    integers stay exact at any size; other numbers are floats, except those
    beyond a double's range, which stay exact as ``Decimal`` (OPA keeps their text).
    """
    return _engine_result(load_result_set(raw, entrypoint), entrypoint)


#: A digit run orjson would read inexactly (an integer beyond 64 bits, a long fraction).
_LONG_NUMBER = re.compile(rb"-[0-9]{19}|[0-9]{20}")


def load_result_set(raw: bytes, entrypoint: str) -> list[Any]:
    """A value-format result set as a list of results (sets sorted, numbers as OPA keeps them).

    The common case (one result, no set, no long number) is JSON inside the
    result set's braces and goes through orjson; anything else through the Rego parser.
    """
    if raw == b"set()":
        return []
    if raw[:1] == b"[":
        # A JSON result set: a module that answers in JSON whatever the format asked
        # (there are no sets in JSON to sort).
        return _json_list(raw, entrypoint)
    if raw[:2] == b"{{" and raw[-2:] == b"}}" and _LONG_NUMBER.search(raw) is None:
        try:
            single = orjson.loads(raw[1:-1])
        except orjson.JSONDecodeError:
            single = None  # a set, a composite key, 2e308 or several results: parse below
        if single.__class__ is dict:
            return [single]
    try:
        value = parse_rego(raw.decode("utf-8", "surrogatepass"), composite_keys=True)
    except (RegoValueError, UnicodeDecodeError) as exc:
        raise EvaluationError(
            f"entrypoint {entrypoint!r} returned {raw[:80]!r}, not a result set: {exc}"
        ) from None
    if not isinstance(value, RegoSet):
        raise EvaluationError(f"entrypoint {entrypoint!r} returned {raw[:80]!r}, not a result set")
    return [canonical(v, exact_floats=False) for v in sorted_set(value)]


def _json_list(raw: bytes, entrypoint: str) -> list[Any]:
    try:
        value = (
            orjson.loads(raw)
            if _LONG_NUMBER.search(raw) is None
            else json.loads(raw, parse_float=_float_or_decimal)
        )
    except ValueError:
        value = None
    if value.__class__ is not list:
        raise EvaluationError(f"entrypoint {entrypoint!r} returned {raw[:80]!r}, not a result set")
    return value


def _float_or_decimal(text: str) -> float | decimal.Decimal:
    value = float(text)
    return value if math.isfinite(value) else decimal.Decimal(text)


def _engine_result(result_set: list[Any], entrypoint: str) -> EngineResult:
    if not result_set:
        return empty_result()
    first = result_set[0]
    value = first.get("result") if first.__class__ is dict else None
    if value.__class__ is not dict:
        raise EvaluationError(
            f"entrypoint {entrypoint!r} returned {type(value).__name__}, not an object with "
            "'subtasks', 'dag' and 'rules'; point spec.wasm.entrypoint at the rule that "
            "builds that object"
        )
    subtasks = value.get("subtasks", _NONE)
    dag = value.get("dag", _NONE)
    rules = value.get("rules", _NONE)
    for key, items in (("subtasks", subtasks), ("dag", dag), ("rules", rules)):
        if items.__class__ is not list:
            raise EvaluationError(f"entrypoint {entrypoint!r} returned {key!r} that is not a list")
        for item in items:
            if item.__class__ is not dict:
                raise EvaluationError(
                    f"entrypoint {entrypoint!r} returned {key!r} with an item that is not an object"
                )
    # A missing key is an empty list; each result gets its own.
    return {
        "subtasks": subtasks if subtasks is not _NONE else [],
        "dag": dag if dag is not _NONE else [],
        "rules": rules if rules is not _NONE else [],
    }


def decode_result_set(raw: bytes) -> list[Any]:
    """OPA's result set from ``opa_eval``'s value format, in OPA's canonical form.

    Sets become lists sorted in OPA's order (as OPA's SDKs return them), object
    keys are sorted, and numbers with a fraction or exponent become ``Decimal``,
    which keeps what a double cannot (``2e308``), as OPA keeps such numbers.
    """
    try:
        value = parse_rego(raw.decode("utf-8", "surrogatepass"), composite_keys=True)
    except (RegoValueError, UnicodeDecodeError) as exc:
        raise ResultFormatError(
            f"the policy returned {raw[:80]!r}, not a result set this engine reads: {exc}"
        ) from None
    if isinstance(value, RegoSet):
        return [canonical(v) for v in sorted_set(value)]
    raise EvaluationError(f"the policy returned {raw[:80]!r}, not a result set")


class ResultFormatError(EvaluationError):
    """The value-format result has a value Python cannot hold (a composite object key)."""


def json_result_set(raw: bytes) -> list[Any]:
    """OPA's JSON result set (composite object keys written as JSON text), numbers exact."""
    value = json.loads(raw, parse_float=decimal.Decimal)
    if not isinstance(value, list):
        raise EvaluationError(f"the policy returned {raw[:80]!r}, not a result set")
    return value


def canonical(value: Any, *, exact_floats: bool = True) -> Any:
    """A parsed Rego value as JSON-like Python: sets sorted into lists, keys sorted.

    Object keys that are not strings become their JSON text, as OPA writes them
    (``[1,"a"]``; a set key as its sorted array). Numbers with a fraction or
    exponent become ``Decimal`` (``exact_floats``) or ``float`` (then only
    those beyond a double's range stay ``Decimal``).
    """
    if isinstance(value, RegoSet):
        return [canonical(v, exact_floats=exact_floats) for v in sorted_set(value)]
    if isinstance(value, list):
        return [canonical(v, exact_floats=exact_floats) for v in value]
    if isinstance(value, dict):
        keys = sorted(value, key=_ORDER)
        return {_key_text(k): canonical(value[k], exact_floats=exact_floats) for k in keys}
    if isinstance(value, RegoBigNumber) or (exact_floats and isinstance(value, RegoFloat)):
        return decimal.Decimal(value.text)
    if isinstance(value, RegoFloat):
        return float(value)
    return value


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (RegoSet, RegoKey)):
        return _json_text(key)
    return rego_text(key)


def _json_text(value: Any) -> str:
    """Compact JSON of a Rego value, sets as sorted arrays (how OPA writes composite keys)."""
    if isinstance(value, RegoKey):
        return _json_text(value.value)
    if isinstance(value, (RegoSet, list)):
        items = sorted_set(value) if isinstance(value, RegoSet) else value
        return "[" + ",".join(_json_text(v) for v in items) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=_ORDER)
        pairs = (f"{_json_text(_key_text(k))}:{_json_text(value[k])}" for k in keys)
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return rego_text(value)


def sorted_set(value: RegoSet) -> list[Any]:
    return sorted(value, key=_ORDER)


def _rank(v: Any) -> int:  # noqa: PLR0911 - one return per type, in OPA's type order
    if v is None:
        return 0
    if isinstance(v, bool):
        return 1
    if isinstance(v, (int, float, decimal.Decimal, RegoBigNumber)):
        return 2
    if isinstance(v, str):
        return 3
    if isinstance(v, list):
        return 4
    if isinstance(v, dict):
        return 5
    return 6


def _num(v: Any) -> Any:
    if isinstance(v, (RegoFloat, RegoBigNumber)):
        return decimal.Decimal(v.text)
    return v


def opa_compare(a: Any, b: Any) -> int:  # noqa: PLR0911 - one branch per type
    """OPA's total order on values (``ast.Compare``): by type, then by value."""
    a = a.value if isinstance(a, RegoKey) else a
    b = b.value if isinstance(b, RegoKey) else b
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 0:
        return 0
    if ra == 2:
        x, y = _num(a), _num(b)
        return int((x > y) - (x < y))
    if ra in (1, 3):
        return int((a > b) - (a < b))
    if ra == 5:
        ka, kb = sorted(a, key=_ORDER), sorted(b, key=_ORDER)
        for x, y in zip(ka, kb, strict=False):
            c = opa_compare(x, y) or opa_compare(a[x], b[y])
            if c:
                return c
        return (len(ka) > len(kb)) - (len(ka) < len(kb))
    xs, ys = (a, b) if ra == 4 else (sorted_set(a), sorted_set(b))
    for x, y in zip(xs, ys, strict=False):
        c = opa_compare(x, y)
        if c:
            return c
    return (len(xs) > len(ys)) - (len(xs) < len(ys))


_ORDER = functools.cmp_to_key(opa_compare)


def json_slow(task_facts: Mapping[str, Any]) -> bytes:
    """JSON for what orjson refuses but JSON allows (integers beyond 64 bits)."""
    try:
        return json.dumps(
            task_facts, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"task facts cannot be written as JSON: {exc}") from None


#: Stands for a missing key (an empty list; never handed out, so never mutated).
_NONE: list[Any] = []
