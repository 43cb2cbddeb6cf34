"""Rego written directly for N generated rules: the WASM engine at scale, beside OPA's Go.

``rules_rego(n, seed)`` writes one policy (``package pkg.gen``, entrypoint
``pkg/gen/result``) in the style of ``policies/seed``: each rule is a partial-set
rule over the task facts with three conditions (a tag present, a signal against
a threshold, a context value), its emissions a constant, and ``result`` the
engine's object (subtasks of the matched rules in rule-id order, one ``rules``
entry per match). The vocabulary is ``bench_native``'s, so its seeded task facts
make a realistic few rules match. Used by ``bench_wasm`` (``--rules``), in two
forms: the rule table as a constant in the Rego, and the same table as ``data``.
"""

from __future__ import annotations

import json
import random
from typing import Any

from benchmarks.bench_native import CHANNELS, DOMAINS, SIGNALS, TAGS, TASK_TYPES

__all__ = ["rules_rego"]

_TYPES = ["escalate", "notify", "inspect", "dispatch"]


def _condition(rng: random.Random) -> str:
    kind = rng.choice(("tag", "tag", "signal", "value"))
    if kind == "tag":
        return f'tags["{rng.choice(TAGS)}"]'
    if kind == "signal":
        op = rng.choice((">=", ">", "<=", "<"))
        return f'signals["{rng.choice(SIGNALS)}"] {op} {round(rng.random(), 2)}'
    key, vocabulary = rng.choice(
        (("domain", DOMAINS), ("task_type", TASK_TYPES), ("channel", CHANNELS))
    )
    return f'input.context.{key} == "{rng.choice(vocabulary)}"'


def rules_rego(
    n_rules: int, seed: int = 7, *, table_in_data: bool = False
) -> tuple[str, dict[str, Any]]:
    """The policy's text for ``n_rules`` seeded rules, and its ``data``.

    ``table_in_data`` moves the rules' emissions (one constant object with an
    entry per rule) from the Rego into ``data.emissions``: OPA's WebAssembly
    builds a constant composite value anew in every evaluation (OPA's Go
    evaluator builds it once, at compile time), while ``data`` is loaded once
    per instance.
    """
    rng = random.Random(seed)
    lines = [
        "package pkg.gen",
        "",
        'tags := {t | some t in object.get(input, "tags", [])}',
        "",
        'signals := object.get(input, "signals", {})',
        "",
    ]
    emissions: dict[str, list[dict[str, object]]] = {}
    for i in range(n_rules):
        rule_id = f"rule-{i:04d}"
        body = "; ".join(_condition(rng) for _ in range(3))
        lines.append(f'matched contains "{rule_id}" if {{ {body} }}')
        emissions[rule_id] = [
            {
                "name": f"r{i}_s{j}",
                "type": rng.choice(_TYPES),
                "params": {"level": rng.choice(["low", "high"]), "rule": i},
            }
            for j in range(rng.randint(1, 3))
        ]
    table = "data.emissions" if table_in_data else json.dumps(emissions)
    lines += [
        "",
        f"emissions := {table}",
        "",
        "ordered := sort(matched)",
        "",
        "result := {",
        '  "subtasks": [{"name": e.name, "type": e.type, "params": e.params, "rule_id": id} |',
        "    some id in ordered; some e in emissions[id]],",
        '  "dag": [],',
        '  "rules": [{"rule_id": id, "emissions_count": count(emissions[id])} |',
        "    some id in ordered],",
        "}",
        "",
    ]
    return "\n".join(lines), ({"emissions": emissions} if table_in_data else {})
