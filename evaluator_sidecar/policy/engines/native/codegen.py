"""The Python source of one rule's tests and emitter, with the namespace it runs in.

``Generator`` turns a loaded condition into an expression over the generated
function's locals (``tf``, ``tags``, ``sig``, ``ctx``, ``fv``), a rule into the
conjunction of its tests cheapest first, and a rule's output into an emitter
that appends copies of dicts prepared at load. ``Generator.const`` is the only
way snapshot data enters the generated code: each constant is bound in the
namespace under a generated name, never written into the source. The
dispatch around these pieces is ``compiler``'s.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from evaluator_sidecar.policy.engines.native import runtime
from evaluator_sidecar.policy.engines.native.loaded import Condition, LoadedSnapshot, Rule
from evaluator_sidecar.policy.engines.native.values import as_number, json_equal

__all__ = ["Generator"]

_PY_OPS = {"=": "==", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}


_SCALARS = (str, int, float, bool, type(None))


def _cost(condition: Condition) -> int:
    """Relative cost of a test, to order a rule's conditions cheapest first."""
    ctype, op = condition.ctype, condition.op
    if ctype == "TAG":
        if op == "MATCHES":
            return 9
        return 2 if op == "IN" and len(condition.items) > 1 else 1
    if ctype == "SIGNAL":
        return 1 if op == "EXISTS" else 2
    if ctype == "VALUE":
        return 6 if op in ("MATCHES", "IN") else 4
    return 10  # FACT


class Generator:
    """Builds the source and its namespace; ``const`` is the only way snapshot data enters."""

    def __init__(self, loaded: LoadedSnapshot) -> None:
        self.loaded = loaded
        self.namespace: dict[str, Any] = {
            "__builtins__": {},
            "_NAN": math.nan,
            "_EMPTY_SET": frozenset(),
            "_EMPTY_DICT": {},
            "_ONCE": (None,),
            "_set": set,
            "_len": len,
            "_str": str,
            "_dict": dict,
            "_as_mapping": runtime.as_mapping,
            "_path": runtime.resolve_path,
            "_as_number": as_number,
            "_json_equal": json_equal,
            "_tag_matches": runtime.tag_matches,
            "_fact_any": runtime.fact_any,
            "_copy_json": runtime.copy_json,
        }
        self._names = itertools.count()
        self._consts: dict[tuple[type, Any], str] = {}
        self.lines: list[str] = []
        self.uses_facts = False

    def const(self, value: Any) -> str:
        """A generated name bound to ``value`` in the namespace (hashable scalars shared)."""
        key: tuple[type, Any] | None = None
        if isinstance(value, _SCALARS) and not (isinstance(value, float) and math.isnan(value)):
            key = (type(value), value)
            existing = self._consts.get(key)
            if existing is not None:
                return existing
        name = f"_k{next(self._names)}"
        self.namespace[name] = value
        if key is not None:
            self._consts[key] = name
        return name

    # -- conditions -------------------------------------------------------------------

    def condition(self, c: Condition) -> str:
        """A Python expression over locals tf, tags, sig, ctx, fv that is true when ``c`` holds."""
        if c.ctype == "TAG":
            return self._tag(c)
        if c.ctype == "SIGNAL":
            return self._signal(c)
        if c.ctype == "VALUE":
            return self._value(c)
        return self._fact(c)

    def _tag(self, c: Condition) -> str:
        if c.op == "EXISTS":
            return f"{self.const(c.key)} in tags"
        if c.op == "=":
            return f"{self.const(c.operand)} in tags"
        if c.op == "!=":
            return f"{self.const(c.operand)} not in tags"
        if c.op == "IN":
            if len(c.items) <= 3:
                return "(" + " or ".join(f"{self.const(t)} in tags" for t in c.items) + ")"
            return f"not tags.isdisjoint({self.const(frozenset(c.items))})"
        return f"_tag_matches(tags, {self.const(c.pattern)})"  # MATCHES

    def _signal(self, c: Condition) -> str:
        key = self.const(c.key)
        if c.op == "EXISTS":
            return f"{key} in sig"
        if c.op == "IN":
            return f"sig.get({key}, _NAN) in {self.const(frozenset(c.items))}"
        number = self.const(c.operand)
        if c.op == "!=":
            return f"({key} in sig and sig[{key}] != {number})"
        # A missing signal reads as NaN: every ordered comparison and == with NaN is false.
        return f"sig.get({key}, _NAN) {_PY_OPS[c.op]} {number}"

    def _path(self, c: Condition) -> str:
        return self.path_expr(c.path)

    def path_expr(self, path: tuple[str, ...]) -> str:
        """An expression for the value at a dotted path (None when missing)."""
        if path[0] == "context" and len(path) > 1:
            # ``ctx`` is the request's context object, fetched once per call.
            if len(path) == 2:
                return f"ctx.get({self.const(path[1])})"
            return f"_path(ctx, {self.const(path[1:])})"
        return f"_path(tf, {self.const(path)})"

    def _equal_test(self, var: str, operand: Any) -> str:
        """An expression testing the non-None local ``var`` for equality with ``operand``."""
        number = as_number(operand)
        if number is not None:
            return f"_as_number({var}) == {self.const(number)}"
        if isinstance(operand, str):
            return f"{var} == {self.const(operand)}"
        if isinstance(operand, bool):
            return f"{var} is {self.const(operand)}"
        return f"_json_equal({var}, {self.const(operand)})"

    def _value(self, c: Condition) -> str:
        path = self._path(c)
        if c.op == "EXISTS":
            return f"{path} is not None"
        if c.op in (">=", "<=", ">", "<"):
            bound = self.const(c.operand)
            return f"(_n := _as_number({path})) is not None and _n {_PY_OPS[c.op]} {bound}"
        plain_text = isinstance(c.operand, str) and as_number(c.operand) is None
        if c.op == "=":
            if plain_text:  # None and non-strings never equal a string
                return f"{path} == {self.const(c.operand)}"
            return f"((_v := {path}) is not None and {self._equal_test('_v', c.operand)})"
        if c.op == "!=":
            return f"((_v := {path}) is not None and not ({self._equal_test('_v', c.operand)}))"
        if c.op == "IN":
            members = runtime.InSet(c.items)
            if not members.numbers and not members.others:
                # Only (non-numeric) strings listed: only a string can be among them.
                strings = self.const(members.strings)
                return f"((_v := {path}).__class__ is _str and _v in {strings})"
            return f"{path} in {self.const(members)}"
        assert c.pattern is not None  # MATCHES
        search = self.const(c.pattern.search_memo)
        return f"((_v := {path}).__class__ is _str and {search}(_v))"

    def _fact(self, c: Condition) -> str:
        self.uses_facts = True
        objects = f"_facts(fv, {self.const((c.fact_subject, c.fact_predicate))})"
        if c.op == "EXISTS":
            return f"_len({objects}) > 0"
        if c.op == "!=":
            # No valid fact's object equals the value (true when there is no such fact).
            equal = runtime.make_value_test(
                Condition(c.index, c.position, c.ctype, c.key, "=", c.text, operand=c.operand)
            )
            return f"not _fact_any({objects}, {self.const(equal)})"
        return f"_fact_any({objects}, {self.const(runtime.make_value_test(c))})"

    def rule_test(self, rule: Rule, skip: Condition | None) -> str:
        """The conjunction of a rule's conditions (minus the guard), cheapest first."""
        rest = sorted(
            (c for c in rule.conditions if c is not skip),
            key=lambda c: (_cost(c), c.position, c.index),
        )
        if not rest:
            return "True"
        return " and ".join(f"({self.condition(c)})" for c in rest)

    # -- emission ---------------------------------------------------------------------

    def params_expr(self, params: dict[str, Any]) -> str:
        if not params:
            return "{}"
        if all(isinstance(v, _SCALARS) for v in params.values()):
            return f"{{**{self.const(params)}}}"
        return f"_copy_json({self.const(params)})"

    def emitter(self, number: int, rule: Rule) -> list[str]:
        """A function appending the rule's output: copies of dicts prepared here, at load."""
        lines = [f"def _emit{number}(S, D, R):"]
        for e in rule.emissions:
            template = {
                "name": e.subtask_name,
                "type": e.subtask_type,
                "params": None,  # replaced by a fresh dict on every copy
                "rule_id": rule.rule_id,
                "rule_name": rule.rule_name,
            }
            lines.append(f"    t = {self.const(template)}.copy()")
            lines.append(f"    t['params'] = {self.params_expr(e.params)}")
            lines.append("    S.append(t)")
        for edge in rule.edges:
            template = {
                "from": edge.source,
                "to": edge.target,
                "type": edge.kind,
                "rule": rule.rule_id,
            }
            lines.append(f"    D.append({self.const(template)}.copy())")
        entry = {
            "rule_id": rule.rule_id,
            "rule_name": rule.rule_name,
            "rule_priority": rule.priority,
            "matched_conditions": len(rule.conditions),
            "emissions_count": len(rule.emissions),
        }
        lines.append(f"    R.append({self.const(entry)}.copy())")
        return lines
