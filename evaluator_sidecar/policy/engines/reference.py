"""The reference interpreter: the native rule language evaluated the slow, obvious way.

It walks the snapshot's raw rule dicts on every call: sorts the rules, reads
each condition's value text, parses lists and numbers, compiles patterns,
merges params and builds the DAG, exactly as docs/rule-language.md reads. It
exists to check the compiled engine (a property test runs both on generated
rules and facts) and as the benchmark's baseline; it is not registered as an
engine.

It shares only the value primitives (``native.values``) and the load-time
checks (``native.loader.load_rules``, so that both accept the same snapshots);
matching, ordering, merging and DAG building are its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import re2  # type: ignore[import-untyped]

from evaluator_sidecar.policy.engines.base import EngineResult
from evaluator_sidecar.policy.engines.native.loader import load_rules
from evaluator_sidecar.policy.engines.native.values import (
    as_number,
    list_items,
    parse_number_text,
    parse_operand,
    timestamp_ns,
    value_text,
    values_equal,
)
from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = ["ReferenceEngine"]


def _compare(op: str, left: float, right: float) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == ">=":
        return left >= right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left < right


def _search(pattern: str, text: str) -> bool:
    return re2.search(pattern, text) is not None


def _value_holds(op: str, actual: Any, text: str | None) -> bool:
    """One VALUE-style test of a present, non-null value against the condition's text."""
    if op == "EXISTS":
        return True
    assert text is not None
    if op == "MATCHES":
        return isinstance(actual, str) and _search(text, actual)
    if op == "IN":
        return any(values_equal(actual, item) for item in list_items(text) if item is not None)
    if op in (">=", "<=", ">", "<"):
        left = as_number(actual)
        right = parse_number_text(text)
        return left is not None and right is not None and _compare(op, left, right)
    equal = values_equal(actual, parse_operand(text))
    return equal if op == "=" else not equal


class ReferenceEngine:
    """Interprets a snapshot's rules directly on every call."""

    def __init__(self, snapshot: PKGSnapshotData) -> None:
        self._snapshot = snapshot

    @classmethod
    def from_snapshot(cls, snapshot: PKGSnapshotData) -> ReferenceEngine:
        """Accept exactly the snapshots the compiled engine accepts (same load checks)."""
        load_rules(snapshot)
        return cls(snapshot)

    @property
    def degraded(self) -> bool:
        """Never degraded."""
        return False

    # -- conditions -------------------------------------------------------------------

    def _now(self, task_facts: Mapping[str, Any]) -> int:
        given = task_facts.get("now")
        return time.time_ns() if given is None else timestamp_ns(given)

    def _valid_facts(self, task_facts: Mapping[str, Any], now: int) -> list[Mapping[str, Any]]:
        valid = []
        for fact in [*self._snapshot.facts, *(task_facts.get("facts") or [])]:
            start = fact.get("valid_from")
            end = fact.get("valid_to")
            if start is not None and timestamp_ns(start) > now:
                continue
            if end is not None and now >= timestamp_ns(end):
                continue
            valid.append(fact)
        return valid

    def _holds(self, condition: Mapping[str, Any], task_facts: Mapping[str, Any], now: int) -> bool:
        ctype = condition["condition_type"]
        op = condition["operator"]
        key = condition.get("condition_key") or ""
        text = value_text(condition.get("value"))
        if ctype == "TAG":
            tags = list(task_facts.get("tags") or [])
            if op == "EXISTS":
                return key in tags
            assert text is not None
            if op == "=":
                return text in tags
            if op == "!=":
                return text not in tags
            if op == "IN":
                return any(value_text(item) in tags for item in list_items(text))
            return any(_search(text, tag) for tag in tags)
        if ctype == "SIGNAL":
            signals = task_facts.get("signals") or {}
            if key not in signals:
                return False
            if op == "EXISTS":
                return True
            assert text is not None
            if op == "IN":
                return any(signals[key] == as_number(item) for item in list_items(text))
            number = parse_number_text(text)
            assert number is not None
            return _compare(op, signals[key], number)
        if ctype == "VALUE":
            current: Any = task_facts
            for segment in key.split("."):
                current = current.get(segment) if isinstance(current, Mapping) else None
            if current is None:
                return False
            return _value_holds(op, current, text)
        # FACT
        subject, _, predicate = key.rpartition(" ")
        objects = [
            fact.get("object")
            for fact in self._valid_facts(task_facts, now)
            if fact["predicate"] == predicate and (not subject or fact["subject"] == subject)
        ]
        if op == "EXISTS":
            return bool(objects)
        if op == "!=":
            return not any(obj is not None and _value_holds("=", obj, text) for obj in objects)
        return any(obj is not None and _value_holds(op, obj, text) for obj in objects)

    # -- evaluation -------------------------------------------------------------------

    def evaluate(self, task_facts: Mapping[str, Any]) -> EngineResult:
        """``{"subtasks", "dag", "rules"}`` by direct interpretation."""
        now = self._now(task_facts)
        defaults_by_type = {
            entry["name"]: entry.get("default_params") or {}
            for entry in self._snapshot.subtask_types
        }
        rules = [rule for rule in self._snapshot.rules if not rule.get("disabled")]
        rules.sort(key=lambda r: (-(r.get("priority") or 0), r["rule_name"], r["rule_id"]))
        subtasks: list[dict[str, Any]] = []
        dag: list[dict[str, Any]] = []
        matched: list[dict[str, Any]] = []
        for rule in rules:
            conditions = list(enumerate(rule.get("conditions") or []))
            conditions.sort(key=lambda ic: (_position(ic[1], ic[0]), ic[0]))
            if not all(self._holds(c, task_facts, now) for _, c in conditions):
                continue
            emissions = list(enumerate(rule.get("emissions") or []))

            emissions.sort(
                key=lambda ie: (
                    _position(ie[1], ie[0]),
                    ie[1].get("subtask_name") or ie[1]["subtask_type"],
                    ie[0],
                )
            )
            names: list[str] = []
            kinds: list[str] = []
            for _, emission in emissions:
                name = emission.get("subtask_name") or emission["subtask_type"]
                if "default_params" in emission and emission["default_params"] is not None:
                    defaults = emission["default_params"]
                else:
                    defaults = defaults_by_type.get(emission["subtask_type"], {})
                params = _deep_copy({**defaults, **(emission.get("params") or {})})
                subtasks.append(
                    {
                        "name": name,
                        "type": emission["subtask_type"],
                        "params": params,
                        "rule_id": rule["rule_id"],
                        "rule_name": rule["rule_name"],
                    }
                )
                names.append(name)
                kinds.append(emission.get("relationship_type") or "EMITS")
            for j in range(len(names)):
                for g in range(j):
                    if kinds[g] == "GATE":
                        dag.append(
                            {
                                "from": names[g],
                                "to": names[j],
                                "type": "gate",
                                "rule": rule["rule_id"],
                            }
                        )
                if kinds[j] == "ORDERS" and j > 0:
                    dag.append(
                        {
                            "from": names[j - 1],
                            "to": names[j],
                            "type": "sequential",
                            "rule": rule["rule_id"],
                        }
                    )
            matched.append(
                {
                    "rule_id": rule["rule_id"],
                    "rule_name": rule["rule_name"],
                    "rule_priority": rule.get("priority") or 0,
                    "matched_conditions": len(conditions),
                    "emissions_count": len(emissions),
                }
            )
        return {"subtasks": subtasks, "dag": dag, "rules": matched}


def _position(item: Mapping[str, Any], index: int) -> int:
    position = item.get("position")
    return index if position is None else int(position)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
