"""Load generator for the sidecar's HTTP API, and the comparison that chose its server stack.

Method: the server runs in its own process pinned to CPU 0 (one core), the
load generator in another process pinned to CPU 1. The generator keeps
``--connections`` keep-alive connections on loopback, each with one request in
flight (no pipelining), sends the same ~100-byte ``POST /v1/evaluate`` for
``--duration`` seconds (after a warm-up) or ``--max-requests`` requests,
whichever comes first, and records every request's latency from write to last
byte. It is an ``asyncio.Protocol`` driven by callbacks so that the client is
cheaper per request than any server it measures.

Servers compared (same manager, same evaluator, same JSON handling; only the
HTTP stack differs):

- ``httptools``: the sidecar's own server (``evaluator_sidecar.sidecar.http``);
- ``aiohttp``: an aiohttp ``web.Application`` with one handler calling the
  same ``SidecarAPI.evaluate``.

Each with the default asyncio loop and with uvloop.

Usage::

    python benchmarks/bench_sidecar.py                 # the comparison (about 1 minute)
    python benchmarks/bench_sidecar.py --stacks httptools+uvloop --duration 10
    python benchmarks/bench_sidecar.py load --port 8080 --duration 5   # against a running sidecar
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from evaluator_sidecar.policy.resource import (
    load_documents,
    select_policy_snapshot,
    snapshot_from_resource,
)
from evaluator_sidecar.sidecar.http import Request, SidecarAPI, serve_api
from evaluator_sidecar.sidecar.manager import PKGManager

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "reference-snapshot.yaml"
BODY = (
    b'{"tags":["vip"],"signals":{"x2":0.8},'
    b'"context":{"domain":"hotel_ops","task_type":"guest_request"}}'
)
STACKS = ("httptools+uvloop", "httptools", "aiohttp+uvloop", "aiohttp")


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


# --------------------------------------------------------------------------- server side


async def _serve(stack: str, port: int, snapshot_text: str) -> None:
    doc = select_policy_snapshot(load_documents(snapshot_text))
    snapshot = snapshot_from_resource(doc)
    # Self-test off: this measures serving, and the reference fixtures are the engines' business.
    manager = PKGManager(None, None, env=snapshot.env, device_id="bench", self_test=False)
    await manager.activate_snapshot(snapshot)
    api = SidecarAPI(manager)
    if stack.startswith("httptools"):
        await serve_api(api, "127.0.0.1", port, 65536)
    else:

        async def evaluate(request: web.Request) -> web.Response:
            body = await request.read()
            req = Request(
                "POST",
                "/v1/evaluate",
                request.query_string.encode(),
                {b"content-type": (request.content_type or "").encode()},
                body,
            )
            resp = api.evaluate(req)
            return web.Response(status=resp.status, body=resp.body, content_type="application/json")

        app = web.Application(client_max_size=65536)
        app.router.add_post("/v1/evaluate", evaluate)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", flush=True)
    await asyncio.Event().wait()


def serve_main(args: argparse.Namespace) -> None:
    _pin(args.cpu)
    if args.stack.endswith("+uvloop"):
        import uvloop  # noqa: PLC0415 - only for the comparison; not a dependency

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(args.stack, args.port, Path(args.snapshot).read_text()))


# --------------------------------------------------------------------------- client side


class _Client(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        if not self.run.more():
            assert self.transport is not None
            self.transport.close()
            return
        self.sent = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            status = int(head[9:12])
            self.buf = self.buf[total:]
            self.run.record(status, time.perf_counter_ns() - self.sent)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.closed()


class _Run:
    def __init__(self, request: bytes, duration: float, max_requests: int, warmup: float) -> None:
        self.request = request
        self.started = time.perf_counter()
        self.measure_from = self.started + warmup
        self.deadline = self.measure_from + duration
        self.max_requests = max_requests
        self.latencies: list[int] = []
        self.errors = 0
        self.total = 0  # responses including the warm-up
        self.sent = 0
        self.open = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.measure_end = 0.0

    def more(self) -> bool:
        now = time.perf_counter()
        if now >= self.deadline or len(self.latencies) >= self.max_requests:
            self.measure_end = self.measure_end or now
            return False
        self.sent += 1
        return True

    def record(self, status: int, ns: int) -> None:
        self.total += 1
        if time.perf_counter() < self.measure_from:
            return
        if status != 200:
            self.errors += 1
        self.latencies.append(ns)

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.done.done():
            self.done.set_result(None)


async def _load(
    port: int, *, connections: int, duration: float, max_requests: int, warmup: float, path: str
) -> dict[str, Any]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    run = _Run(request, duration, max_requests, warmup)
    loop = asyncio.get_running_loop()
    for _ in range(connections):
        run.open += 1
        await loop.create_connection(lambda: _Client(run), "127.0.0.1", port)
    await asyncio.wait_for(run.done, timeout=warmup + duration + 30)
    elapsed = (run.measure_end or time.perf_counter()) - run.measure_from
    lat = sorted(run.latencies)

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] / 1000, 1) if lat else 0.0

    return {
        "requests": len(lat),
        "errors": run.errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(lat) / elapsed) if elapsed > 0 else 0,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": round(lat[-1] / 1000, 1) if lat else 0.0,
        "total_responses": run.total,
        "body_bytes": len(BODY),
        "connections": connections,
    }


def load_main(args: argparse.Namespace) -> dict[str, Any]:
    _pin(args.cpu)
    try:
        import uvloop  # noqa: PLC0415 - the client is cheaper with it, when installed

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    result = asyncio.run(
        _load(
            args.port,
            connections=args.connections,
            duration=args.duration,
            max_requests=args.max_requests,
            warmup=args.warmup,
            path=args.path,
        )
    )
    print(json.dumps(result), flush=True)
    return result


# --------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    stacks = args.stacks.split(",")
    if importlib.util.find_spec("uvloop") is None:
        skipped = [st for st in stacks if st.endswith("+uvloop")]
        if skipped:
            print(f"uvloop is not installed: leaving out {skipped} (pip install uvloop)")
        stacks = [st for st in stacks if not st.endswith("+uvloop")]
    # Rounds interleave the stacks so that load from other processes on a shared
    # machine falls on all of them alike; the summary keeps each stack's best round.
    for _ in range(args.rounds):
        for stack in stacks:
            results.append(_one(args, stack))
    print("best round per stack:")
    for stack in stacks:
        best = min(
            (r for r in results if r["stack"] == stack),
            key=lambda r: r["server_cpu_us_per_request"],
        )
        print(f"  {_line(best)}")
    return results


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _line(result: dict[str, Any]) -> str:
    return (
        f"{result['stack']:18} {result['rps']:>7} req/s  "
        f"cpu {result['server_cpu_us_per_request']:>5} us/req "
        f"(1 core: {result['one_core_capacity_rps']:>6}/s)  p50 {result['p50_us']:>7} us  "
        f"p90 {result['p90_us']:>7} us  p99 {result['p99_us']:>7} us  "
        f"p99.9 {result['p999_us']:>7} us  errors {result['errors']}"
    )


def _one(args: argparse.Namespace, stack: str) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "serve",
            "--stack",
            stack,
            "--port",
            str(port),
            "--cpu",
            "0",
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if b"READY" not in line:
            raise RuntimeError(f"server {stack} did not start")
        cpu_before = _cpu_seconds(server.pid)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
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
                str(args.warmup),
                "--max-requests",
                str(args.max_requests),
            ],
            capture_output=True,
            check=True,
            timeout=args.duration + args.warmup + 60,
        )
        cpu = _cpu_seconds(server.pid) - cpu_before
        result = {"stack": stack, **json.loads(out.stdout.decode().strip().splitlines()[-1])}
        # Server CPU per request: unlike req/s, it hardly moves when other processes
        # compete for the machine, so it is the figure to compare stacks by.
        result["server_cpu_us_per_request"] = round(cpu / result["total_responses"] * 1e6, 1)
        result["one_core_capacity_rps"] = round(result["total_responses"] / cpu) if cpu else 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(_line(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run one server stack (used by the comparison)")
    serve.add_argument("--stack", choices=STACKS, default="httptools+uvloop")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--cpu", type=int, default=None)
    serve.add_argument("--snapshot", default=str(SNAPSHOT))
    for p in (parser, sub.add_parser("load", help="load a running server")):
        p.add_argument("--port", type=int, default=8080)
        p.add_argument("--path", default="/v1/evaluate")
        p.add_argument("--cpu", type=int, default=None)
        p.add_argument("--connections", type=int, default=8)
        p.add_argument("--duration", type=float, default=8.0)
        p.add_argument("--warmup", type=float, default=1.0)
        p.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per stack")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.command == "serve":
        serve_main(args)
    elif args.command == "load":
        load_main(args)
    else:
        results = compare(args)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
