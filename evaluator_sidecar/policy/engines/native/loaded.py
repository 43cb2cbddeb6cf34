"""The checked form of a snapshot's rules: what ``load_rules`` returns and the compiler reads.

The language's vocabulary (condition types, operators, which type supports
which, relationships) and the frozen records of a loaded snapshot: conditions
with their operands parsed, emissions with params merged, each rule's DAG
edges, and temporal facts with their validity windows in nanoseconds.
Semantics: docs/rule-language.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evaluator_sidecar.policy.engines.native.regex import Pattern

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
