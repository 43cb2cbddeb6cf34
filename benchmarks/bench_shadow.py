"""The shadow step's cost to callers: /v1/evaluate latency with and without sampling.

Method: like ``bench_sidecar.py`` (server pinned to CPU 0, load generator to CPU
1, same request and reference snapshot), the sidecar's own HTTP stack serves
with a shadow candidate (the reference snapshot under another version) sampled
at 0 (no shadow), 0.1 and 1.0 of requests. Modes run in interleaved rounds; each
mode's best round by server CPU per request is reported, and p50/p99 latencies
are given as ratios to the no-shadow mode (the machine is shared and noisy).

Usage::

    python -m benchmarks.bench_shadow                      # about 40 s
    python -m benchmarks.bench_shadow --connections 8 --rounds 3 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.bench_sidecar import ROOT, SNAPSHOT, _cpu_seconds, _free_port, _pin
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)
from evaluator_sidecar.sidecar.http import SidecarAPI, serve_api
from evaluator_sidecar.sidecar.manager import PKGManager
from evaluator_sidecar.signals import ShadowSpec, SnapshotRef

MODES = ("0", "0.1", "1.0")


async def _serve(port: int, rate: float) -> None:
    snapshot = snapshot_from_resource(select_policy_snapshot(load_documents(SNAPSHOT.read_text())))
    manager = PKGManager(None, None, env=snapshot.env, device_id="bench", self_test=False)
    await manager.activate_snapshot(snapshot)
    if rate > 0:
        candidate = PKGEvaluator(dataclasses.replace(snapshot, version="shadow@9.9.9"))

        async def prepare(ref: SnapshotRef) -> PKGEvaluator:
            return candidate

        manager.shadow._prepare = prepare
        spec = ShadowSpec(SnapshotRef("shadow@9.9.9", None, None), rate, "bench", "bench")
        await manager.shadow.follow(spec, "bench")
        stopping = asyncio.Event()
        asyncio.get_running_loop().create_task(manager.shadow.run(stopping))
    await serve_api(SidecarAPI(manager), "127.0.0.1", port, 65536)
    print("READY", flush=True)
    await asyncio.Event().wait()


def _one(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    port = _free_port()
    here = [sys.executable, "-m", "benchmarks.bench_shadow"]
    server = subprocess.Popen(
        [*here, "serve", "--port", str(port), "--rate", mode], stdout=subprocess.PIPE, cwd=ROOT
    )
    try:
        assert server.stdout is not None
        if b"READY" not in server.stdout.readline():
            raise RuntimeError(f"server for sample rate {mode} did not start")
        before = _cpu_seconds(server.pid)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_sidecar",
                "load",
                "--port",
                str(port),
                "--cpu",
                "1",
                "--connections",
                str(args.connections),
                "--duration",
                str(args.duration),
                "--warmup",
                "1",
            ],
            capture_output=True,
            check=True,
            cwd=ROOT,
            timeout=args.duration + 60,
        )
        cpu = _cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    result = {"rate": mode, **json.loads(out.stdout.decode().strip().splitlines()[-1])}
    result["server_cpu_us_per_request"] = round(cpu / result["total_responses"] * 1e6, 1)
    print(json.dumps(result), flush=True)
    return result


def compare(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results = [_one(args, mode) for _ in range(args.rounds) for mode in MODES]
    best = {
        mode: min(
            (r for r in results if r["rate"] == mode),
            key=lambda r: r["server_cpu_us_per_request"],
        )
        for mode in MODES
    }
    base = best["0"]
    print(f"best round per sample rate ({args.connections} connection(s)):")
    for mode, r in best.items():
        print(
            f"  rate {mode:>4}: p50 {r['p50_us']:>7} us ({r['p50_us'] / base['p50_us']:.2f}x)  "
            f"p99 {r['p99_us']:>7} us ({r['p99_us'] / base['p99_us']:.2f}x)  "
            f"cpu {r['server_cpu_us_per_request']} us/req "
            f"({r['server_cpu_us_per_request'] / base['server_cpu_us_per_request']:.2f}x)"
        )
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "serve":
        _pin(0)
        asyncio.run(_serve(args.port, args.rate))
        return
    compare(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
