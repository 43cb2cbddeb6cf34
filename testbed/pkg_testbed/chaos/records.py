"""What a chaos scenario measured, one JSON line per scenario run, for RELIABILITY.md.

Every scenario of ``make chaos`` calls :func:`record` once at its end (pass or fail)
with the figures RELIABILITY.md publishes. Lines are appended to the file named by
``PKG_CHAOS_RESULTS`` (``make chaos`` sets it; unset, nothing is written, so the quick
subset in ``make test`` leaves no files behind).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ScenarioRecord", "record"]


@dataclass
class ScenarioRecord:
    #: The scenario's id, e.g. ``crash/rollout/pg-write-3``.
    scenario: str
    #: The group RELIABILITY.md lists it under: crash, outage, partition, stale-view, input, fuzz.
    group: str
    #: How many faults were injected, and how many of the runs met the oracle.
    faults: int
    passes: int
    #: Seconds from the end of the fault to the end state the oracle accepts (None: n/a).
    converge_s: float | None = None
    #: Evaluate requests sent to sidecars during the fault, and those not answered or
    #: answered wrongly (must be 0).
    answers_total: int = 0
    answers_lost: int = 0
    #: What the oracle found wrong, if anything, and free remarks.
    failures: list[str] = field(default_factory=list)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def record(entry: ScenarioRecord) -> None:
    """Append ``entry`` to ``$PKG_CHAOS_RESULTS`` (a JSON line with a timestamp)."""
    path = os.environ.get("PKG_CHAOS_RESULTS")
    if not path:
        return
    line = {**asdict(entry), "at": time.time()}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line, sort_keys=True) + "\n")
