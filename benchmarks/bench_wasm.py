"""Benchmark: the WASM engine's evaluation, its public-API baseline, and OPA's own evaluator.

Run with ``make bench-wasm`` (or ``.venv/bin/python -m benchmarks.bench_wasm``).
For each policy it times, in one run on one machine:

* ``fast``: ``OpaWasm.evaluate`` as callers use it (JSON in, result dict out)
  through the engine's own call path (preallocated C-API call, raw host
  callbacks, reads straight from linear memory);
* ``public``: the same evaluation through wasmtime-py's public API
  (``Func.__call__``, ``Memory.read``/``write``), in the same process;
* ``opa``: OPA's own Go evaluator on the same .rego, data and input, measured
  by ``opa bench`` (its median and 99th percentile per evaluation);
* for the reference rule set, the native engine on the same snapshot.

Every call is timed with ``perf_counter_ns`` after a warm-up, with the garbage
collector off; p50 and p99 are per evaluation. The policies:

* ``empty``: returns a constant (built here): the engine's fixed cost;
* ``seed``: policies/seed, the reference rule set's rule-001 and rule-002 written
  by hand;
* ``reference``: policies/reference, the rule language interpreted in Rego
  over the reference snapshot's 13 rules (``data``);
* ``sla``: policies/sla, six host-provided builtins per evaluation;
* ``rules-N`` / ``rules-N-data``: Rego written directly for N generated rules
  (``benchmarks/wasm_rules.py``), the rule table as a Rego constant / as ``data``.

The input is the task facts of docs/rule-language.md's first example (119
bytes of JSON; the reference run adds ``now``). Loading is timed too: a cold
compile, a load from the disk cache (a new process), and a load of a module
already compiled in-process.
Method and figures: the "WASM engine" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from benchmarks.bench_native import generate_facts
from benchmarks.wasm_rules import rules_rego
from evaluator_sidecar.policy.engines.native import NativeRuleEngine
from evaluator_sidecar.policy.engines.wasm import OpaWasm, WasmLimits
from evaluator_sidecar.policy.engines.wasm.cache import clear_memory_cache
from evaluator_sidecar.policy.engines.wasm.interpreter import rules_as_data
from evaluator_sidecar.policy.engines.wasm.runtime import get_runtime
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
EXAMPLE_FACTS: dict[str, Any] = {
    "tags": ["vip", "allergen"],
    "signals": {"x2": 0.8, "x6": 0.95},
    "context": {"domain": "hotel_ops", "task_type": "guest_request"},
}
SLA_FACTS: dict[str, Any] = {
    "tags": ["vip"],
    "context": {"ticket_opened": "2026-01-03T08:00:00Z", "guest": "Ben", "room": 512},
    "now": "2026-01-03T11:30:00Z",
}
EMPTY_REGO = 'package pkg\n\nresult := {"subtasks": [], "dag": [], "rules": []}\n'


@dataclass(frozen=True)
class Timing:
    p50_us: float
    p99_us: float

    @property
    def per_second(self) -> float:
        return 1e6 / self.p50_us if self.p50_us else 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    rego: Path
    query: str
    wasm: bytes
    data: dict[str, Any]
    facts: dict[str, Any]
    native: NativeRuleEngine | None = None


def find_opa() -> Path:
    sys.path.insert(0, str(ROOT / "testbed"))
    from pkg_testbed.binaries import ensure  # noqa: PLC0415 - importable only after the path insert

    return ensure("opa")


def time_calls(call: Callable[[], Any], iterations: int, warmup: int = 300) -> Timing:
    for _ in range(warmup):
        call()
    samples = [0] * iterations
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(iterations):
            started = clock()
            call()
            samples[i] = clock() - started
    finally:
        gc.enable()
    samples.sort()
    return Timing(samples[iterations // 2] / 1000, samples[int(iterations * 0.99)] / 1000)


def opa_bench(opa: Path, scenario: Scenario, work: Path) -> Timing:
    data_file = work / f"{scenario.name}-data.json"
    input_file = work / f"{scenario.name}-input.json"
    data_file.write_text(json.dumps(scenario.data))
    input_file.write_text(json.dumps(scenario.facts))
    done = subprocess.run(
        [
            str(opa), "bench", "--format", "json", "--count", "1",
            "--data", str(scenario.rego), "--data", str(data_file), "--input", str(input_file),
            scenario.query,
        ],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    extra = json.loads(done.stdout)["Extra"]
    return Timing(
        extra["histogram_timer_rego_query_eval_ns_median"] / 1000,
        extra["histogram_timer_rego_query_eval_ns_99%"] / 1000,
    )


def build_empty(opa: Path, work: Path) -> tuple[Path, bytes]:
    rego = work / "empty.rego"
    rego.write_text(EMPTY_REGO)
    bundle = work / "empty.tar.gz"
    subprocess.run(
        [str(opa), "build", "-t", "wasm", "-e", "pkg/result", "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    import tarfile  # noqa: PLC0415 - only the benchmark unpacks bundles

    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        return rego, member.read()


def build_wasm(opa: Path, rego: Path, entrypoint: str) -> bytes:
    bundle = rego.with_suffix(".tar.gz")
    subprocess.run(
        [str(opa), "build", "-t", "wasm", "-e", entrypoint, "-o", str(bundle), str(rego)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    import tarfile  # noqa: PLC0415 - only the benchmark unpacks bundles

    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/policy.wasm")
        assert member is not None
        return member.read()


def rule_scenarios(opa: Path, work: Path, counts: list[int]) -> list[Scenario]:
    """Rego written directly for N generated rules: the rule table as Rego, and as data."""
    facts = generate_facts(1, seed=3)[0]
    out = []
    for n in counts:
        for in_data in (False, True):
            name = f"rules-{n}{'-data' if in_data else ''}"
            text, data = rules_rego(n, table_in_data=in_data)
            rego = work / f"{name}.rego"
            rego.write_text(text)
            wasm = build_wasm(opa, rego, "pkg/gen/result")
            out.append(Scenario(name, rego, "data.pkg.gen.result", wasm, data, facts))
    return out


def scenarios(opa: Path, work: Path) -> list[Scenario]:
    text = (ROOT / "tests" / "data" / "reference-snapshot.yaml").read_text()
    reference = snapshot_from_resource(select_policy_snapshot(load_documents(text)))
    empty_rego, empty_wasm = build_empty(opa, work)
    return [
        Scenario("empty", empty_rego, "data.pkg.result", empty_wasm, {}, EXAMPLE_FACTS),
        Scenario(
            "seed",
            POLICIES / "seed" / "seed.rego",
            "data.pkg.seed.result",
            (POLICIES / "seed" / "policy.wasm").read_bytes(),
            {},
            EXAMPLE_FACTS,
        ),
        Scenario(
            "reference",
            POLICIES / "reference" / "reference.rego",
            "data.pkg.result",
            (POLICIES / "reference" / "policy.wasm").read_bytes(),
            rules_as_data(reference),
            {**EXAMPLE_FACTS, "now": "2025-01-01T00:00:00Z"},
            NativeRuleEngine.from_snapshot(reference),
        ),
        Scenario(
            "sla",
            POLICIES / "sla" / "sla.rego",
            "data.pkg.sla.result",
            (POLICIES / "sla" / "policy.wasm").read_bytes(),
            {},
            SLA_FACTS,
        ),
    ]


def time_loading(wasm: bytes, data: dict[str, Any], work: Path, repeats: int) -> dict[str, Timing]:
    """Cold compile, load from the disk cache (as a new process would), load from memory."""
    cold, disk, memory = [], [], []
    for i in range(repeats):
        cache = work / f"load-cache-{i}"
        clear_memory_cache()
        started = time.perf_counter_ns()
        OpaWasm.load_from_bytes(wasm, data=data, cache_dir=cache)
        cold.append(time.perf_counter_ns() - started)
        clear_memory_cache()
        started = time.perf_counter_ns()
        engine = OpaWasm.load_from_bytes(wasm, data=data, cache_dir=cache)
        disk.append(time.perf_counter_ns() - started)
        assert engine.compile_source == "disk"
        started = time.perf_counter_ns()
        OpaWasm.load_from_bytes(wasm, data=data, cache_dir=cache)
        memory.append(time.perf_counter_ns() - started)

    def median(values: list[int]) -> Timing:
        values.sort()
        return Timing(values[len(values) // 2] / 1000, values[-1] / 1000)

    return {"cold compile": median(cold), "disk cache": median(disk), "in-process": median(memory)}


def loading_report(opa: Path, work: Path) -> dict[str, float]:
    """Times loading the reference policy and prints them."""
    reference = next(s for s in scenarios(opa, work) if s.name == "reference")
    loading = time_loading(reference.wasm, reference.data, work, repeats=5)
    print("loading the reference policy (394 KB .wasm), median of 5 (max):")
    for name, timing in loading.items():
        print(f"  {name:13} {timing.p50_us / 1000:8.2f} ms  ({timing.p99_us / 1000:.2f} ms)")
    return {k: round(v.p50_us / 1000, 2) for k, v in loading.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the WASM engine beside OPA's evaluator."
    )
    parser.add_argument("--iterations", type=int, default=20_000, help="timed calls (fast path)")
    parser.add_argument(
        "--public-iterations", type=int, default=3_000, help="timed calls (public API)"
    )
    parser.add_argument("--opa", type=Path, help="the opa binary (default: the test bed's)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--rules",
        type=int,
        nargs="*",
        default=[100, 1000],
        help="also Rego written for this many generated rules (table as Rego and as data)",
    )
    parser.add_argument("--only", nargs="*", default=[], help="run only these policies")
    args = parser.parse_args(argv)

    runtime = get_runtime()
    if runtime is None or not runtime.fast_path:
        print("bench-wasm needs wasmtime with the fast path available", file=sys.stderr)
        return 2
    opa = args.opa or find_opa()
    version = subprocess.run(
        [str(opa), "version"], capture_output=True, text=True, check=True
    ).stdout
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    opa_version = version.splitlines()[0].removeprefix("Version: ")
    print(f"wasmtime {runtime.version}; opa {opa_version}; epoch tick {runtime.ticker.tick_ms} ms")
    print(f"input: {len(orjson.dumps(EXAMPLE_FACTS))} bytes of task facts (the example)\n")

    report: dict[str, Any] = {"policies": {}}
    with tempfile.TemporaryDirectory(prefix="bench-wasm-") as tmp:
        work = Path(tmp)
        header = (
            f"{'policy':10} {'path':8} {'p50 µs':>9} {'p99 µs':>9} {'evals/s':>9}  vs fast (p50)"
        )
        print(header)
        print("-" * len(header))
        chosen = scenarios(opa, work) + rule_scenarios(opa, work, args.rules)
        for scenario in [s for s in chosen if not args.only or s.name in args.only]:
            engine = OpaWasm.load_from_bytes(
                scenario.wasm,
                data=scenario.data,
                cache_dir=work / "cache",
                # A loaded shared machine must not turn a slow call into a failed one.
                limits=WasmLimits(deadline_ms=5_000),
            )
            fast_result = engine.evaluate(scenario.facts)
            assert engine.evaluate_public(scenario.facts) == fast_result
            facts = scenario.facts
            rows: dict[str, Timing] = {
                "fast": time_calls(partial(engine.evaluate, facts), args.iterations),
                "public": time_calls(
                    partial(engine.evaluate_public, facts), args.public_iterations
                ),
                "opa": opa_bench(opa, scenario, work),
            }
            if scenario.native is not None:
                assert scenario.native.evaluate(facts) == fast_result
                rows["native"] = time_calls(
                    partial(scenario.native.evaluate, facts), args.iterations
                )
            fast = rows["fast"]
            for path, timing in rows.items():
                ratio = "" if path == "fast" else f"{timing.p50_us / fast.p50_us:6.2f}x"
                print(
                    f"{scenario.name:10} {path:8} {timing.p50_us:9.1f} {timing.p99_us:9.1f} "
                    f"{timing.per_second:9.0f}  {ratio}"
                )
            report["policies"][scenario.name] = {
                path: {"p50_us": round(t.p50_us, 2), "p99_us": round(t.p99_us, 2)}
                for path, t in rows.items()
            }
            print()
        if not args.only or "loading" in args.only:
            report["loading_ms"] = loading_report(opa, work)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
