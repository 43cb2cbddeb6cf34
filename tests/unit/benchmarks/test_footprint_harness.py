"""The sidecar-footprint benchmarks' pure pieces: wrk's report read right, Rego rules in order.

Whether the generated Rego decides as the native engine does is checked by
``bench_vs_opa`` against a running OPA on every run, before anything is timed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from benchmarks.fleet.bench_vs_opa import parse_wrk
from benchmarks.fleet.opa_rules import generate_rules, rego_module

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:40000/v1/evaluate
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.00us  100.00us   2.00ms   90.00%
  Latency Distribution
     50%  480.00us
     75%  600.00us
     90%    1.10ms
     99%    2.50ms
  45000 requests in 3.00s, 30.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:  15000.00
Transfer/sec:     10.00MB
"""


def test_wrk_report_gives_rate_percentiles_in_ms_and_errors() -> None:
    assert parse_wrk(WRK_OUTPUT) == {
        "rps": 15000.0,
        "p50": pytest.approx(0.48),
        "p99": pytest.approx(2.5),
        "requests": 45000.0,
        "errors": 7.0,
    }


def test_rego_numbers_rules_in_evaluation_order_one_rego_rule_each() -> None:
    spec = generate_rules(40, seed=3, version="t@1.0.0")
    module = rego_module(spec, "fleet.t")
    assert module.startswith("package fleet.t\n")
    assert module.count("m contains ") == 40
    (line,) = [line for line in module.splitlines() if line.startswith("out := ")]
    summaries = [entry["r"] for entry in json.loads(line.removeprefix("out := "))]
    # Rego's rule k is the k-th the native engine evaluates: priority descending, then name, id.
    keys = [(-r["rule_priority"], r["rule_name"], r["rule_id"]) for r in summaries]
    assert keys == sorted(keys)
    assert {r["rule_id"] for r in summaries} == {r["rule_id"] for r in spec["rules"]}


def test_the_generator_is_seeded() -> None:
    assert generate_rules(20, seed=1, version="a@1.0.0") == generate_rules(
        20, seed=1, version="a@1.0.0"
    )
    assert generate_rules(20, seed=1, version="a@1.0.0") != generate_rules(
        20, seed=2, version="a@1.0.0"
    )
