"""Table rows back into the evaluator's rule form, and the dict forms hashing shares.

``assemble_rules`` rebuilds a snapshot's rules from its rule, condition, emission
and subtask type rows, each emission carrying ``default_params`` (its own, else
its subtask type's). ``rule_to_dict`` and ``fact_to_dict`` are the one dict form
of a rule and a fact: what a read returns and what ``content_sha256`` hashes
when a snapshot is stored. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from evaluator_sidecar.store.snapshot_rows import (
    ConditionRow,
    EmissionRow,
    FactRow,
    Row,
    RuleRow,
    format_timestamp,
)

__all__ = ["assemble_rules", "fact_to_dict", "rule_to_dict"]


def rule_to_dict(
    rule: RuleRow, type_defaults: Mapping[str, dict[str, Any]] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_id": rule.rule_id,
        "rule_name": rule.rule_name,
        "priority": rule.priority,
        "disabled": rule.disabled,
    }
    if rule.rule_source is not None:
        out["rule_source"] = rule.rule_source
    out["conditions"] = [
        {
            "condition_type": c.condition_type,
            "condition_key": c.condition_key,
            "operator": c.operator,
            "value": c.value,
            "position": c.position,
        }
        for c in rule.conditions
    ]
    emissions = []
    for e in rule.emissions:
        emission: dict[str, Any] = {
            "subtask_type": e.subtask_type,
            "subtask_name": e.subtask_name,
            "relationship_type": e.relationship_type,
            "params": e.params,
            "position": e.position,
        }
        if type_defaults is None:
            emission["default_params"] = e.default_params
        else:
            emission["default_params"] = (
                e.default_params
                if e.default_params is not None
                else dict(type_defaults.get(e.subtask_type, {}))
            )
        emissions.append(emission)
    out["emissions"] = emissions
    return out


def assemble_rules(
    rules: Iterable[Row],
    conditions: Iterable[Row],
    emissions: Iterable[Row],
    subtask_types: Iterable[Row],
) -> list[dict[str, Any]]:
    """The evaluator's rule form from table rows.

    ``rules`` rows have id, rule_id, rule_name, priority, disabled, rule_source
    (in stored order); ``conditions`` and ``emissions`` rows have ``rule``
    (the rule's id) and their columns, emissions with ``subtask_type`` (the
    type's name); ``subtask_types`` rows have name and default_params. Rules
    keep their order; conditions and emissions are ordered by position, then
    as stored.
    """
    by_rule_c: dict[Any, list[ConditionRow]] = {}
    for c in conditions:
        by_rule_c.setdefault(c["rule"], []).append(
            ConditionRow(
                c["condition_type"], c["condition_key"], c["operator"], c["value"], c["position"]
            )
        )
    by_rule_e: dict[Any, list[EmissionRow]] = {}
    for e in emissions:
        by_rule_e.setdefault(e["rule"], []).append(
            EmissionRow(
                e["subtask_type"],
                e["subtask_name"],
                e["relationship_type"],
                dict(e["params"] or {}),
                e["position"],
                dict(e["default_params"]) if e["default_params"] is not None else None,
            )
        )
    defaults = {t["name"]: dict(t["default_params"] or {}) for t in subtask_types}
    assembled = []
    for index, r in enumerate(rules):
        row = RuleRow(
            rule_id=r["rule_id"],
            rule_name=r["rule_name"],
            priority=r["priority"],
            disabled=r["disabled"],
            rule_source=r["rule_source"],
            position=index,
            # sorted() is stable: equal positions keep their stored order.
            conditions=tuple(sorted(by_rule_c.get(r["id"], []), key=lambda c: c.position)),
            emissions=tuple(sorted(by_rule_e.get(r["id"], []), key=lambda e: e.position)),
        )
        assembled.append(rule_to_dict(row, defaults))
    return assembled


def fact_to_dict(fact: FactRow | Row) -> dict[str, Any]:
    """A fact in the snapshot's form: subject, predicate, object, and the bounds it has."""
    if isinstance(fact, FactRow):
        subject, predicate, obj = fact.subject, fact.predicate, fact.object
        start, end = fact.valid_from, fact.valid_to
    else:
        subject, predicate, obj = fact["subject"], fact["predicate"], fact["object"]
        start, end = fact["valid_from"], fact["valid_to"]
    out: dict[str, Any] = {"subject": subject, "predicate": predicate, "object": obj}
    if start is not None:
        out["valid_from"] = format_timestamp(start)
    if end is not None:
        out["valid_to"] = format_timestamp(end)
    return out
