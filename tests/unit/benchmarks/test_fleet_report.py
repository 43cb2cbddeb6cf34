"""report.py renders results into BENCHMARKS.md between their markers and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.fleet.report import (
    PART,
    begin_marker,
    end_marker,
    load_results,
    render_result,
    update_document,
)


def result(name: str = "propagation", p99: float = 31.0) -> dict[str, Any]:
    return {
        "name": name,
        "title": f"Title {name}",
        "question": "How long?",
        "method": "Timed *well*.",
        "machine": {
            "cpus": 2,
            "load_before": [1.0, 2.0, 3.0],
            "load_after": [1.5, 2.0, 3.0],
            "python": "3.12",
        },
        "started_at": "2026-12-04T16:00:00Z",
        "duration_s": 12.5,
        "tables": [
            {"title": "Times", "columns": ["path", "N", "p99 ms"], "rows": [["pubsub", 100, p99]]}
        ],
        "goals": [
            {"what": "pub/sub p99", "goal": "<= 50 ms", "measured": f"{p99} ms", "met": p99 <= 50}
        ],
        "notes": "Bounded by the CPU.",
    }


def test_a_result_renders_question_method_machine_tables_goals_and_notes() -> None:
    text = render_result(result())
    assert text.startswith("### Title propagation\n")
    assert "**Question.** How long?" in text
    assert "**Method.** Timed *well*." in text
    assert "2 CPUs" in text
    assert "1.0/2.0/3.0 before" in text
    assert "1.5/2.0/3.0 after" in text
    assert "| path | N | p99 ms |\n| --- | ---: | ---: |\n| pubsub | 100 | 31.0 |" in text
    assert "| pub/sub p99 | <= 50 ms | 31.0 ms | yes |" in text
    assert text.rstrip().endswith("Bounded by the CPU.")


def test_a_missed_goal_stands_out() -> None:
    assert "| **no** |" in render_result(result(p99=80.0))


def test_markers_and_the_part_are_added_when_missing_and_the_rest_is_kept() -> None:
    doc = "# Benchmarks\n\n## Native engine\n\nHand-written.\n"
    out = update_document(doc, [result()])
    assert out.startswith(doc.rstrip("\n"))
    assert f"\n{PART}\n" in out
    begin, end = begin_marker("propagation"), end_marker("propagation")
    assert out.index(PART) < out.index(begin) < out.index("### Title propagation") < out.index(end)


def test_a_second_run_replaces_only_its_own_section() -> None:
    doc = update_document("# Benchmarks\n", [result("a"), result("b")])
    doc = doc.replace(end_marker("b"), end_marker("b") + "\n\nNotes kept by hand.")
    again = update_document(doc, [result("a", p99=70.0)])
    assert "70.0 ms" in again
    assert "31.0 ms" in again
    assert again.count(begin_marker("a")) == 1
    assert "Notes kept by hand." in again
    assert update_document(again, [result("a", p99=70.0)]) == again  # idempotent


def test_new_markers_go_at_the_end_of_the_fleet_part_before_the_next_part() -> None:
    doc = f"# B\n\n{PART}\n\nIntro.\n\n## Later part\n\nText.\n"
    out = update_document(doc, [result("x")])
    assert out.index("Intro.") < out.index(begin_marker("x")) < out.index("## Later part")
    assert out.endswith("## Later part\n\nText.\n")


def test_only_result_files_are_loaded_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps(result("b")))
    (tmp_path / "a.json").write_text(json.dumps(result("a")))
    (tmp_path / "other.json").write_text(json.dumps({"something": "else"}))
    assert [r["name"] for r in load_results(tmp_path)] == ["a", "b"]


def test_every_goal_of_every_result_is_summed_up_in_one_table() -> None:
    out = update_document("# B\n", [result("a"), result("b", p99=80.0)])
    summary = out[out.index(begin_marker("summary")) : out.index(end_marker("summary"))]
    assert "| Title a | pub/sub p99 | <= 50 ms | 31.0 ms | yes | 1 |" in summary
    assert "| Title b | pub/sub p99 | <= 50 ms | 80.0 ms | **no** | 1 |" in summary
    # Rendered again, the summary is replaced, not repeated.
    assert update_document(out, [result("a")]).count(begin_marker("summary")) == 1


def test_a_result_new_to_the_document_goes_before_the_summary() -> None:
    out = update_document("# B\n", [result("a")])
    out = update_document(out, [result("a"), result("c")])
    assert out.index(end_marker("a")) < out.index(begin_marker("c"))
    assert out.index(end_marker("c")) < out.index(begin_marker("summary"))
