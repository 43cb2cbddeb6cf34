"""The engine's side of one evaluation's JSON: task facts in, OPA's result set out.

``result_from_json`` checks that the entrypoint produced an object whose
``subtasks``, ``dag`` and ``rules`` are lists of objects (a missing key is an
empty list, an undefined decision the empty result) and says which entrypoint
broke the contract otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from evaluator_sidecar.policy.engines.base import EngineResult
from evaluator_sidecar.policy.engines.wasm.fallback import empty_result
from evaluator_sidecar.policy.errors import EvaluationError

__all__ = ["json_slow", "result_from_json"]


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
