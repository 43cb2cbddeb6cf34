"""What the sidecar-footprint benchmarks share: machine facts, processes, HTTP probes, results.

Used by the sidecar-footprint benchmarks (``bench_footprint``, ``bench_vs_opa``).
Processes started here are stopped here (:func:`stop`); results are written in the
shape BENCH.md fixes (:func:`write_result`).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "ROOT",
    "cpu_seconds",
    "free_port",
    "http_json",
    "load",
    "machine",
    "opa_binary",
    "rss_mib",
    "sidecar_command",
    "stop",
    "wait_http",
    "write_result",
]

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "testbed"))


def load() -> list[float]:
    """The load averages (1, 5, 15 min), rounded: recorded beside every figure."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(load_before: list[float]) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load(),
        "python": platform.python_version(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def opa_binary() -> Path:
    from pkg_testbed.binaries import ensure  # noqa: PLC0415 - the test bed is not a dependency

    return ensure("opa")


def sidecar_command() -> list[str]:
    """``pkg-sidecar`` of this checkout's virtualenv (what a pod runs)."""
    found = Path(sys.executable).parent / "pkg-sidecar"
    return [str(found)] if found.exists() else [sys.executable, "-m", "evaluator_sidecar"]


def http_json(port: int, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One request on loopback; (status, parsed JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            data = json.dumps(body).encode()
            conn.request("POST", path, data, {"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def wait_http(
    port: int, path: str, proc: subprocess.Popen[bytes], *, timeout: float = 60, step: float = 0.002
) -> float:
    """Poll ``path`` until it answers 200; the perf_counter time it first did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {path} was 200")
        try:
            status, _ = http_json(port, path, timeout=1.0)
            if status == 200:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(step)
    raise TimeoutError(f"{path} on port {port} not 200 within {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 5 s: nothing this harness started outlives it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def which(name: str) -> str | None:
    return shutil.which(name)


def write_result(name: str, result: dict[str, Any]) -> Path:
    """``benchmarks/results/<name>.json``, written atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)
    return path
