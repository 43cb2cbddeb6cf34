"""The native rule engine: declarative rules compiled at load, evaluated in microseconds.

Importing this package registers the engine as ``"native"``. This docstring is
the rule language's specification; the WASM engine's reference Rego policy and
the reference interpreter (``evaluator_sidecar.policy.engines.reference``) implement the
same semantics, and tests hold all three to it.

Task facts
    ``{"tags": [str], "signals": {str: number}, "context": {...}, "facts": [fact],
    "now": RFC 3339 string | epoch seconds}``; every part optional (checked by
    ``evaluator_sidecar.policy.facts`` before an engine sees them). ``now`` sets the instant
    for FACT validity; without it the wall clock is read once per evaluation.

Condition values
    A condition's ``value`` may be typed (``0.8``, ``[gold, platinum]``) or text as
    PostgreSQL stores it (``"0.8"``, ``'["gold","platinum"]'``). The engine reads
    the *text form*: strings as they are, anything else as compact JSON. So
    ``0.8`` and ``"0.8"`` mean the same.

    * A number is text in JSON's number grammar (``5``, ``-0.8``, ``1e3``; not
      ``05``, ``+5``, `` 5``, ``NaN``). On the task-facts side, ints and floats
      (never booleans) and strings in that grammar are numbers.
    * A single value (VALUE/FACT ``=``/``!=``) is the text parsed as JSON when it
      is JSON, else the text itself: ``"true"`` is the boolean, ``"hotel_ops"``
      the string, ``'{"service": "lounge"}'`` an object.
    * An IN list is the text parsed as a JSON list, else comma-separated text:
      items stripped of surrounding spaces, empty items dropped, each item read as
      a single value. An empty list is a load error.
    * Every operator except EXISTS needs a value (a load error otherwise).

Rule order and matching
    Rules run by priority descending, then ``rule_name``, then ``rule_id``
    (ascending, by code point). Disabled rules are skipped at evaluation but
    checked in full at load. A rule matches when all its conditions hold; no
    conditions: always matches. A missing key makes a condition false; nothing
    raises at evaluation.

Operators by condition type (others are load errors)
    TAG (the request's tags as a set)
        EXISTS: the tag named by ``condition_key`` is present. ``=`` / ``!=``: the
        tag named by ``value`` is present / absent (``condition_key`` is then a free
        label, conventionally ``tags``). IN: any listed tag is present (non-string
        items by their text form). MATCHES: any tag matches the pattern.
    SIGNAL (``signals[condition_key]``)
        ``=`` ``!=`` ``>=`` ``<=`` ``>`` ``<``: numeric comparison with ``value``;
        IN: equals one of the listed numbers; EXISTS: present. A missing signal
        makes every SIGNAL condition false (``!=`` included). A value that is not a
        number is a load error.
    VALUE (``condition_key`` is a dotted path into the task facts: ``context.domain``)
        A path resolves through objects only (no list indices); a path that does
        not resolve, or resolves to null, is missing, and a missing value makes
        every VALUE condition false (``!=`` included). EXISTS: present and not
        null. ``=``/``!=``: equal numerically when both sides are numbers (so
        ``"5"`` equals ``5``), else JSON equality (booleans equal only booleans;
        objects and lists structurally). ``>=`` ``<=`` ``>`` ``<``: true only when
        the value is a number (the condition's value must be one: load error
        otherwise). IN: equals (as ``=``) any listed item. MATCHES: the value is a
        string matching the pattern. A null single value or null IN item is a load
        error (it could never match).
    FACT (temporal facts: the request's ``facts`` and the snapshot's own ``facts``)
        A fact is valid when ``valid_from <= now < valid_to`` (a missing bound is
        open; bounds are RFC 3339 strings with an offset, or epoch seconds);
        invalid facts never match. ``condition_key`` is ``predicate`` (any subject)
        or ``subject predicate``: the predicate is the last word and the subject
        everything before the last space (``guest:Ben hasTemporaryAccess``).
        EXISTS: a valid fact with that key exists. ``=``: some valid fact's object
        equals the value (as for VALUE). ``!=``: no valid fact's object equals the
        value (true when there is no such fact). IN: some valid fact's object is
        in the list. MATCHES: some valid fact's string object matches.
        ``>=`` ``<=`` ``>`` ``<``: some valid fact's numeric object compares true.
    MATCHES patterns are RE2 (linear time), compiled at load; a pattern matches
    anywhere unless anchored with ``^``/``$``. An invalid pattern is a load error.

Output of each matched rule, in rule order
    subtasks
        Per emission, ordered by ``position`` (default: the list index), then
        ``subtask_name``, then list order: ``{"name": subtask_name (default:
        subtask_type), "type": subtask_type, "params": {**default_params,
        **params}, "rule_id", "rule_name"}``. ``default_params`` are the
        emission's own ``default_params`` when it has that key, else the snapshot
        subtask type's of that name, else ``{}`` (a shallow merge; params win).
    dag
        Number the rule's subtasks s0..s(n-1) in that order. For j = 0..n-1: first
        an edge ``{"from": s_g, "to": s_j, "type": "gate", "rule": rule_id}`` for
        every earlier emission g < j whose relationship_type is GATE (ascending
        g); then, when emission j is ORDERS and j > 0, ``{"from": s_(j-1), "to":
        s_j, "type": "sequential", "rule": rule_id}``. EMITS adds no edge.
    rules
        ``{"rule_id", "rule_name", "rule_priority", "matched_conditions" (the
        rule's number of conditions), "emissions_count"}``.

    Example: a rule ``rule-007`` with emissions ``check`` (GATE), ``fetch``
    (ORDERS), ``pack`` (ORDERS), ``notify`` (EMITS) yields the edges::

        check -> fetch  gate        (gate from s0 to s1)
        check -> fetch  sequential  (fetch ORDERS after s0)
        check -> pack   gate
        fetch -> pack   sequential
        check -> notify gate        (EMITS: no sequential edge)

Load-time checks (one SnapshotLoadError lists all, each naming rule and field)
    Missing required keys (rule_id, rule_name, condition_type, operator,
    condition_key, value, subtask_type), wrong types, unknown condition types,
    operators and relationships, operators a type does not support, invalid
    patterns, non-numeric numbers, empty IN lists, duplicate rule ids, duplicate
    subtask types, malformed facts, and cycles: the union of every edge any rule
    (disabled ones included) could produce, over subtask names, must be acyclic.

Results never share mutable objects with the engine or with other results.
How the rules are compiled: ``evaluator_sidecar.policy.engines.native.compiler``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evaluator_sidecar.policy.engines.base import EngineResult, register_engine
from evaluator_sidecar.policy.engines.native.compiler import CompiledRules, compile_rules
from evaluator_sidecar.policy.engines.native.loader import LoadedSnapshot, load_rules
from evaluator_sidecar.policy.errors import EvaluationError
from evaluator_sidecar.policy.model import PKGSnapshotData

__all__ = ["NativeRuleEngine"]


class NativeRuleEngine:
    """Evaluates one snapshot's native rules with a function generated at load."""

    def __init__(self, loaded: LoadedSnapshot, compiled: CompiledRules) -> None:
        self._loaded = loaded
        self._compiled = compiled
        self._evaluate = compiled.evaluate

    @classmethod
    def from_snapshot(cls, snapshot: PKGSnapshotData) -> NativeRuleEngine:
        """Check and compile ``snapshot``'s rules; SnapshotLoadError lists every problem."""
        loaded = load_rules(snapshot)
        return cls(loaded, compile_rules(loaded))

    def evaluate(self, task_facts: Mapping[str, Any]) -> EngineResult:
        """``{"subtasks", "dag", "rules"}`` for already validated task facts."""
        try:
            return self._evaluate(task_facts)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # Validated facts never get here; facts passed straight to the engine might.
            raise EvaluationError(
                f"native evaluation of snapshot {self._loaded.version!r} failed on these task "
                f"facts ({type(exc).__name__}: {exc}); check them with "
                "evaluator_sidecar.policy.facts"
            ) from exc

    @property
    def degraded(self) -> bool:
        """The native engine has no fallback mode."""
        return False

    @property
    def rule_count(self) -> int:
        """Enabled rules compiled into the evaluation function."""
        return len(self._loaded.rules)

    @property
    def source(self) -> str:
        """The generated Python source (for debugging; it holds no snapshot data)."""
        return self._compiled.source


register_engine("native", NativeRuleEngine)
