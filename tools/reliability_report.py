"""RELIABILITY.md from the chaos suite's records, and the summary table ``make chaos`` prints.

    python tools/reliability_report.py RESULTS.jsonl             table, and RELIABILITY.md
    python tools/reliability_report.py RESULTS.jsonl --no-write  the table only

Every scenario of ``make chaos`` appends one JSON line (testbed/pkg_testbed/chaos/records.py:
scenario, group, faults, passes, converge_s, answers_total, answers_lost, failures, notes,
extra). This renders every group found, known or not, each with its method and a table
of its scenarios; when a scenario appears more than once the last line counts. Nothing
in RELIABILITY.md is typed by hand: rerun ``make chaos`` to refresh it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["OUTPUT", "load", "main", "render", "summary_table"]

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "RELIABILITY.md"

#: How each group's faults are made; a group not listed gets a generic line.
METHODS = {
    "crash": (
        "The operator has test-only crash points (`PKG_TEST_CRASH_AT`, "
        "`operator/pkg_operator/crashpoints.py`) just before every PostgreSQL write (the store "
        "client), Redis write (the signals publisher) and status patch. A recording run lists "
        "the points a reference run passes, in order; then each distinct point (a write and "
        "its n-th hit) gets a run of its own in which the operator exits with 137 there, like "
        "`kill -9`, a fresh operator takes over and the end-state oracle "
        "(`testbed/pkg_testbed/chaos/oracle.py`) judges the end: outcome and conditions, every "
        "sidecar's version against its cohort, audit rows (no duplicate, none missing, chain "
        "intact), promotions against the status, Redis levels against PostgreSQL. Dying "
        "before write k+1 is dying just after write k, so each gap between writes is covered."
    ),
    "stale-view": (
        "Two operator replicas share one peering object; the standby's view of the API "
        "server is frozen (its process stopped with SIGSTOP) while the active replica goes "
        "on, then the active one dies and the standby wakes on its stale cache. The oracle "
        "counts promotions and step rows per deployment: none may appear twice."
    ),
    "outage": (
        "A server (Redis, PostgreSQL, the API server) is stopped or cut off through a TCP "
        "fault proxy mid-scenario, then restored; time to converge is measured from the "
        "fault's end, sidecar answers during it are counted."
    ),
    "partition": (
        "A TCP fault proxy between one component and its server adds latency, resets "
        "connections or drops messages on one link only."
    ),
    "input": (
        "A seeded corpus (`testbed/pkg_testbed/chaos/corpus.py`) of malformed PolicySnapshot "
        "and PolicyDeployment manifests: mutations of valid ones (each typed field given "
        "values of other types, bounds exceeded, required fields removed, values outside "
        "enums and patterns) and hand-written edge cases (invalid RE2, unknown operators, "
        "oversized fields, deep nesting, wrong base64 and checksums, missing ConfigMaps and "
        "snapshots, versions reused with other content). Applied with `kubectl apply "
        "--server-side` in batches against the real API server with one operator running: "
        "each must be refused by the API server with a message, or stored and reported with "
        "its expected CamelCase reason (`Ready` False for a snapshot, `Progressing` False "
        "for a deployment). None may become Ready, the operator must not exit or log a "
        "traceback, and converge_s is how long a valid snapshot applied after the whole "
        "corpus took to become Ready."
    ),
    "fuzz": (
        "Property-based inputs (hypothesis; `PKG_FUZZ_CASES` in all, 100,000 in `make "
        "chaos`): `/v1/evaluate` bodies (arbitrary JSON, task facts of wrong types, huge and "
        "deeply nested values, invalid UTF-8) to the sidecar's request handler in process "
        "(the volume) and over HTTP to a real `pkg-sidecar` process; Redis messages and "
        "level values to the decoders in process and, published on `pkg_updates` and written "
        "into the level keys, to a real sidecar in full mode. No 5xx, no crash, p99 within "
        "a bound, and the sidecar's version and answers unchanged by garbage."
    ),
}

_COLUMNS = ("scenario", "faults", "passes", "converge s", "answers", "lost", "result")


def load(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records, last one per scenario, in first-seen order; blank lines skipped."""
    latest: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SystemExit(
                f"line {number} of the results is not JSON ({exc}): {line[:80]!r}"
            ) from None
        if not isinstance(entry, dict) or "scenario" not in entry or "group" not in entry:
            raise SystemExit(
                f"line {number} of the results is not a scenario record: {line[:80]!r}"
            )
        latest[str(entry["scenario"])] = entry
    return list(latest.values())


def _result(entry: Mapping[str, Any]) -> str:
    if entry.get("answers_lost"):
        return "FAIL (answers lost)"
    if entry.get("failures") or int(entry.get("passes") or 0) < int(entry.get("faults") or 0):
        return "FAIL"
    return "pass"


def _row(entry: Mapping[str, Any]) -> tuple[str, ...]:
    converge = entry.get("converge_s")
    return (
        str(entry["scenario"]),
        str(entry.get("faults", 0)),
        str(entry.get("passes", 0)),
        "-" if converge is None else f"{float(converge):.1f}",
        str(entry.get("answers_total", 0)),
        str(entry.get("answers_lost", 0)),
        _result(entry),
    )


def _groups(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for entry in records:
        groups.setdefault(str(entry["group"]), []).append(entry)
    return groups


def summary_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of every scenario and a totals line (what ``make chaos`` prints)."""
    rows = [("group", *_COLUMNS)] + [
        (group, *_row(entry)) for group, entries in _groups(records).items() for entry in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    faults = sum(int(e.get("faults") or 0) for e in records)
    passes = sum(int(e.get("passes") or 0) for e in records)
    lost = sum(int(e.get("answers_lost") or 0) for e in records)
    failed = sum(1 for e in records if _result(e) != "pass")
    lines.append(
        f"{len(records)} scenarios, {failed} failed; {faults} faults injected, {passes} passed; "
        f"{lost} answers lost"
    )
    return "\n".join(lines)


def _markdown_table(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + " --- |" * len(_COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _row(e)) + " |" for e in entries]
    return lines


def _details(entry: Mapping[str, Any]) -> list[str]:
    lines = []
    if entry.get("notes"):
        lines.append(f"- `{entry['scenario']}`: {entry['notes']}")
    for failure in entry.get("failures") or []:
        lines.append(f"  - failure: {failure}")
    extra = {k: v for k, v in (entry.get("extra") or {}).items() if not isinstance(v, dict | list)}
    if extra:
        figures = ", ".join(f"{k} {v}" for k, v in extra.items())
        lines.append(f"  - figures: {figures}")
    return lines


def render(records: Sequence[Mapping[str, Any]], *, source: str, generated: str) -> str:
    """The whole of RELIABILITY.md."""
    out = [
        "# Reliability: the fault-injection suite's figures",
        "",
        f"Generated by `tools/reliability_report.py` from `{source}` ({generated}), the "
        "records `make chaos` writes (one line per scenario). Do not edit by hand: run "
        "`make chaos` again.",
        "",
        "Columns: faults injected, runs that met the oracle, the longest time from the end "
        "of a fault to the end state the oracle accepts (seconds), evaluate requests sent "
        "to sidecars during faults and those lost (unanswered or answered wrongly; must "
        "be 0).",
        "",
        "## Summary",
        "",
        "```",
        summary_table(records),
        "```",
    ]
    for group, entries in _groups(records).items():
        out += ["", f"## {group}", "", METHODS.get(group, f"Scenarios of the group {group}.")]
        out += ["", *_markdown_table(entries), ""]
        out += [line for entry in entries for line in _details(entry)]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="the JSONL file make chaos wrote")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"no results at {args.results}: did any chaos scenario run?", file=sys.stderr)
        return 1
    records = load(args.results.read_text(encoding="utf-8").splitlines())
    print(summary_table(records))
    if not args.no_write:
        generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        args.output.write_text(
            render(records, source=args.results.name, generated=generated), encoding="utf-8"
        )
        print(f"wrote {args.output}")
    return 1 if any(_result(e) != "pass" for e in records) else 0


if __name__ == "__main__":
    sys.exit(main())
