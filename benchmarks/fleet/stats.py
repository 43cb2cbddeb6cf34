"""The fleet benchmarks' pure pieces: percentiles, summaries, the machine's load, result files.

Nothing here starts a process or talks to a server, so it is unit tested
(tests/unit/benchmarks/); :mod:`benchmarks.fleet.harness` starts the real parts.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS",
    "Result",
    "load_average",
    "percentile",
    "summarize",
]

RESULTS = Path(__file__).resolve().parents[1] / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``.

    Nearest rank, not interpolation: a reported p99 is always a latency that was
    measured. With fewer than 100 values the p99 is the maximum, which is what
    it honestly is.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} is outside (0, 100]")
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(values: Sequence[float], *, digits: int = 1) -> dict[str, float | int]:
    """``{"n", "p50", "p99", "max"}`` of ``values`` rounded to ``digits`` (n = 0: zeros)."""
    if not values:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to two places."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Result:
    """One benchmark module's results file, in the shape BENCH.md's contract gives."""

    name: str
    title: str
    question: str
    method: str
    started: float = field(default_factory=time.time)
    load_before: list[float] = field(default_factory=load_average)
    tables: list[dict[str, Any]] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.tables.append(
            {"title": title, "columns": list(columns), "rows": [list(r) for r in rows]}
        )

    def goal(self, what: str, goal: str, measured: str, *, met: bool) -> None:
        self.goals.append({"what": what, "goal": goal, "measured": measured, "met": met})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "question": self.question,
            "method": self.method,
            "machine": {
                "cpus": os.cpu_count(),
                "load_before": self.load_before,
                "load_after": load_average(),
                "python": platform.python_version(),
            },
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 1),
            "tables": self.tables,
            "goals": self.goals,
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }

    def write(self, folder: Path = RESULTS) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.name}.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path
