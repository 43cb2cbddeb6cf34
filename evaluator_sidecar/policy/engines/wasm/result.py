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
from collections.abc import Mapping
from typing import Any

import orjson

from evaluator_sidecar.policy.engines.base import EngineResult
from evaluator_sidecar.policy.engines.wasm.fallback import empty_result
from evaluator_sidecar.policy.engines.wasm.gofmt_operands import rego_text
from evaluator_sidecar.policy.engines.wasm.values import (
    RegoBigNumber,
    RegoFloat,
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
    "opa_compare",
    "result_from_json",
]


def result_from_json(raw: bytes, entrypoint: str) -> EngineResult:
    """The engine result from OPA's JSON result set (``[]`` or ``[{"result": {...}}]``)."""
    result_set = orjson.loads(raw)
    if result_set.__class__ is not list:
        raise EvaluationError(f"entrypoint {entrypoint!r} returned {raw[:80]!r}, not a result set")
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
        value = parse_rego(raw.decode("utf-8", "surrogatepass"))
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


def canonical(value: Any) -> Any:
    """A parsed Rego value as JSON-like Python: sets sorted into lists, keys sorted."""
    if isinstance(value, RegoSet):
        return [canonical(v) for v in sorted_set(value)]
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        keys = sorted(value, key=_ORDER)
        return {(k if isinstance(k, str) else rego_text(k)): canonical(value[k]) for k in keys}
    if isinstance(value, (RegoFloat, RegoBigNumber)):
        return decimal.Decimal(value.text)
    return value


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
