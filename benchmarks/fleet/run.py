"""``make bench-fleet``: every ``benchmarks/fleet/bench_*.py`` in sorted order, then the report.

Each benchmark runs as its own process (``python -m benchmarks.fleet.bench_<name>``),
so one that fails or leaks state cannot spoil the next; a failure is reported and
the others still run, and the exit status says whether all of them passed.

Usage: ``python -m benchmarks.fleet.run [--quick] [--only NAME,...]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["benchmarks", "main"]

HERE = Path(__file__).resolve().parent


def benchmarks(folder: Path = HERE) -> list[str]:
    """The benchmark modules' names (``bench_x``), sorted."""
    return sorted(p.stem for p in folder.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", default="", help="comma-separated names (bench_x or x)")
    args = parser.parse_args(argv)
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only.split(",") if n}
    failed: list[str] = []
    started = time.monotonic()
    for name in benchmarks():
        if wanted and name not in wanted:
            continue
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        command = [
            sys.executable,
            "-m",
            f"benchmarks.fleet.{name}",
            *(["--quick"] if args.quick else []),
        ]
        code = subprocess.run(command, cwd=HERE.parents[1], check=False).returncode
        print(f"== {name}: exit {code} after {time.monotonic() - t0:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet.report"], cwd=HERE.parents[1], check=True
    )
    print(f"bench-fleet: {time.monotonic() - started:.0f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
