"""Benchmark: the compiled native engine against the reference interpreter, in one process.

Run with ``make bench-native`` (or ``.venv/bin/python -m benchmarks.bench_native``).
For each size (100 and 1,000 rules, 3 conditions each) it generates a seeded
snapshot with a realistic mix of conditions and a seeded set of task facts,
checks that both engines give identical results on every fact set, then
times each engine per call and prints evaluations/s, p50 and p99, and the
ratios (reference / compiled). ``PKGEvaluator`` (task-facts checks included)
is timed as well, since that is what callers pay. Method and figures: the
"Native engine" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from evaluator_sidecar.engines.native import NativeRuleEngine
from evaluator_sidecar.engines.reference import ReferenceEngine
from evaluator_sidecar.evaluator import PKGEvaluator
from evaluator_sidecar.model import PKGSnapshotData

__all__ = ["generate_facts", "generate_snapshot", "main"]

TAGS = [f"tag{i}" for i in range(60)]
SIGNALS = [f"x{i}" for i in range(24)]
DOMAINS = ["hotel_ops", "resort_ops", "spa", "dining", "transport", "security"]
TASK_TYPES = ["guest_request", "food_order", "maintenance", "checkin", "checkout", "complaint"]
CHANNELS = ["web", "app", "phone", "desk"]
NAMES = ["Ben", "Ann", "Cy", "Dee", "Eli", "Fay", "Gus"]
PREDICATES = ["hasTemporaryAccess", "loyaltyPoints", "membershipTier", "roomNumber", "email"]
TIERS = ["bronze", "silver", "gold", "platinum"]
NOW = "2026-01-01T12:00:00Z"


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights)[0]


def _condition(rng: random.Random) -> dict[str, Any]:
    ctype = _pick(rng, [("TAG", 40), ("SIGNAL", 35), ("VALUE", 20), ("FACT", 5)])
    if ctype == "TAG":
        op = _pick(rng, [("EXISTS", 50), ("=", 20), ("!=", 10), ("IN", 15), ("MATCHES", 5)])
        tag = rng.choice(TAGS)
        if op == "EXISTS":
            return {"condition_type": "TAG", "condition_key": tag, "operator": op}
        if op == "IN":
            value: Any = rng.sample(TAGS, rng.randint(2, 5))
        elif op == "MATCHES":
            value = f"^tag{rng.randint(1, 5)}[0-9]$"
        else:
            value = tag
        return {"condition_type": "TAG", "condition_key": "tags", "operator": op, "value": value}
    if ctype == "SIGNAL":
        op = _pick(
            rng,
            [
                (">=", 20),
                (">", 20),
                ("<=", 15),
                ("<", 15),
                ("=", 5),
                ("!=", 5),
                ("IN", 5),
                ("EXISTS", 15),
            ],
        )
        key = rng.choice(SIGNALS)
        condition = {"condition_type": "SIGNAL", "condition_key": key, "operator": op}
        if op == "IN":
            condition["value"] = [round(rng.random(), 1) for _ in range(3)]
        elif op != "EXISTS":
            number = round(rng.random(), 2)
            # Half as text, as PostgreSQL stores it.
            condition["value"] = str(number) if rng.random() < 0.5 else number
        return condition
    if ctype == "VALUE":
        op = _pick(
            rng,
            [("=", 50), ("!=", 10), ("IN", 15), (">=", 8), ("<", 7), ("EXISTS", 5), ("MATCHES", 5)],
        )
        if op in (">=", "<"):
            return {
                "condition_type": "VALUE",
                "condition_key": "context.floor",
                "operator": op,
                "value": rng.randint(1, 20),
            }
        if op == "MATCHES":
            return {
                "condition_type": "VALUE", "condition_key": "context.guest.name",
                "operator": op, "value": f"^{rng.choice(NAMES)[0]}",
            }  # fmt: skip
        if op == "EXISTS":
            return {"condition_type": "VALUE", "condition_key": "context.channel", "operator": op}
        key, vocabulary = rng.choice(
            [
                ("context.domain", DOMAINS),
                ("context.task_type", TASK_TYPES),
                ("context.channel", CHANNELS),
            ]
        )
        value = rng.sample(vocabulary, 2) if op == "IN" else rng.choice(vocabulary)
        return {"condition_type": "VALUE", "condition_key": key, "operator": op, "value": value}
    op = _pick(rng, [("EXISTS", 40), ("=", 30), ("IN", 10), (">=", 10), ("MATCHES", 10)])
    subject = f"guest:{rng.choice(NAMES)}"
    if op == "EXISTS":
        key = f"{subject} hasTemporaryAccess"
        return {"condition_type": "FACT", "condition_key": key, "operator": op}
    if op in ("=", "IN"):
        value = rng.choice(TIERS) if op == "=" else rng.sample(TIERS, 2)
        return {
            "condition_type": "FACT",
            "condition_key": "membershipTier",
            "operator": op,
            "value": value,
        }
    if op == ">=":
        return {
            "condition_type": "FACT",
            "condition_key": "loyaltyPoints",
            "operator": op,
            "value": rng.randint(0, 5000),
        }
    return {
        "condition_type": "FACT",
        "condition_key": f"{subject} email",
        "operator": op,
        "value": "@example\\.com$",
    }


def generate_snapshot(n_rules: int, seed: int, conditions_per_rule: int = 3) -> PKGSnapshotData:
    """A seeded snapshot of ``n_rules`` rules with a realistic mix of conditions."""
    rng = random.Random(seed)
    rules = []
    for i in range(n_rules):
        emissions = []
        for j in range(rng.randint(1, 3)):
            emissions.append(
                {
                    "subtask_type": rng.choice(["escalate", "notify", "inspect", "dispatch"]),
                    "subtask_name": f"r{i}_s{j}",
                    "relationship_type": _pick(rng, [("EMITS", 60), ("ORDERS", 25), ("GATE", 15)]),
                    "params": {"level": rng.choice(["low", "high"]), "rule": i},
                }
            )
        rules.append(
            {
                "rule_id": f"rule-{i:04d}",
                "rule_name": f"rule_{rng.randint(0, n_rules):05d}",
                "priority": rng.randint(0, 20),
                "disabled": rng.random() < 0.05,
                "conditions": [_condition(rng) for _ in range(conditions_per_rule)],
                "emissions": emissions,
            }
        )
    facts: list[dict[str, Any]] = []
    for name in NAMES:
        facts.append(
            {"subject": f"guest:{name}", "predicate": "membershipTier", "object": rng.choice(TIERS)}
        )
        facts.append(
            {
                "subject": f"guest:{name}",
                "predicate": "loyaltyPoints",
                "object": rng.randint(0, 6000),
            }
        )
        facts.append(
            {
                "subject": f"guest:{name}",
                "predicate": "email",
                "object": f"{name.lower()}@example.com",
            }
        )
        if rng.random() < 0.5:
            facts.append(
                {
                    "subject": f"guest:{name}", "predicate": "hasTemporaryAccess",
                    "object": {"service": "lounge"},
                    "valid_from": "2026-01-01T10:00:00Z", "valid_to": "2026-01-01T14:00:00Z",
                }
            )  # fmt: skip
    return PKGSnapshotData(
        id=0,
        version=f"bench@{n_rules}.0.0",
        engine="native",
        wasm_artifact=None,
        checksum=None,
        rules=rules,
        subtask_types=[{"name": "escalate", "default_params": {"level": "low", "team": "desk"}}],
        facts=facts,
    )


def generate_facts(count: int, seed: int) -> list[dict[str, Any]]:
    """Seeded task facts: 3-6 tags, 8 signals, a small context, rarely a request fact."""
    rng = random.Random(seed)
    sets = []
    for _ in range(count):
        task: dict[str, Any] = {
            "tags": rng.sample(TAGS, rng.randint(3, 6)),
            "signals": {key: round(rng.random(), 2) for key in rng.sample(SIGNALS, 8)},
            "context": {
                "domain": rng.choice(DOMAINS),
                "task_type": rng.choice(TASK_TYPES),
                "channel": rng.choice(CHANNELS),
                "floor": rng.randint(1, 20),
                "guest": {"name": rng.choice(NAMES)},
            },
            "now": NOW,
        }
        if rng.random() < 0.1:
            task["facts"] = [
                {
                    "subject": f"guest:{rng.choice(NAMES)}",
                    "predicate": "membershipTier",
                    "object": rng.choice(TIERS),
                }
            ]
        sets.append(task)
    return sets


def _time_calls(
    evaluate: Callable[[Mapping[str, Any]], Any], fact_sets: list[dict[str, Any]], rounds: int
) -> tuple[list[float], float]:
    """Per-call latencies (µs) over ``rounds`` passes, and evaluations per second."""
    for facts in fact_sets[:50]:  # warm-up
        evaluate(facts)
    gc.collect()
    latencies: list[float] = []
    clock = time.perf_counter_ns
    started = clock()
    for _ in range(rounds):
        for facts in fact_sets:
            t0 = clock()
            evaluate(facts)
            latencies.append((clock() - t0) / 1000)
    elapsed = (clock() - started) / 1e9
    return latencies, len(latencies) / elapsed


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def bench(n_rules: int, n_facts: int, rounds: int, seed: int) -> dict[str, Any]:
    """Time one size; returns the figures (and prints them)."""
    snapshot = generate_snapshot(n_rules, seed)
    fact_sets = generate_facts(n_facts, seed + 1)
    load_started = time.perf_counter()
    compiled = NativeRuleEngine.from_snapshot(snapshot)
    load_ms = (time.perf_counter() - load_started) * 1000
    reference = ReferenceEngine.from_snapshot(snapshot)
    evaluator = PKGEvaluator(snapshot)
    matched = 0
    for facts in fact_sets:
        got, want = compiled.evaluate(facts), reference.evaluate(facts)
        if got != want:
            raise SystemExit(f"compiled and reference engines disagree on {facts!r}")
        matched += len(got["rules"])
    rows = {}
    for label, fn, passes in (
        ("compiled", compiled.evaluate, rounds),
        ("PKGEvaluator", evaluator.evaluate, rounds),
        ("reference", reference.evaluate, max(1, rounds // 5)),
    ):
        latencies, rate = _time_calls(fn, fact_sets, passes)
        rows[label] = {
            "rate": rate,
            "p50": statistics.median(latencies),
            "p99": _percentile(latencies, 99),
        }
    print(
        f"\n{n_rules} rules x 3 conditions, {n_facts} fact sets, seed {seed}: "
        f"{matched / n_facts:.1f} rules match per call on average; compile {load_ms:.0f} ms"
    )
    print(f"  {'engine':<14}{'evals/s':>12}{'p50 µs':>10}{'p99 µs':>10}")
    for label, row in rows.items():
        print(f"  {label:<14}{row['rate']:>12,.0f}{row['p50']:>10.1f}{row['p99']:>10.1f}")
    ref, comp = rows["reference"], rows["compiled"]
    print(
        f"  reference / compiled: p50 x{ref['p50'] / comp['p50']:.1f}, "
        f"p99 x{ref['p99'] / comp['p99']:.1f}, throughput x{comp['rate'] / ref['rate']:.1f}"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make bench-native``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--fact-sets", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    for n_rules in args.rules:
        bench(n_rules, args.fact_sets, args.rounds, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
