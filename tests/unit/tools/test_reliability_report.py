"""RELIABILITY.md is rendered from the chaos records alone, every group, failures visible."""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


@cache
def report() -> ModuleType:
    path = REPO / "tools" / "reliability_report.py"
    spec = importlib.util.spec_from_file_location("reliability_report", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("reliability_report", module)
    spec.loader.exec_module(module)
    return module


def _line(scenario: str, group: str, **fields: object) -> str:
    return json.dumps({"scenario": scenario, "group": group, "faults": 1, "passes": 1, **fields})


def test_every_group_is_rendered_with_its_figures_and_the_last_record_of_a_scenario_counts() -> (
    None
):
    lines = [
        _line("crash/rollout", "crash", faults=40, passes=39, failures=["pg:x:1: lost"]),
        _line("outage/redis-30s", "outage", converge_s=4.25, answers_total=900, answers_lost=0),
        _line("mystery/new", "weather", notes="a group the tool never heard of"),
        _line("crash/rollout", "crash", faults=40, passes=40, converge_s=7.5),
    ]
    records = report().load(lines)
    assert [r["scenario"] for r in records] == ["crash/rollout", "outage/redis-30s", "mystery/new"]
    text = report().render(records, source="r.jsonl", generated="now")
    for heading in ("## crash", "## outage", "## weather"):
        assert heading in text
    assert "| crash/rollout | 40 | 40 | 7.5 | 0 | 0 | pass |" in text
    assert "| outage/redis-30s | 1 | 1 | 4.2 | 900 | 0 | pass |" in text
    assert "a group the tool never heard of" in text
    assert "3 scenarios, 0 failed; 42 faults injected, 42 passed; 0 answers lost" in text


def test_lost_answers_and_failed_runs_are_failures(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text(
        _line("partition/sidecar-redis", "partition", answers_total=10, answers_lost=2)
        + "\n"
        + _line("crash/x", "crash", faults=3, passes=2)
        + "\n"
    )
    output = tmp_path / "RELIABILITY.md"
    assert report().main([str(results), "--output", str(output)]) == 1
    text = output.read_text()
    assert "FAIL (answers lost)" in text
    assert "| crash/x | 3 | 2 | - | 0 | 0 | FAIL |" in text


def test_a_line_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(SystemExit, match="line 2"):
        report().load([_line("a", "crash"), '{"no": "scenario"}'])
