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
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluator_sidecar.policy.engines.native.regex import Pattern, compile_pattern
from evaluator_sidecar.policy.engines.native.values import (
    as_number,
    copy_json,
    list_items,
    parse_number_text,
    parse_operand,
    timestamp_ns,
    value_text,
)
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

CONDITION_TYPES = ("TAG", "SIGNAL", "VALUE", "FACT")
OPERATORS = ("=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS", "MATCHES")
COMPARISONS = (">=", "<=", ">", "<")
RELATIONSHIPS = ("EMITS", "ORDERS", "GATE")

SUPPORTED_OPERATORS: dict[str, tuple[str, ...]] = {
    "TAG": ("EXISTS", "=", "!=", "IN", "MATCHES"),
    "SIGNAL": ("=", "!=", ">=", "<=", ">", "<", "IN", "EXISTS"),
    "VALUE": OPERATORS,
    "FACT": OPERATORS,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition. Which fields are set depends on the type and operator."""

    index: int  # in the rule's list as written
    position: int
    ctype: str
    key: str
    op: str
    text: str | None  # the value's text form
    #: TAG =/!=: the tag; SIGNAL and comparisons: the number; VALUE/FACT =/!=: the parsed value.
    operand: Any = None
    items: tuple[Any, ...] = ()  # IN: the listed values (tags as text, signals as numbers)
    pattern: Pattern | None = None  # MATCHES
    path: tuple[str, ...] = ()  # VALUE: the dotted path's segments
    fact_subject: str | None = None  # FACT: None means any subject
    fact_predicate: str = ""


@dataclass(frozen=True, slots=True)
class Emission:
    """One emission, with its params already merged over the subtask type's defaults."""

    index: int
    position: int
    subtask_type: str
    subtask_name: str
    relationship: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Edge:
    """One DAG edge a rule produces when it matches: ``kind`` is 'gate' or 'sequential'."""

    source: str
    target: str
    kind: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: conditions in position order, emissions in output order, its DAG edges."""

    index: int  # in the snapshot's list as written
    rule_id: str
    rule_name: str
    priority: int
    disabled: bool
    conditions: tuple[Condition, ...]
    emissions: tuple[Emission, ...]
    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class Fact:
    """One temporal fact: valid when ``valid_from <= now < valid_to`` (None is open)."""

    subject: str
    predicate: str
    object: Any
    valid_from: int | None  # ns since the epoch
    valid_to: int | None

    def valid_at(self, now_ns: int) -> bool:
        """True when the fact holds at ``now_ns``."""
        return (self.valid_from is None or self.valid_from <= now_ns) and (
            self.valid_to is None or now_ns < self.valid_to
        )


@dataclass(frozen=True)
class LoadedSnapshot:
    """A checked snapshot: enabled rules in evaluation order, and the snapshot's facts."""

    version: str
    rules: tuple[Rule, ...]  # enabled only, in evaluation order
    all_rules: tuple[Rule, ...]  # as written, disabled included
    facts: tuple[Fact, ...] = field(default=())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Problems:
    """Collects problems so that one load reports all of them."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(Problem(where, message))


def split_fact_key(key: str) -> tuple[str | None, str] | None:
    """A FACT condition_key as (subject or None, predicate), or None when malformed.

    ``hasTemporaryAccess`` -> (None, 'hasTemporaryAccess');
    ``guest:Ben hasTemporaryAccess`` -> ('guest:Ben', 'hasTemporaryAccess'). The
    predicate is the last word; the subject is everything before the last space.
    """
    if not key or key != key.strip():
        return None
    subject, _, predicate = key.rpartition(" ")
    if not predicate:
        return None
    if not subject:
        return (None, predicate)
    if subject != subject.strip():
        return None
    return (subject, predicate)


def _key_shape(ctype: str, key: str) -> Any:
    """A VALUE key's path segments, a FACT key's (subject, predicate), else None when malformed."""
    if ctype == "VALUE":
        segments = tuple(key.split("."))
        return segments if all(segments) else None
    return split_fact_key(key)


def _condition(raw: Any, index: int, where: str, problems: _Problems) -> Condition | None:
    if not isinstance(raw, Mapping):
        problems.add(
            where, f"must be a mapping with condition_type, operator, ...; got {type(raw).__name__}"
        )
        return None
    ok = True
    ctype = raw.get("condition_type")
    if ctype is None:
        problems.add(f"{where}.condition_type", "is required (one of TAG, SIGNAL, VALUE, FACT)")
        ok = False
    elif ctype not in CONDITION_TYPES:
        problems.add(
            f"{where}.condition_type",
            f"unknown condition type {ctype!r}; use one of {', '.join(CONDITION_TYPES)}",
        )
        ok = False
    op = raw.get("operator")
    if op is None:
        problems.add(f"{where}.operator", f"is required (one of {' '.join(OPERATORS)})")
        ok = False
    elif op not in OPERATORS:
        problems.add(
            f"{where}.operator", f"unknown operator {op!r}; use one of {' '.join(OPERATORS)}"
        )
        ok = False
    elif ctype in SUPPORTED_OPERATORS and op not in SUPPORTED_OPERATORS[ctype]:
        problems.add(
            f"{where}.operator",
            f"operator {op} is not supported for {ctype} conditions; "
            f"use one of {' '.join(SUPPORTED_OPERATORS[ctype])}",
        )
        ok = False
    position = raw.get("position", index)
    if position is None:
        position = index
    if not _is_int(position):
        problems.add(f"{where}.position", f"must be an integer; got {position!r}")
        ok = False
    key = raw.get("condition_key")
    key_needed = not (ctype == "TAG" and op != "EXISTS")
    if key is None:
        key = ""
        if key_needed:
            problems.add(f"{where}.condition_key", "is required")
            ok = False
    elif not isinstance(key, str):
        problems.add(f"{where}.condition_key", f"must be a string; got {type(key).__name__}")
        ok = False
    elif key_needed and not key:
        problems.add(f"{where}.condition_key", "must not be empty")
        ok = False
    value = raw.get("value")
    try:
        text = value_text(value)
    except ValueError:
        problems.add(f"{where}.value", f"is not JSON: {value!r}")
        return None
    if op != "EXISTS" and op in OPERATORS and text is None:
        problems.add(f"{where}.value", f"is required for operator {op}")
        ok = False
    if (
        isinstance(key, str)
        and key
        and ctype in ("VALUE", "FACT")
        and _key_shape(ctype, key) is None
    ):
        problems.add(
            f"{where}.condition_key",
            f"{key!r} is not a dotted path: write e.g. 'context.domain' (no empty segments)"
            if ctype == "VALUE"
            else f"{key!r} must be 'predicate' or 'subject predicate' separated by one space",
        )
        ok = False
    if not ok:
        return None
    return _parse_operands(
        str(ctype),
        str(op),
        str(key),
        text,
        position=int(position),
        index=index,
        where=where,
        problems=problems,
    )


def _parse_operands(
    ctype: str,
    op: str,
    key: str,
    text: str | None,
    *,
    position: int,
    index: int,
    where: str,
    problems: _Problems,
) -> Condition | None:
    base: dict[str, Any] = {
        "index": index,
        "position": position,
        "ctype": ctype,
        "key": key,
        "op": op,
        "text": text,
    }
    vwhere = f"{where}.value"
    shape = _key_shape(ctype, key)
    if ctype == "VALUE":
        base["path"] = shape
    elif ctype == "FACT":
        assert isinstance(shape, tuple)
        base["fact_subject"], base["fact_predicate"] = shape
    if op == "EXISTS":
        return Condition(**base)
    assert text is not None
    if op == "MATCHES":
        try:
            base["pattern"] = compile_pattern(text)
        except ValueError as exc:
            problems.add(vwhere, str(exc))
            return None
        return Condition(**base)
    if op == "IN":
        items = list_items(text)
        if not items:
            problems.add(vwhere, "the IN list is empty: list at least one value")
            return None
        if ctype == "TAG":
            base["items"] = tuple(dict.fromkeys(str(value_text(item)) for item in items))
        elif ctype == "SIGNAL":
            numbers = [as_number(item) for item in items]
            bad = [item for item, number in zip(items, numbers, strict=True) if number is None]
            if bad:
                problems.add(
                    vwhere,
                    f"SIGNAL IN lists numbers; {', '.join(repr(b) for b in bad)} is not a number",
                )
                return None
            base["items"] = tuple(numbers)
        else:
            if any(item is None for item in items):
                problems.add(
                    vwhere, "an IN list must not contain null: null values count as missing"
                )
                return None
            base["items"] = tuple(items)
        return Condition(**base)
    # =, !=, >=, <=, >, <
    if ctype == "TAG":
        base["operand"] = text
        return Condition(**base)
    if ctype == "SIGNAL" or op in COMPARISONS:
        number = parse_number_text(text)
        if number is None:
            problems.add(
                vwhere,
                f"{text!r} is not a number; {ctype} {op} compares numbers "
                '(write e.g. 0.8 or "0.8")',
            )
            return None
        base["operand"] = number
        return Condition(**base)
    operand = parse_operand(text)
    if operand is None:
        problems.add(vwhere, f"null never matches {op}: a null value counts as missing; use EXISTS")
        return None
    base["operand"] = operand
    return Condition(**base)


def _emission(
    raw: Any,
    index: int,
    where: str,
    subtask_defaults: Mapping[str, dict[str, Any]],
    problems: _Problems,
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
    if not _is_int(position):
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


def rule_edges(emissions: Sequence[Emission]) -> tuple[Edge, ...]:
    """The DAG edges a matched rule adds, for emissions already in output order.

    For each emission j: a 'gate' edge from every earlier GATE emission (in
    order), then a 'sequential' edge from emission j-1 when j is ORDERS and j > 0.
    """
    edges: list[Edge] = []
    for j, emission in enumerate(emissions):
        for g in range(j):
            if emissions[g].relationship == "GATE":
                edges.append(Edge(emissions[g].subtask_name, emission.subtask_name, "gate"))
        if emission.relationship == "ORDERS" and j > 0:
            edges.append(Edge(emissions[j - 1].subtask_name, emission.subtask_name, "sequential"))
    return tuple(edges)


def _subtask_defaults(subtask_types: Any, problems: _Problems) -> dict[str, dict[str, Any]]:
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


def check_acyclic(rules: Sequence[Rule]) -> list[Problem]:
    """One problem per cycle in the union of every edge any rule can produce."""
    graph: dict[str, dict[str, list[str]]] = {}  # source -> target -> rule ids
    for rule in rules:
        for edge in rule.edges:
            owners = graph.setdefault(edge.source, {}).setdefault(edge.target, [])
            if rule.rule_id not in owners:
                owners.append(rule.rule_id)
            graph.setdefault(edge.target, {})
    problems: list[Problem] = []
    for component in _strongly_connected(graph):
        if len(component) == 1:
            (node,) = component
            if node not in graph[node]:
                continue
        cycle = _cycle_in(graph, component)
        owners = sorted({rid for a, b in itertools.pairwise(cycle) for rid in graph[a][b]})
        problems.append(
            Problem(
                "dag",
                f"cycle {' -> '.join(cycle)} (edges from rule(s) {', '.join(owners)}); "
                "the union of all rules' ORDERS and GATE edges must be acyclic",
            )
        )
    return problems


def _strongly_connected(graph: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (deep graphs must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Any]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_in(graph: Mapping[str, Mapping[str, Any]], component: list[str]) -> list[str]:
    """A cycle through the component's first node: [a, b, ..., a] (shortest, by BFS)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        next_frontier: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in seen:
                    seen.add(child)
                    parents[child] = node
                    next_frontier.append(child)
        frontier = next_frontier
    return [start, start]  # pragma: no cover - a component always has a cycle


def _rule(
    raw: Any,
    index: int,
    subtask_defaults: Mapping[str, dict[str, Any]],
    problems: _Problems,
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
    if not _is_int(priority):
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
            condition = _condition(rc, i, f"{where}{sep}conditions[{i}]", problems)
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
    problems = _Problems()
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
