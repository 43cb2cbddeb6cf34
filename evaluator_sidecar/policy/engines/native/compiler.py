"""Compiling a checked snapshot into one generated Python function, once, at load.

It owns the guard dispatch (each rule filed under a tag, a plain value at a path,
or a signal, with bound chains per signal), the order of a rule's tests, and the
emitters that copy output prepared at load. What that means for rule authors:
docs/rule-language.md ("How the engine runs rules").

Two invariants the code keeps. Every constant taken from the snapshot (tags,
keys, numbers, names, params, patterns) is bound in the generated code's
namespace under a generated name: the generated source contains only generated
identifiers, fixed keywords and rule indices, never snapshot text (it is kept in
``CompiledRules.source`` for debugging). Each result gets new dicts and lists,
and params values that are lists or dicts are copied deeply, so mutating a
result never reaches the engine or another result.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.policy.engines.native import runtime
from evaluator_sidecar.policy.engines.native.loaded import Condition, LoadedSnapshot, Rule
from evaluator_sidecar.policy.engines.native.values import as_number, json_equal

__all__ = ["CompiledRules", "compile_rules"]

EvaluateFn = Callable[[Mapping[str, Any]], dict[str, Any]]

_PY_OPS = {"=": "==", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}
_BOUNDS = (">=", ">", "<=", "<")
#: The comparison that fails for a signal value v and a bound c of each operator.
_FAILS = {">=": "<", ">": "<=", "<=": ">", "<": ">="}
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class CompiledRules:
    """The generated evaluation function and what it was made from."""

    evaluate: EvaluateFn
    source: str
    guarded_by_tag: int  # rules filed under a tag
    guarded_by_value: int  # rules filed under plain values at a path
    guarded_by_signal: int  # rules filed under a signal key
    unguarded: int  # rules checked on every call


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


def _plain_strings(condition: Condition) -> tuple[str, ...] | None:
    """The strings a VALUE =/IN condition can equal, when they are all plain (non-numeric) text."""
    if condition.op == "=":
        operand = condition.operand
        return (operand,) if isinstance(operand, str) and as_number(operand) is None else None
    if condition.op == "IN":
        members = runtime.InSet(condition.items)
        if not members.numbers and not members.others:
            return tuple(sorted(members.strings))
    return None


#: (kind, key, values, condition): kind 'tag' (key: the tag), 'value' (key: the path;
#: values: the strings that satisfy the condition) or 'signal' (key: the signal).
Guard = tuple[str, Any, tuple[str, ...], Condition]


def _guard(rule: Rule) -> Guard | None:
    """The condition a rule is filed under: a required tag, else a required plain
    VALUE (the request's value picks the bucket), else a required signal."""
    for condition in rule.conditions:
        if condition.ctype == "TAG" and condition.op == "EXISTS":
            return ("tag", condition.key, (), condition)
        if condition.ctype == "TAG" and condition.op == "=":
            return ("tag", str(condition.operand), (), condition)
    for condition in rule.conditions:
        if condition.ctype == "VALUE":
            strings = _plain_strings(condition)
            if strings is not None:
                return ("value", condition.path, strings, condition)
    signals = [c for c in rule.conditions if c.ctype == "SIGNAL"]
    for condition in signals:  # a bound prunes best: see _signal_group
        if condition.op in _BOUNDS:
            return ("signal", condition.key, (), condition)
    if signals:
        return ("signal", signals[0].key, (), signals[0])
    return None


class _Generator:
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


def _group_function(
    gen: _Generator, name: str, members: list[tuple[int, Rule, Condition | None]]
) -> list[str]:
    """One generated function checking a group's rules (minus what the guard implies)."""
    lines = [f"def {name}(tf, tags, sig, ctx, fv, m):"]
    for number, rule, implied in members:
        test = gen.rule_test(rule, implied)
        if test == "True":
            lines.append(f"    m.append({number})")
        else:
            lines.append(f"    if {test}:")
            lines.append(f"        m.append({number})")
    lines.append("")
    return lines


def _signal_group(
    gen: _Generator, name: str, key: str, members: list[tuple[int, Rule, Condition]]
) -> list[str]:
    """The function for rules filed under one signal, called when the signal is present.

    Rules filed by a bound (``>=``, ``>``, ``<=``, ``<``) form two chains, sorted so
    that once one rule's bound fails, every later one's fails too: lower bounds
    ascending (at equal bounds ``>=`` before ``>``), upper bounds descending (``<=``
    before ``<``). A chain stops at its first failing bound, so rules whose bound
    cannot hold are never looked at. Other rules (``=``, ``!=``, IN, EXISTS) are
    checked in full.
    """
    lines = [f"def {name}(tf, tags, sig, ctx, fv, m):", f"    v = sig[{gen.const(key)}]"]
    plain = [(n, r, None) for n, r, c in members if c.op not in _BOUNDS]
    lower = sorted(
        (entry for entry in members if entry[2].op in (">=", ">")),
        key=lambda e: (e[2].operand, e[2].op == ">", e[0]),
    )
    upper = sorted(
        (entry for entry in members if entry[2].op in ("<=", "<")),
        key=lambda e: (-e[2].operand, e[2].op == "<", e[0]),
    )
    for number, rule, implied in plain:
        test = gen.rule_test(rule, implied)
        lines.append(f"    if {test}:")
        lines.append(f"        m.append({number})")
    for chain in (lower, upper):
        if not chain:
            continue
        lines.append("    for _ in _ONCE:")  # a block to break out of
        for number, rule, bound in chain:
            lines.append(f"        if v {_FAILS[bound.op]} {gen.const(bound.operand)}:")
            lines.append("            break")
            test = gen.rule_test(rule, bound)
            if test == "True":
                lines.append(f"        m.append({number})")
            else:
                lines.append(f"        if {test}:")
                lines.append(f"            m.append({number})")
    lines.append("")
    return lines


def compile_rules(loaded: LoadedSnapshot) -> CompiledRules:
    """Generate and compile the evaluation function for ``loaded``'s enabled rules."""
    gen = _Generator(loaded)
    Member = tuple[int, Rule, Condition | None]
    tag_groups: dict[str, list[Member]] = {}
    signal_groups: dict[str, list[tuple[int, Rule, Condition]]] = {}
    value_groups: dict[tuple[str, ...], dict[str, list[Member]]] = {}
    unguarded: list[tuple[int, Rule]] = []
    for number, rule in enumerate(loaded.rules):
        guard = _guard(rule)
        if guard is None:
            unguarded.append((number, rule))
            continue
        kind, key, strings, condition = guard
        if kind == "tag":  # membership is the condition's whole test
            tag_groups.setdefault(key, []).append((number, rule, condition))
        elif kind == "value":  # so is landing in one of its strings' buckets
            buckets = value_groups.setdefault(key, {})
            for text in strings:
                buckets.setdefault(text, []).append((number, rule, condition))
        else:
            signal_groups.setdefault(key, []).append((number, rule, condition))

    lines: list[str] = []
    tables: dict[str, dict[str, str]] = {"_TAG_GROUPS": {}, "_SIGNAL_GROUPS": {}}
    for key, members in tag_groups.items():
        name = f"_g{len(lines)}"
        lines.extend(_group_function(gen, name, members))
        tables["_TAG_GROUPS"][key] = name
    for key, signal_members in signal_groups.items():
        name = f"_g{len(lines)}"
        lines.extend(_signal_group(gen, name, key, signal_members))
        tables["_SIGNAL_GROUPS"][key] = name
    value_tables: list[tuple[tuple[str, ...], str]] = []
    for path, buckets in value_groups.items():
        table = f"_VALUE_GROUPS{len(value_tables)}"
        tables[table] = {}
        for text, members in buckets.items():
            name = f"_g{len(lines)}"
            lines.extend(_group_function(gen, name, members))
            tables[table][text] = name
        value_tables.append((path, table))
    for number, rule in enumerate(loaded.rules):
        lines.extend(gen.emitter(number, rule))
        lines.append("")

    uses_tags = any(c.ctype == "TAG" for r in loaded.rules for c in r.conditions)
    uses_signals = any(c.ctype == "SIGNAL" for r in loaded.rules for c in r.conditions)
    # Generating the unguarded tests also tells whether any rule reads facts.
    unguarded_tests = [(number, gen.rule_test(rule, None)) for number, rule in unguarded]
    body = ["def _evaluate(tf):"]
    body.append("    tags = tf.get('tags')" if uses_tags else "    tags = _EMPTY_SET")
    if uses_tags:
        body.append("    tags = _set(tags) if tags else _EMPTY_SET")
    body.append(
        "    sig = tf.get('signals') or _EMPTY_DICT" if uses_signals else "    sig = _EMPTY_DICT"
    )
    body.append("    ctx = tf.get('context')")
    body.append("    if ctx.__class__ is not _dict:")
    body.append("        ctx = _as_mapping(ctx)")
    # The per-call fact state: [task facts, now (read lazily), {key: objects}] (runtime).
    body.append("    fv = [tf, None, None]" if gen.uses_facts else "    fv = None")
    body.append("    m = []")
    if tables["_TAG_GROUPS"]:
        body.append("    if tags:")
        body.append("        group = _TAG_GROUPS.get")
        body.append("        for t in tags:")
        body.append("            g = group(t)")
        body.append("            if g is not None:")
        body.append("                g(tf, tags, sig, ctx, fv, m)")
    if tables["_SIGNAL_GROUPS"]:
        body.append("    group = _SIGNAL_GROUPS.get")
        body.append("    for k in sig:")
        body.append("        g = group(k)")
        body.append("        if g is not None:")
        body.append("            g(tf, tags, sig, ctx, fv, m)")
    for path, table in value_tables:
        # Only a string can equal a plain-text value: other values select no bucket.
        value = gen.path_expr(path)
        body.append(f"    v = {value}")
        body.append("    if v.__class__ is _str:")
        body.append(f"        g = {table}.get(v)")
        body.append("        if g is not None:")
        body.append("            g(tf, tags, sig, ctx, fv, m)")
    for number, test in unguarded_tests:
        if test == "True":
            body.append(f"    m.append({number})")
        else:
            body.append(f"    if {test}:")
            body.append(f"        m.append({number})")
    body.append("    if not m:")
    body.append("        return {'subtasks': [], 'dag': [], 'rules': []}")
    body.append("    m.sort()")
    body.append("    S = []")
    body.append("    D = []")
    body.append("    R = []")
    body.append("    E = _EMITTERS")
    body.append("    for i in m:")
    body.append("        E[i](S, D, R)")
    body.append("    return {'subtasks': S, 'dag': D, 'rules': R}")
    source = "\n".join([*lines, *body, ""])

    namespace = gen.namespace
    namespace["_facts"] = runtime.make_fact_lookup(runtime.index_facts(loaded.facts))
    code = compile(source, f"<pkg-native {loaded.version}>", "exec")
    # The source holds generated identifiers only; snapshot data lives in the namespace.
    exec(code, namespace)
    for table, entries in tables.items():
        namespace[table] = {key: namespace[name] for key, name in entries.items()}
    namespace["_EMITTERS"] = tuple(namespace[f"_emit{n}"] for n in range(len(loaded.rules)))
    return CompiledRules(
        evaluate=namespace["_evaluate"],
        source=source,
        guarded_by_tag=sum(len(v) for v in tag_groups.values()),
        guarded_by_value=len(
            {n for buckets in value_groups.values() for ms in buckets.values() for n, _, _ in ms}
        ),
        guarded_by_signal=sum(len(v) for v in signal_groups.values()),
        unguarded=len(unguarded),
    )
