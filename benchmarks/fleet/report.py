"""Renders the fleet benchmarks' results (``benchmarks/results/*.json``) into BENCHMARKS.md.

Each result goes between its markers ``<!-- fleet:<name>:begin -->`` and
``<!-- fleet:<name>:end -->``; what lies outside any marker pair is never
touched, so hand-written parts stay. A result without markers gets a pair at the
end of the "Fleet scale" part (the part itself is appended when missing).

Usage: ``python -m benchmarks.fleet.report [--results DIR] [--doc BENCHMARKS.md]``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "PART",
    "begin_marker",
    "end_marker",
    "main",
    "render_result",
    "render_summary",
    "update_document",
]

ROOT = Path(__file__).resolve().parents[2]
PART = "## Fleet scale"
#: The marker name of the table of every goal, which stays last in the part.
SUMMARY = "summary"
_INTRO = (
    "Figures from `make bench-fleet` (`benchmarks/fleet/`), rendered from the raw results in\n"
    "`benchmarks/results/*.json` by `benchmarks/fleet/report.py`; the text between each pair\n"
    "of `fleet:` markers is regenerated on every run.\n"
)


def begin_marker(name: str) -> str:
    return f"<!-- fleet:{name}:begin -->"


def end_marker(name: str) -> str:
    return f"<!-- fleet:{name}:end -->"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    numeric = [
        all(
            isinstance(row[i], int | float) and not isinstance(row[i], bool)
            for row in rows
            if i < len(row)
        )
        for i in range(len(columns))
    ]
    lines = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "| " + " | ".join("---:" if n and rows else "---" for n in numeric) + " |",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def render_result(result: Mapping[str, Any]) -> str:
    """The markdown of one result: question, method, machine, tables, goals, notes."""
    out = [f"### {result.get('title') or result['name']}", ""]
    if result.get("question"):
        out += [f"**Question.** {result['question']}", ""]
    if result.get("method"):
        out += [f"**Method.** {result['method']}", ""]
    machine = result.get("machine") or {}
    if machine:
        before = "/".join(str(x) for x in machine.get("load_before") or [])
        after = "/".join(str(x) for x in machine.get("load_after") or [])
        out += [
            f"**Machine.** {machine.get('cpus')} CPUs, Python {machine.get('python')}; "
            f"load average (1/5/15 min) {before} before, {after} after; run "
            f"{result.get('started_at', '?')}, {result.get('duration_s', '?')} s "
            f"(`python -m benchmarks.fleet.bench_{result['name']}`).",
            "",
        ]
    for table in result.get("tables") or []:
        out += [f"**{table['title']}**", ""]
        out += _table(table["columns"], table["rows"])
        out.append("")
    goals = result.get("goals") or []
    if goals:
        out += ["**Against the goals**", ""]
        out += _table(
            ["what", "goal", "measured", "met"],
            [[g["what"], g["goal"], g["measured"], bool(g["met"])] for g in goals],
        )
        out.append("")
    if result.get("notes"):
        out += [str(result["notes"]).strip(), ""]
    return "\n".join(out).rstrip() + "\n"


def _insert_markers(doc: str, name: str) -> str:
    block = f"{begin_marker(name)}\n{end_marker(name)}\n"
    summary = begin_marker(SUMMARY)
    if name != SUMMARY and summary in doc:
        # The summary closes the part: a new result goes before it.
        before, _, after = doc.partition(summary)
        return f"{before}{block}\n{summary}{after}"
    if PART not in doc.splitlines():
        return doc.rstrip("\n") + f"\n\n{PART}\n\n{_INTRO}\n{block}"
    start = doc.splitlines(keepends=True)
    at = next(i for i, line in enumerate(start) if line.rstrip("\n") == PART)
    end = next(
        (i for i in range(at + 1, len(start)) if re.match(r"## (?!#)", start[i])), len(start)
    )
    head, tail = "".join(start[:end]).rstrip("\n"), "".join(start[end:])
    return f"{head}\n\n{block}" + (f"\n{tail}" if tail else "")


def render_summary(results: Sequence[Mapping[str, Any]]) -> str:
    """Every goal of every result in one table, with the load average the run started at."""
    rows = [
        [
            result.get("title") or result["name"],
            goal["what"],
            goal["goal"],
            goal["measured"],
            bool(goal["met"]),
            ((result.get("machine") or {}).get("load_before") or [None])[0],
        ]
        for result in results
        for goal in result.get("goals") or []
    ]
    lines = ["### Every fleet goal at a glance", ""]
    lines += _table(["benchmark", "what", "goal", "measured", "met", "load 1m"], rows)
    return "\n".join(lines) + "\n"


def _replace(doc: str, name: str, body: str) -> str:
    begin, end = begin_marker(name), end_marker(name)
    if begin not in doc or end not in doc:
        doc = _insert_markers(doc, name)
    before, _, rest = doc.partition(begin)
    _, _, after = rest.partition(end)
    return f"{before}{begin}\n{body}{end}{after}"


def update_document(doc: str, results: Sequence[Mapping[str, Any]]) -> str:
    """``doc`` with every result rendered between its markers (added when missing), and the
    summary of all their goals between the ``summary`` markers."""
    for result in results:
        doc = _replace(doc, result["name"], render_result(result))
    if results:
        doc = _replace(doc, SUMMARY, render_summary(results))
    return doc


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every result file in ``folder`` with a name and tables, in the order of their names."""
    results = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "name" in data and "tables" in data:
            results.append(data)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--doc", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    args.doc.write_text(update_document(args.doc.read_text(), results))
    print(f"{args.doc}: {len(results)} fleet result(s) rendered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
