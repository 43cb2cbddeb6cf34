"""Benchmark: the compiled native engine against the reference interpreter, in one process.

Run with ``make bench-native`` (or ``.venv/bin/python -m benchmarks.bench_native``).
For each size (100 and 1,000 rules, 3 conditions each) it generates a seeded
snapshot with a realistic mix of conditions and a seeded set of task facts,
checks that both engines give identical results on every fact set, then
times each engine per call and prints evaluations/s, p50 and p99, and the
ratios (reference / compiled), in interleaved rounds so that both engines see
the same machine load (the machine is shared). ``PKGEvaluator`` (task-facts
checks included) is timed as well, since that is what callers pay. Method and
figures: the "Native engine" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.reference import ReferenceEngine
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.model import PKGSnapshotData

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


def _time_round(
    evaluate: Callable[[Mapping[str, Any]], Any], fact_sets: list[dict[str, Any]], passes: int
) -> dict[str, float]:
    """One round: every fact set ``passes`` times, each call timed; evaluations/s, p50, p99 (µs)."""
    latencies: list[int] = []
    clock = time.perf_counter_ns
    record = latencies.append
    started = clock()
    for _ in range(passes):
        for facts in fact_sets:
            t0 = clock()
            evaluate(facts)
            record(clock() - t0)
    elapsed = clock() - started
    latencies.sort()
    n = len(latencies)
    return {
        "rate": n / (elapsed / 1e9),
        "p50": latencies[n // 2] / 1000,
        "p99": latencies[min(n - 1, (n * 99) // 100)] / 1000,
    }


def bench(n_rules: int, n_facts: int, rounds: int, passes: int, seed: int) -> dict[str, Any]:
    """Time one size in interleaved rounds; print and return the figures."""
    snapshot = generate_snapshot(n_rules, seed)
    fact_sets = generate_facts(n_facts, seed + 1)
    load_started = time.perf_counter()
    compiled = NativeRuleEngine.from_snapshot(snapshot)
    load_ms = (time.perf_counter() - load_started) * 1000
    reference = ReferenceEngine.from_snapshot(snapshot)
    evaluator = PKGEvaluator(snapshot)
    matched = 0
    for facts in fact_sets:
        got = compiled.evaluate(facts)
        if got != reference.evaluate(facts):
            raise SystemExit(f"compiled and reference engines disagree on {facts!r}")
        matched += len(got["rules"])
    engines: dict[str, tuple[Callable[[Mapping[str, Any]], Any], int]] = {
        "compiled": (compiled.evaluate, passes),
        "PKGEvaluator": (evaluator.evaluate, passes),
        # The interpreter is ~100x slower: fewer calls per round keep rounds comparable in time.
        "reference": (reference.evaluate, 1),
    }
    for fn, _ in engines.values():  # warm-up: specialise the interpreter's hot paths
        for facts in fact_sets[:100]:
            fn(facts)
    samples: dict[str, list[dict[str, float]]] = {label: [] for label in engines}
    ratios: list[float] = []
    for _ in range(rounds):
        gc.collect()
        for label, (fn, count) in engines.items():
            samples[label].append(_time_round(fn, fact_sets, count))
        ratios.append(samples["reference"][-1]["p50"] / samples["compiled"][-1]["p50"])

    def best(label: str, key: str) -> float:
        values = [s[key] for s in samples[label]]
        return max(values) if key == "rate" else min(values)

    def median(label: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[label])

    print(
        f"\n{n_rules} rules x 3 conditions, {n_facts} fact sets, seed {seed}: "
        f"{matched / n_facts:.1f} rules match per call on average; compile {load_ms:.0f} ms; "
        f"{rounds} interleaved rounds"
    )
    print(
        f"  {'engine':<14}{'evals/s':>10}{'p50 µs':>9}{'p99 µs':>9}"
        "   (best round; median of rounds)"
    )
    for label in engines:
        print(
            f"  {label:<14}{best(label, 'rate'):>10,.0f}{best(label, 'p50'):>9.1f}"
            f"{best(label, 'p99'):>9.1f}   ({median(label, 'rate'):,.0f}/s, "
            f"p50 {median(label, 'p50'):.1f}, p99 {median(label, 'p99'):.1f})"
        )
    print(
        f"  reference / compiled p50, per round: median x{statistics.median(ratios):.0f} "
        f"(range x{min(ratios):.0f}-x{max(ratios):.0f}); throughput (best) "
        f"x{best('compiled', 'rate') / best('reference', 'rate'):.0f}"
    )
    return {"samples": samples, "ratios": ratios, "matched": matched / n_facts, "load_ms": load_ms}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make bench-native``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--fact-sets", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per size")
    parser.add_argument(
        "--passes", type=int, default=4, help="passes over the fact sets per round (compiled)"
    )
    parser.add_argument("--seed", type=int, default=20260101)
    args = parser.parse_args(argv)
    for n_rules in args.rules:
        bench(n_rules, args.fact_sets, args.rounds, args.passes, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
