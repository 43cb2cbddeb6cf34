"""Seeded native rule sets and the same rules written directly in Rego, for the OPA comparisons.

Owned by the sidecar-footprint benchmarks (``bench_footprint``, ``bench_vs_opa``).
:func:`generate_rules` makes a seeded snapshot of ``n`` rules whose conditions OPA
and the native engine read the same way (TAG EXISTS/IN, SIGNAL bounds, VALUE =/IN on
plain context strings; 1-3 EMITS emissions with params); :func:`rego_module` writes
those rules out one Rego rule each (not the interpreter of ``policies/reference``),
answering exactly the sidecar's ``/v1/evaluate`` document; :func:`resource` wraps a
snapshot as the PolicySnapshot file ``pkg serve`` reads. The benchmarks check both
answers equal on every request before timing anything.
"""

from __future__ import annotations

import json
import random
from typing import Any

__all__ = ["generate_rules", "rego_module", "request_bodies", "resource"]

TAGS = [f"tag{i}" for i in range(24)]
SIGNALS = [f"x{i}" for i in range(24)]
DOMAINS = ["hotel_ops", "resort_ops", "spa", "dining", "transport", "security"]
TASK_TYPES = ["guest_request", "food_order", "maintenance", "checkin", "checkout", "complaint"]
CHANNELS = ["web", "app", "phone", "desk"]
SUBTASK_TYPES = ["escalate", "notify", "inspect", "dispatch"]


def _condition(rng: random.Random) -> dict[str, Any]:
    kind = rng.choices(["TAG", "SIGNAL", "VALUE"], [40, 35, 25])[0]
    if kind == "TAG":
        if rng.random() < 0.8:
            return {
                "condition_type": "TAG",
                "condition_key": rng.choice(TAGS),
                "operator": "EXISTS",
            }
        value: Any = rng.sample(TAGS, rng.randint(2, 5))
        return {"condition_type": "TAG", "condition_key": "tags", "operator": "IN", "value": value}
    if kind == "SIGNAL":
        op = rng.choice([">=", ">", "<=", "<"])
        return {
            "condition_type": "SIGNAL",
            "condition_key": rng.choice(SIGNALS),
            "operator": op,
            "value": round(rng.random(), 2),
        }
    key, vocabulary = rng.choice(
        [
            ("context.domain", DOMAINS),
            ("context.task_type", TASK_TYPES),
            ("context.channel", CHANNELS),
        ]
    )
    if rng.random() < 0.7:
        return {"condition_type": "VALUE", "condition_key": key, "operator": "=",
                "value": rng.choice(vocabulary)}  # fmt: skip
    return {"condition_type": "VALUE", "condition_key": key, "operator": "IN",
            "value": rng.sample(vocabulary, 2)}  # fmt: skip


def generate_rules(n_rules: int, seed: int, version: str) -> dict[str, Any]:
    """The ``spec`` of a seeded native snapshot of ``n_rules`` rules (2-3 conditions each)."""
    rng = random.Random(seed)
    rules = []
    for i in range(n_rules):
        emissions = [
            {
                "subtask_type": rng.choice(SUBTASK_TYPES),
                "subtask_name": f"r{i}_s{j}",
                "relationship_type": "EMITS",
                "params": {"level": rng.choice(["low", "high"]), "rule": i},
            }
            for j in range(rng.randint(1, 3))
        ]
        rules.append(
            {
                "rule_id": f"rule-{i:04d}",
                "rule_name": f"rule_{rng.randint(0, n_rules):05d}",
                "priority": rng.randint(0, 20),
                "conditions": [_condition(rng) for _ in range(rng.randint(2, 3))],
                "emissions": emissions,
            }
        )
    return {
        "version": version,
        "env": "dev",
        "engine": "native",
        "subtaskTypes": [{"name": "escalate", "default_params": {"level": "low", "team": "desk"}}],
        "rules": rules,
    }


def resource(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as a PolicySnapshot resource (what ``kubectl apply`` and ``pkg serve`` read)."""
    name = spec["version"].replace("@", "-").replace(".", "-")
    return {
        "apiVersion": "pkg.seedcore.io/v1alpha1",
        "kind": "PolicySnapshot",
        "metadata": {"name": name},
        "spec": spec,
    }


def _rego_condition(condition: dict[str, Any], number: int) -> str:
    """One condition as a Rego expression on ``input`` directly, so that OPA's rule
    index sees the equalities (``input.tags[_] == "tag5"``, ``input.context.x == "y"``)."""
    ctype, key, op = condition["condition_type"], condition["condition_key"], condition["operator"]
    value: Any = condition.get("value")
    if ctype == "TAG":
        if op == "EXISTS":
            return f"input.tags[_] == {json.dumps(key)}"
        members = "{" + ", ".join(json.dumps(v) for v in value) + "}"
        return f"some t{number} in input.tags; t{number} in {members}"
    if ctype == "SIGNAL":
        return f"input.signals[{json.dumps(key)}] {op} {json.dumps(value)}"
    path = "input.context." + ".".join(key.split(".")[1:])
    if op == "=":
        return f"{path} == {json.dumps(value)}"
    return f"{path} in {{{', '.join(json.dumps(v) for v in value)}}}"


def _order_key(rule: dict[str, Any]) -> tuple[int, str, str]:
    return (-int(rule.get("priority", 0)), rule["rule_name"], rule["rule_id"])


def rego_module(spec: dict[str, Any], package: str) -> str:
    """The rules of ``spec`` written directly in Rego; ``data.<package>.result`` is the answer.

    Rules are numbered in evaluation order (priority descending, then name, then id),
    so the matched numbers sorted are the output order.
    """
    defaults: dict[str, dict[str, Any]] = {
        t["name"]: dict(t.get("default_params") or {}) for t in spec.get("subtaskTypes", [])
    }
    ordered = sorted(spec["rules"], key=_order_key)
    lines = [
        f"package {package}",
        "",
    ]
    outputs = []
    for number, rule in enumerate(ordered):
        tests = "\n\t".join(_rego_condition(c, k) for k, c in enumerate(rule["conditions"]))
        lines.append(f"m contains {number} if {{\n\t{tests}\n}}\n")
        subtasks = [
            {
                "name": e["subtask_name"],
                "type": e["subtask_type"],
                "params": {**defaults.get(e["subtask_type"], {}), **(e.get("params") or {})},
                "rule_id": rule["rule_id"],
                "rule_name": rule["rule_name"],
            }
            for e in rule["emissions"]
        ]
        summary = {
            "rule_id": rule["rule_id"],
            "rule_name": rule["rule_name"],
            "rule_priority": int(rule.get("priority", 0)),
            "matched_conditions": len(rule["conditions"]),
            "emissions_count": len(rule["emissions"]),
        }
        outputs.append({"s": subtasks, "r": summary})
    lines.append(f"out := {json.dumps(outputs)}")
    lines.append("")
    lines.append("matched := sort(m)")
    lines.append(
        "result := {"
        '"subtasks": [s | some i in matched; some s in out[i].s], "dag": [], '
        '"rules": [out[i].r | some i in matched], '
        f'"snapshot": {json.dumps(spec["version"])}}}'
    )
    return "\n".join(lines) + "\n"


def request_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """Seeded task facts: 3-6 of the 24 tags, 8 of the 24 signals, a 3-key context."""
    rng = random.Random(seed)
    return [
        {
            "tags": rng.sample(TAGS, rng.randint(3, 6)),
            "signals": {key: round(rng.random(), 2) for key in rng.sample(SIGNALS, 8)},
            "context": {
                "domain": rng.choice(DOMAINS),
                "task_type": rng.choice(TASK_TYPES),
                "channel": rng.choice(CHANNELS),
            },
        }
        for _ in range(count)
    ]
