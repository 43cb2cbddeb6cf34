"""Checking and normalising a snapshot's native rules: the load step both engines share.

``load_rules`` reads the rule form of ``PKGSnapshotData`` (typed YAML values or
the database's text values), reports every problem at once as one
``SnapshotLoadError`` (each naming the rule and the field), and otherwise
returns a ``LoadedSnapshot``: rules in evaluation order with their conditions
parsed (numbers, lists, RE2 patterns, paths, fact keys), emissions ordered and
their params merged with the subtask types' defaults, the DAG edges each rule
produces, and the snapshot's facts with their validity windows in nanoseconds.

The compiled engine generates code from this; the reference interpreter uses it
only to accept or reject a snapshot and works from the raw rules itself.
Semantics of the checks: docs/rule-language.md ("Load-time checks").

This module reads rules, emissions, subtask types and facts and puts the load
together; ``conditions`` checks and parses one condition, ``dag`` builds and
checks the edges, ``loaded`` holds the result's types. Every name this module
exported before that split is still importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.engines.native.conditions import (
    Problems,
    is_int,
    parse_condition,
    split_fact_key,
)
from evaluator_sidecar.policy.engines.native.dag import check_acyclic, rule_edges
from evaluator_sidecar.policy.engines.native.loaded import (
    COMPARISONS,
    CONDITION_TYPES,
    OPERATORS,
    RELATIONSHIPS,
    SUPPORTED_OPERATORS,
    Condition,
    Edge,
    Emission,
    Fact,
    LoadedSnapshot,
    Rule,
)
from evaluator_sidecar.policy.engines.native.values import copy_json, timestamp_ns
from evaluator_sidecar.policy.errors import Problem, SnapshotLoadError
from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = [
    "COMPARISONS",
    "CONDITION_TYPES",
    "OPERATORS",
    "RELATIONSHIPS",
    "SUPPORTED_OPERATORS",
    "Condition",
    "Edge",
    "Emission",
    "Fact",
    "LoadedSnapshot",
    "Rule",
    "check_acyclic",
    "load_facts",
    "load_rules",
    "rule_edges",
    "split_fact_key",
]


def _emission(
    raw: Any,
    index: int,
    where: str,
    subtask_defaults: Mapping[str, dict[str, Any]],
    problems: Problems,
) -> Emission | None:
    if not isinstance(raw, Mapping):
        problems.add(where, f"must be a mapping with subtask_type, ...; got {type(raw).__name__}")
        return None
    ok = True
    stype = raw.get("subtask_type")
    if not isinstance(stype, str) or not stype:
        problems.add(f"{where}.subtask_type", "is required and must be a non-empty string")
        ok = False
    name = raw.get("subtask_name")
    if name is None:
        name = stype
    elif not isinstance(name, str) or not name:
        problems.add(f"{where}.subtask_name", "must be a non-empty string")
        ok = False
    relationship = raw.get("relationship_type")
    if relationship is None:
        relationship = "EMITS"
    elif relationship not in RELATIONSHIPS:
        problems.add(
            f"{where}.relationship_type",
            f"unknown relationship {relationship!r}; use one of {', '.join(RELATIONSHIPS)}",
        )
        ok = False
    params = raw.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, Mapping):
        problems.add(f"{where}.params", f"must be a mapping; got {type(params).__name__}")
        ok = False
    defaults = raw.get("default_params")
    if defaults is not None and not isinstance(defaults, Mapping):
        problems.add(f"{where}.default_params", f"must be a mapping; got {type(defaults).__name__}")
        ok = False
    position = raw.get("position", index)
    if position is None:
        position = index
    if not is_int(position):
        problems.add(f"{where}.position", f"must be an integer; got {position!r}")
        ok = False
    if not ok:
        return None
    if defaults is None:
        defaults = subtask_defaults.get(str(stype), {})
    return Emission(
        index=index,
        position=int(position),
        subtask_type=str(stype),
        subtask_name=str(name),
        relationship=str(relationship),
        # A deep copy: later changes to the snapshot's dicts never reach the engine.
        params=copy_json({**defaults, **params}),
    )


def _subtask_defaults(subtask_types: Any, problems: Problems) -> dict[str, dict[str, Any]]:
    defaults: dict[str, dict[str, Any]] = {}
    if not isinstance(subtask_types, list):
        problems.add("subtask_types", f"must be a list; got {type(subtask_types).__name__}")
        return defaults
    for i, entry in enumerate(subtask_types):
        where = f"subtask_types[{i}]"
        if not isinstance(entry, Mapping):
            problems.add(where, "must be a mapping with name and default_params")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.add(f"{where}.name", "is required and must be a non-empty string")
            continue
        params = entry.get("default_params")
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            problems.add(
                f"{where}.default_params", f"must be a mapping; got {type(params).__name__}"
            )
            continue
        if name in defaults:
            problems.add(f"{where}.name", f"subtask type {name!r} is defined twice")
            continue
        defaults[name] = dict(params)
    return defaults


def load_facts(raw_facts: Any, where_prefix: str, problems: list[Problem]) -> tuple[Fact, ...]:
    """Parse temporal facts; appends a problem per bad fact (prefix names the list)."""
    if not isinstance(raw_facts, list):
        problems.append(Problem(where_prefix, f"must be a list; got {type(raw_facts).__name__}"))
        return ()
    facts: list[Fact] = []
    for i, raw in enumerate(raw_facts):
        where = f"{where_prefix}[{i}]"
        if not isinstance(raw, Mapping):
            problems.append(Problem(where, "must be a mapping with subject, predicate, object"))
            continue
        ok = True
        for name in ("subject", "predicate"):
            value = raw.get(name)
            if not isinstance(value, str) or not value:
                problems.append(
                    Problem(f"{where}.{name}", "is required and must be a non-empty string")
                )
                ok = False
        predicate = raw.get("predicate")
        if isinstance(predicate, str) and (" " in predicate):
            problems.append(
                Problem(
                    f"{where}.predicate",
                    f"{predicate!r} must be one word: FACT condition keys end with the predicate",
                )
            )
            ok = False
        bounds: list[int | None] = []
        for name in ("valid_from", "valid_to"):
            value = raw.get(name)
            if value is None:
                bounds.append(None)
                continue
            try:
                bounds.append(timestamp_ns(value))
            except ValueError as exc:
                problems.append(Problem(f"{where}.{name}", str(exc)))
                ok = False
        if not ok:
            continue
        facts.append(
            Fact(
                subject=str(raw["subject"]),
                predicate=str(raw["predicate"]),
                object=raw.get("object"),
                valid_from=bounds[0],
                valid_to=bounds[1],
            )
        )
    return tuple(facts)


def _rule(
    raw: Any,
    index: int,
    subtask_defaults: Mapping[str, dict[str, Any]],
    problems: Problems,
) -> Rule | None:
    if not isinstance(raw, Mapping):
        problems.add(
            f"rules[{index}]",
            f"must be a mapping with rule_id, rule_name, ...; got {type(raw).__name__}",
        )
        return None
    rule_id = raw.get("rule_id")
    ok = True
    if isinstance(rule_id, str) and rule_id:
        where, sep = f"rule {rule_id!r}", " "  # rule 'rule-001' conditions[0].value
    else:
        where, sep = f"rules[{index}]", "."  # rules[3].rule_id
        problems.add(f"{where}{sep}rule_id", "is required and must be a non-empty string")
        ok = False
    rule_name = raw.get("rule_name")
    if not isinstance(rule_name, str) or not rule_name:
        problems.add(f"{where}{sep}rule_name", "is required and must be a non-empty string")
        ok = False
    priority = raw.get("priority", 0)
    if priority is None:
        priority = 0
    if not is_int(priority):
        problems.add(f"{where}{sep}priority", f"must be an integer; got {priority!r}")
        ok = False
    disabled = raw.get("disabled", False)
    if disabled is None:
        disabled = False
    if not isinstance(disabled, bool):
        problems.add(f"{where}{sep}disabled", f"must be true or false; got {disabled!r}")
        ok = False
    source = raw.get("rule_source")
    if source is not None and not isinstance(source, str):
        problems.add(f"{where}{sep}rule_source", f"must be text; got {type(source).__name__}")
    raw_conditions = raw.get("conditions")
    if raw_conditions is None:
        raw_conditions = []
    conditions: list[Condition] = []
    if not isinstance(raw_conditions, list):
        problems.add(
            f"{where}{sep}conditions", f"must be a list; got {type(raw_conditions).__name__}"
        )
        ok = False
    else:
        for i, rc in enumerate(raw_conditions):
            condition = parse_condition(rc, i, f"{where}{sep}conditions[{i}]", problems)
            if condition is None:
                ok = False
            else:
                conditions.append(condition)
    raw_emissions = raw.get("emissions")
    if raw_emissions is None:
        raw_emissions = []
    emissions: list[Emission] = []
    if not isinstance(raw_emissions, list):
        problems.add(
            f"{where}{sep}emissions", f"must be a list; got {type(raw_emissions).__name__}"
        )
        ok = False
    else:
        for i, re_ in enumerate(raw_emissions):
            emission = _emission(re_, i, f"{where}{sep}emissions[{i}]", subtask_defaults, problems)
            if emission is None:
                ok = False
            else:
                emissions.append(emission)
    if not ok:
        return None
    conditions.sort(key=lambda c: (c.position, c.index))
    emissions.sort(key=lambda e: (e.position, e.subtask_name, e.index))
    return Rule(
        index=index,
        rule_id=str(rule_id),
        rule_name=str(rule_name),
        priority=int(priority),
        disabled=disabled,
        conditions=tuple(conditions),
        emissions=tuple(emissions),
        edges=rule_edges(emissions),
    )


def load_rules(snapshot: PKGSnapshotData) -> LoadedSnapshot:
    """Check and normalise ``snapshot``'s rules and facts.

    Raises SnapshotLoadError listing every problem found.
    """
    problems = Problems()
    raw_rules: Any = snapshot.rules
    subtask_types: Any = snapshot.subtask_types
    defaults = _subtask_defaults(subtask_types if subtask_types is not None else [], problems)
    rules: list[Rule] = []
    if not isinstance(raw_rules, list):
        problems.add("rules", f"must be a list; got {type(raw_rules).__name__}")
        raw_rules = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        rule = _rule(raw, i, defaults, problems)
        if isinstance(raw, Mapping):
            rule_id = raw.get("rule_id")
            if isinstance(rule_id, str) and rule_id:
                if rule_id in seen:
                    problems.add(
                        f"rule {rule_id!r}",
                        f"duplicate rule_id: rules[{seen[rule_id]}] and rules[{i}] both use it",
                    )
                else:
                    seen[rule_id] = i
        if rule is not None:
            rules.append(rule)
    facts_problems: list[Problem] = []
    raw_facts: Any = snapshot.facts
    facts = load_facts(raw_facts if raw_facts is not None else [], "facts", facts_problems)
    problems.items.extend(facts_problems)
    problems.items.extend(check_acyclic(rules))
    if problems.items:
        raise SnapshotLoadError(snapshot.version, problems.items)
    ordered = sorted(
        (rule for rule in rules if not rule.disabled),
        key=lambda r: (-r.priority, r.rule_name, r.rule_id),
    )
    return LoadedSnapshot(
        version=snapshot.version,
        rules=tuple(ordered),
        all_rules=tuple(rules),
        facts=facts,
    )
