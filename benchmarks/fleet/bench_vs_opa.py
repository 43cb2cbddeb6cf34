"""Benchmark: the sidecar's ``/v1/evaluate`` beside ``opa run --server`` on the same decision.

Run with ``.venv/bin/python -m benchmarks.fleet.bench_vs_opa [--quick]``; writes
``benchmarks/results/vs_opa.json`` (rendered into BENCHMARKS.md, "Side by side with OPA").

* HTTP: the sidecar (``pkg-sidecar`` serving a PolicySnapshot file) and ``opa run
  --server`` on the same seeded rules written directly in Rego
  (:mod:`benchmarks.fleet.opa_rules`), checked to answer every one of 50 requests
  identically first; then ``wrk`` (Debian's; installed with apt-get when missing)
  with a Lua script for the POST body, server pinned to CPU 0 and ``wrk`` to CPU 1
  (``taskset``), in interleaved rounds, 1 and 8 connections; req/s, p50/p99 and the
  server's CPU time per request (from ``/proc``).
* In-process: ``opa bench`` on the Rego against ``PKGEvaluator.evaluate`` on the
  native rules, the same input.
* Propagation: OPA's bundle polling (a bundle served by a small local HTTP server)
  with ``min_delay_seconds``/``max_delay_seconds`` at 1 s, and with OPA's defaults
  (one swap, watched in the background while the rest runs); beside it the standalone
  sidecar's file watch (``PKG_SNAPSHOT_POLL_SECONDS``, 1 s by default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet.opa_rules import generate_rules, rego_module, request_bodies, resource
from benchmarks.fleet.polling import BundleServer, opa_polling, sidecar_file_watch
from benchmarks.fleet.process_harness import (
    cpu_seconds,
    free_port,
    http_json,
    load,
    machine,
    opa_binary,
    sidecar_command,
    stop,
    wait_http,
    write_result,
)

__all__ = ["main"]

SERVER_CPU = "0"
CLIENT_CPU = "1"


def wrk_binary() -> str:
    """Debian's ``wrk``, installed as the test bed installs PostgreSQL when it is missing."""
    import shutil  # noqa: PLC0415

    found = shutil.which("wrk")
    if found is None:
        from pkg_testbed.system import apt_install  # noqa: PLC0415

        apt_install("wrk")
        found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed and apt-get did not install it")
    return found


def _lua(body: Any, work: Path, name: str) -> Path:
    script = work / f"{name}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body, separators=(',', ':')))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


def _seconds(text: str) -> float:
    for unit, factor in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(f"unknown wrk duration {text!r}")


def parse_wrk(output: str) -> dict[str, float]:
    """req/s and the 50th/99th percentile latency (ms) from ``wrk --latency`` output."""
    figures: dict[str, float] = {}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            figures[f"p{parts[0][:-1]}"] = _seconds(parts[1]) * 1000
        elif "requests in" in line:
            figures["requests"] = float(parts[0])
        elif line.strip().startswith("Non-2xx"):
            figures["errors"] = float(parts[-1])
    return figures


class Server:
    """One server pinned to CPU 0: the sidecar on a snapshot file, or OPA on Rego."""

    def __init__(self, kind: str, *, file: Path, rego: Path) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "sidecar":
            env = {**os.environ, "PKG_SNAPSHOT_FILE": str(file), "PKG_HTTP_PORT": str(self.port),
                   "PKG_ENV": "dev", "PKG_LOG_LEVEL": "WARNING"}  # fmt: skip
            argv = ["taskset", "-c", SERVER_CPU, *sidecar_command()]
            self.path = "/v1/evaluate"
        else:
            env = dict(os.environ)
            argv = ["taskset", "-c", SERVER_CPU, str(opa_binary()), "run", "--server", "--addr",
                    f"127.0.0.1:{self.port}", "--log-level", "error", str(rego)]  # fmt: skip
            self.path = "/v1/data/fleet/v1/result"
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_http(self.port, "/readyz" if kind == "sidecar" else "/health", self.proc)

    def body(self, facts: dict[str, Any]) -> Any:
        return facts if self.kind == "sidecar" else {"input": facts}

    def answer(self, facts: dict[str, Any]) -> Any:
        status, value = http_json(self.port, self.path, self.body(facts))
        if status != 200 or not isinstance(value, dict):
            raise RuntimeError(f"{self.kind} answered {status}: {value!r}")
        return value if self.kind == "sidecar" else value.get("result")

    def load(self, wrk: str, script: Path, connections: int, seconds: float) -> dict[str, float]:
        cpu0 = cpu_seconds(self.proc.pid)
        done = subprocess.run(
            ["taskset", "-c", CLIENT_CPU, wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s",
             "--latency", "-s", str(script), f"http://127.0.0.1:{self.port}{self.path}"],
            capture_output=True, text=True, check=True, timeout=seconds + 30,
        )  # fmt: skip
        figures = parse_wrk(done.stdout)
        used = cpu_seconds(self.proc.pid) - cpu0
        figures["cpu_us"] = used / max(figures.get("requests", 1), 1) * 1e6
        return figures


def check_equal(sidecar: Server, opa: Server, bodies: list[dict[str, Any]]) -> float:
    """Both servers' answers to every body are equal; the mean number of rules matched.

    The sidecar's answer also carries ``facts_version`` (which generation of its request
    facts it used): not part of the decision, left out of the comparison."""
    matched = 0
    for facts in bodies:
        ours, theirs = sidecar.answer(facts), opa.answer(facts)
        ours.pop("facts_version", None)  # the sidecar's request-facts generation, not the decision
        if ours != theirs:
            raise AssertionError(f"the answers differ for {facts}:\n{ours}\n{theirs}")
        matched += len(ours["rules"])
    return matched / len(bodies)


def http_side_by_side(
    *, spec: dict[str, Any], work: Path, rounds: int, seconds: float, wrk: str
) -> tuple[list[list[Any]], float]:
    n_rules = len(spec["rules"])
    file = work / f"vs-{n_rules}.json"
    file.write_text(json.dumps(resource(spec)))
    rego = work / f"vs-{n_rules}.rego"
    rego.write_text(rego_module(spec, "fleet.v1"))
    facts = request_bodies(1, seed=4242)[0]
    servers: list[Server] = []
    try:
        servers = [Server("sidecar", file=file, rego=rego), Server("opa", file=file, rego=rego)]
        matched = check_equal(servers[0], servers[1], request_bodies(50, seed=77))
        scripts = {s.kind: _lua(s.body(facts), work, f"{s.kind}-{n_rules}") for s in servers}
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        loads: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):
            for connections in (1, 8):
                for server in servers:
                    key = (server.kind, connections)
                    loads.setdefault(key, []).append(load()[0])
                    results.setdefault(key, []).append(
                        server.load(wrk, scripts[server.kind], connections, seconds)
                    )
        rows = []
        for (kind, connections), runs in results.items():
            best = max(runs, key=lambda r: r["rps"])
            rows.append([
                "sidecar /v1/evaluate" if kind == "sidecar" else "opa run --server", n_rules,
                connections, round(best["rps"]), round(statistics.median(r["rps"] for r in runs)),
                round(best["p50"], 3), round(best["p99"], 3), round(best["cpu_us"], 1),
                int(sum(r.get("errors", 0) for r in runs)), max(loads[(kind, connections)]),
            ])  # fmt: skip
        return rows, matched
    finally:
        for server in servers:
            stop(server.proc)


def in_process(spec: dict[str, Any], work: Path, iterations: int) -> list[list[Any]]:
    """``opa bench`` on the Rego against ``PKGEvaluator.evaluate`` on the same input (µs)."""
    from evaluator_sidecar.policy.evaluator import PKGEvaluator  # noqa: PLC0415
    from evaluator_sidecar.policy.resource import snapshot_from_resource  # noqa: PLC0415

    n_rules = len(spec["rules"])
    facts = request_bodies(1, seed=4242)[0]
    rego = work / f"bench-{n_rules}.rego"
    rego.write_text(rego_module(spec, "fleet.v1"))
    facts_file = work / "input.json"
    facts_file.write_text(json.dumps(facts))
    load_before = load()[0]
    done = subprocess.run(
        [str(opa_binary()), "bench", "--format", "json", "--count", "1", "--data", str(rego),
         "--input", str(facts_file), "data.fleet.v1.result"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    extra = json.loads(done.stdout)["Extra"]
    evaluator = PKGEvaluator(snapshot_from_resource(resource(spec)))
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        evaluator.evaluate(facts)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    opa_p50 = extra["histogram_timer_rego_query_eval_ns_median"] / 1000
    ours_p50 = samples[len(samples) // 2] / 1000
    return [
        ["opa bench (Go, in-process)", n_rules, round(opa_p50, 1),
         round(extra["histogram_timer_rego_query_eval_ns_99%"] / 1000, 1), 1.0, load_before],
        ["PKGEvaluator.evaluate (native, in-process)", n_rules, round(ours_p50, 1),
         round(samples[int(len(samples) * 0.99)] / 1000, 1), round(opa_p50 / ours_p50, 2),
         load()[0]],
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds, no default polling")
    args = parser.parse_args(argv)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.perf_counter()
    load_before = load()
    wrk = wrk_binary()
    with tempfile.TemporaryDirectory(prefix="pkg-vs-opa-") as tmp:
        work = Path(tmp)
        bundles = BundleServer(work / "bundles")
        default_watch = None
        try:
            if not args.quick:  # OPA's defaults wait 60-120 s: watched while the rest runs
                default_watch = opa_polling(bundles, work, name="defaults", delays=None)
                default_watch.start_swap()
            http_rows: list[list[Any]] = []
            matched: dict[int, float] = {}
            bench_rows: list[list[Any]] = []
            for n_rules in (100, 1000):
                spec = generate_rules(n_rules, seed=900 + n_rules, version=f"vs@{n_rules}.0.0")
                rows, matched[n_rules] = http_side_by_side(
                    spec=spec, work=work, rounds=2, seconds=2.0 if args.quick else 3.0, wrk=wrk
                )
                http_rows.extend(rows)
                bench_rows.extend(in_process(spec, work, 2000 if args.quick else 5000))
            swaps = 3 if args.quick else 5
            fast = opa_polling(bundles, work, name="fastest", delays=(1, 1))
            propagation = [fast.measure(swaps), sidecar_file_watch(work, swaps)]
            if default_watch is not None:
                propagation.append(default_watch.finish())
        finally:
            if default_watch is not None:
                default_watch.close()
            bundles.close()
    return _report(
        started_at=started_at, duration=time.perf_counter() - t_start, load_before=load_before,
        http_rows=http_rows, matched=matched, bench_rows=bench_rows, propagation=propagation,
    )  # fmt: skip


QUESTION = (
    "Answering the same decision, how do the sidecar's `/v1/evaluate` and `opa run --server` "
    "compare under the same load generator, in-process, and in how fast a policy change "
    "reaches them?"
)

METHOD = """\
`.venv/bin/python -m benchmarks.fleet.bench_vs_opa` (`benchmarks/fleet/bench_vs_opa.py`).
Seeded rule sets of 100 and 1,000 native rules (2-3 conditions: TAG EXISTS/IN, SIGNAL
bounds, VALUE =/IN; 1-3 emissions) and the same rules written directly in Rego, one Rego
rule per native rule, on `input` so that OPA's rule index sees the equalities
(`benchmarks/fleet/opa_rules.py`). Before timing, both servers answer 50 seeded requests
and every answer must be equal (the sidecar's extra `facts_version` field aside).
**HTTP**: the sidecar (`pkg-sidecar` on a PolicySnapshot file) and `opa run --server`,
each pinned to CPU 0 (`taskset`), Debian's `wrk` pinned to CPU 1 with a Lua script POSTing
one ~200-byte request (`/v1/evaluate`; OPA: `/v1/data/fleet/v1/result` with
`{"input": ...}`), keep-alive, 1 and 8 connections, interleaved rounds; the best round's
req/s and latency, the median req/s, and the server's CPU time per request from
`/proc/<pid>/stat` (what moves least with the shared machine's load). **In-process**:
`opa bench` on the Rego against `PKGEvaluator.evaluate` on the same input. **Propagation**:
a change is published at a random point of the poll period and the server is asked every
5 ms which revision it serves: OPA polling a bundle from a local HTTP server with
`min_delay_seconds`/`max_delay_seconds` 1/1 (their lowest whole values) and, in the full
run, with its defaults (60/120 s: one swap watched in the background); beside them the
standalone sidecar's file watch (`PKG_SNAPSHOT_POLL_SECONDS`=1)."""


def _report(
    *,
    started_at: str,
    duration: float,
    load_before: list[float],
    http_rows: list[list[Any]],
    matched: dict[int, float],
    bench_rows: list[list[Any]],
    propagation: list[dict[str, Any]],
) -> int:
    prop_rows = [[p["what"], p["swaps"], p["p50_ms"], p["max_ms"], p["load"]] for p in propagation]
    prop_rows.append(
        [
            "sidecar push (Redis PUBLISH, PostgreSQL read): the footprint section's pod table",
            "-",
            "-",
            "-",
            "-",
        ]
    )
    cpu = {(r[0].split()[0], r[1], r[2]): r[7] for r in http_rows}
    goals = [
        {
            "what": f"same decision as OPA, {n} rules (50 requests, {m:.1f} rules matched each)",
            "goal": "identical answers",
            "measured": "identical",
            "met": True,
        }
        for n, m in sorted(matched.items())
    ]
    for n in sorted(matched):
        ours, theirs = cpu[("sidecar", n, 8)], cpu[("opa", n, 8)]
        goals.append(
            {
                "what": f"server CPU per request at 8 connections, {n} rules",
                "goal": "<= OPA's",
                "measured": f"{ours} µs vs OPA {theirs} µs",
                "met": ours <= theirs,
            }
        )
    result = {
        "name": "vs_opa",
        "title": "Side by side with OPA: /v1/evaluate against opa run --server",
        "question": QUESTION,
        "method": METHOD,
        "machine": machine(load_before),
        "started_at": started_at,
        "duration_s": round(duration, 1),
        "tables": [
            {
                "title": "HTTP under wrk (server on CPU 0, wrk on CPU 1)",
                "columns": [
                    "server",
                    "rules",
                    "connections",
                    "req/s (best)",
                    "req/s (median)",
                    "p50 ms",
                    "p99 ms",
                    "server CPU µs/req",
                    "non-2xx",
                    "load 1m",
                ],
                "rows": http_rows,
            },
            {
                "title": "In-process evaluation, same rules and input",
                "columns": [
                    "evaluator",
                    "rules",
                    "p50 µs",
                    "p99 µs",
                    "OPA p50 / this p50",
                    "load 1m",
                ],
                "rows": bench_rows,
            },
            {
                "title": "Propagation of a policy change",
                "columns": ["mechanism", "swaps", "p50 ms", "max ms", "load 1m"],
                "rows": prop_rows,
            },
        ],
        "goals": goals,
        "notes": NOTES,
    }
    path = write_result("vs_opa", result)
    print(json.dumps({"tables": result["tables"], "goals": goals}, indent=1))
    print(f"wrote {path}")
    return 0


NOTES = """\
**Reading the figures.** The machine was shared with other engineers' test runs (load
average far above its 2 CPUs), so req/s and latency are far below a quiet machine's
(the sidecar's own harness gives ~17,000 req/s quiet for 13 rules) and p99 is mostly
waiting for a CPU. Server CPU time per request moves least with that load: compare the
two servers by it and by their ratio in the same round. The decision is the same by
construction and by check: both answer 50 seeded requests identically before anything
is timed.

* **HTTP**: at 1,000 rules OPA's server spends 8-16x the sidecar's CPU per request, at
  100 rules 3-4x: OPA evaluates the partial set rule by rule (its index narrows the
  candidate rules by the equalities, the signal bounds it cannot index), the sidecar's
  generated function dispatches by tag, value and signal at once. What bounds the
  sidecar is the Python HTTP round trip (~55 µs of its CPU per request on a quiet
  machine, BENCHMARKS.md "Sidecar HTTP API"), not the evaluation.
* **In-process**: the native engine's p50 is 9-16x below `opa bench`'s on the same
  rules and input (p99 of both is the machine's load).
* **Propagation**: OPA's bundle polling takes a random share of its polling period:
  with `min_delay_seconds`/`max_delay_seconds` at 1 s, 0-1 s plus the download and
  activation; with its defaults (60-120 s) a change took over a minute. The standalone
  sidecar's file watch behaves the same way with its 1 s period. The sidecars' push (a
  Redis `PUBLISH`, then one PostgreSQL read) does not wait for a period at all: one
  sidecar's figure is in the footprint section's table "as a pod runs it" (tens of
  ms on this machine, most of it reading and compiling the snapshot), 10-100
  sidecars in the propagation benchmark of this part (issue 18, item 1)."""


if __name__ == "__main__":
    sys.exit(main())
