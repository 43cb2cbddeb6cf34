"""Compiling a checked snapshot into one generated Python function, once, at load.

It owns the guard dispatch (each rule filed under a tag, a plain value at a path,
or a signal, with bound chains per signal), the order of a rule's tests, and the
emitters that copy output prepared at load (each rule's tests and emitter come
from ``codegen``). What that means for rule authors: docs/rule-language.md
("How the engine runs rules").

Two invariants the code keeps. Every constant taken from the snapshot (tags,
keys, numbers, names, params, patterns) is bound in the generated code's
namespace under a generated name: the generated source contains only generated
identifiers, fixed keywords and rule indices, never snapshot text (it is kept in
``CompiledRules.source`` for debugging). Each result gets new dicts and lists,
and params values that are lists or dicts are copied deeply, so mutating a
result never reaches the engine or another result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.policy.engines.native import runtime
from evaluator_sidecar.policy.engines.native.codegen import Generator
from evaluator_sidecar.policy.engines.native.loaded import Condition, LoadedSnapshot, Rule
from evaluator_sidecar.policy.engines.native.values import as_number

__all__ = ["CompiledRules", "compile_rules"]

EvaluateFn = Callable[[Mapping[str, Any]], dict[str, Any]]

_BOUNDS = (">=", ">", "<=", "<")
#: The comparison that fails for a signal value v and a bound c of each operator.
_FAILS = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


@dataclass(frozen=True)
class CompiledRules:
    """The generated evaluation function and what it was made from."""

    evaluate: EvaluateFn
    source: str
    guarded_by_tag: int  # rules filed under a tag
    guarded_by_value: int  # rules filed under plain values at a path
    guarded_by_signal: int  # rules filed under a signal key
    unguarded: int  # rules checked on every call


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


def _group_function(
    gen: Generator, name: str, members: list[tuple[int, Rule, Condition | None]]
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
    gen: Generator, name: str, key: str, members: list[tuple[int, Rule, Condition]]
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
    gen = Generator(loaded)
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
