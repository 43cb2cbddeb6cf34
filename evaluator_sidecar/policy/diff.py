"""Whether two decisions differ, and where: the shadow step's and ``pkg replay``'s measure.

Two answers of ``PKGEvaluator.evaluate`` make the same decision when their
``subtasks``, ``dag`` and matched ``rules`` are equal; the ``snapshot`` field (the
version that answered) is left out, since it always differs between a candidate
and the active snapshot. An answer that is an error (``{"error": ...}``) differs
from any decision in all three parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["DECISION_PARTS", "decision_diff", "example_fingerprint"]

DECISION_PARTS = ("subtasks", "dag", "rules")


def decision_diff(active: Mapping[str, Any], candidate: Mapping[str, Any]) -> tuple[str, ...]:
    """The parts (subtasks, dag, rules) in which ``candidate`` decides otherwise; () if none."""
    return tuple(part for part in DECISION_PARTS if active.get(part) != candidate.get(part))


def example_fingerprint(candidate_version: str, task_facts: Any) -> str:
    """A short stable id of one example input for one candidate (stored once)."""
    digest = hashlib.sha256(candidate_version.encode())
    digest.update(orjson.dumps(task_facts, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:24]
