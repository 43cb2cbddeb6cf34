"""How the conformance runner compares results: as OPA's own wasm harness does.

Split from ``opa_conformance`` (which builds and runs the cases) so that each stays
small: OPA's value order, an exact hashable form of values (``1 == 1.0``, ``true !=
1``), YAML numbers made plain for the engine, and the result-set comparison.
"""

from __future__ import annotations

import decimal
import functools
import json
from typing import Any

__all__ = ["compare_result_set", "freeze", "opa_compare", "short", "to_plain"]


def opa_compare(a: Any, b: Any) -> int:
    """OPA's total order on values (the engine's own, used to sort sets)."""
    from evaluator_sidecar.policy.engines.wasm.result import opa_compare as compare  # noqa: PLC0415

    return compare(a, b)


def freeze(v: Any) -> Any:
    """A hashable form equal exactly when OPA's values are equal (1 == 1.0, true != 1)."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, dict):
        return ("o", frozenset((k, freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("a", tuple(freeze(x) for x in v))
    if isinstance(v, (int, float, decimal.Decimal)):
        return ("n", decimal.Decimal(v) if not isinstance(v, decimal.Decimal) else v)
    if v is None:
        return ("z",)
    return ("s", v)


def to_plain(v: Any) -> Any:
    """The value with exact YAML numbers as int/float, for the engine's JSON encoder."""
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() and abs(v) < 2**63 else float(v)
    if isinstance(v, dict):
        return {_json_key(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_plain(x) for x in v]
    return v


def _json_key(k: Any) -> str:
    """A YAML key as OPA's YAML-to-JSON conversion writes it (``1`` -> ``"1"``)."""
    if isinstance(k, bool):
        return "true" if k else "false"
    return k if isinstance(k, str) else str(to_plain(k))


def _normalize_numbers(v: Any) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, float):
        return decimal.Decimal(repr(v))
    if isinstance(v, dict):
        return {str(k): _normalize_numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_normalize_numbers(x) for x in v]
    return v


def compare_result_set(
    want: list[dict[str, Any]], got: list[Any], sort_bindings: bool
) -> str | None:
    """None when equal as OPA's harness sees it, else a description of the difference."""
    exp = {freeze(_normalize_numbers(b)) for b in want}
    got_set = set()
    for raw in got:
        binding = raw
        if sort_bindings:
            binding = {
                k: sorted(v, key=functools.cmp_to_key(opa_compare)) if isinstance(v, list) else v
                for k, v in raw.items()
            }
        got_set.add(freeze(binding))
    if exp == got_set:
        return None
    return f"expected {short(want)} but got {short(got)}"


def short(v: Any, limit: int = 400) -> str:
    """``v`` as JSON, cut at ``limit`` characters (for failure messages)."""
    text = json.dumps(v, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."
