"""What ``kubectl pkg diff|coverage|history`` and the status's extra lines compute
(pkg_operator.plugin.reports), from data alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

from evaluator_sidecar.signals.cohorts import in_canary
from pkg_operator.plugin import reports, view


def rule(rule_id: str, name: str, priority: int = 10, **more: Any) -> dict[str, Any]:
    return {"rule_id": rule_id, "rule_name": name, "priority": priority, **more}


def test_a_rule_diff_names_added_removed_and_changed_rules_with_the_fields_that_changed() -> None:
    a = [rule("r1", "vip"), rule("r2", "gone"), rule("r3", "same")]
    b = [rule("r1", "vip", priority=20), rule("r3", "same"), rule("r4", "new")]
    diff = reports.rule_diff(a, b)
    assert [r["rule_id"] for r in diff["added"]] == ["r4"]
    assert [r["rule_id"] for r in diff["removed"]] == ["r2"]
    assert diff["changed"] == [
        {"rule_id": "r1", "rule_name": "vip", "fields": {"priority": {"a": 10, "b": 20}}}
    ]
    assert diff["unchanged"] == 1
    text = reports.diff_lines(diff, "v1", "v2")
    assert text[:2] == ["--- v1", "+++ v2"]
    assert "+ r4 (new)" in text
    assert "- r2 (gone)" in text
    assert "~ r1 (vip)" in text
    assert "    priority: 10 -> 20" in text
    assert text[-1] == "1 added, 1 removed, 1 changed, 1 unchanged"


def test_identical_snapshots_have_an_empty_diff() -> None:
    rules = [rule("r1", "vip")]
    diff = reports.rule_diff(rules, [dict(r) for r in rules])
    assert (diff["added"], diff["removed"], diff["changed"], diff["unchanged"]) == ([], [], [], 1)


DEPLOYMENT = {
    "metadata": {"uid": "uid-1", "name": "router"},
    "spec": {"env": "prod", "target": "router", "region": "eu-west"},
    "status": {"weight": 50, "canary": {"version": "v2"}, "stable": {"version": "v1"}},
}


def device(device_id: str, **more: Any) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "target": "router",
        "region": "eu-west",
        "version": "v1",
        "last_seen": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "evaluations": 10,
        "errors": 1,
        "p99_latency_ms": 2.5,
        **more,
    }


def test_coverage_rows_keep_the_target_and_region_and_use_the_sidecars_cohort_function() -> None:
    ids = [f"router:{i}" for i in range(8)]
    devices = [device(i) for i in ids] + [
        device("other", target="elsewhere"),
        device("far", region="us-east"),
    ]
    rows = reports.coverage_rows(DEPLOYMENT, devices)
    assert [r["device"] for r in rows] == ids
    for row in rows:
        expected = "canary" if in_canary(row["device"], "uid-1", 50) else "stable"
        assert row["cohort"] == expected
    assert {r["cohort"] for r in rows} == {"canary", "stable"}  # 8 devices at 50 %: both
    assert rows[0]["lastHeartbeat"] == "2026-01-01T00:00:00+00:00"
    table = reports.coverage_table(rows)
    assert table[0][-2:] == ["1", "2.5"]
    assert len(reports.COVERAGE_HEADER) == len(table[0])


def test_without_a_canary_every_device_is_stable() -> None:
    stable_only = {**DEPLOYMENT, "status": {"weight": 0, "stable": {"version": "v1"}}}
    rows = reports.coverage_rows(stable_only, [device(f"router:{i}") for i in range(5)])
    assert {r["cohort"] for r in rows} == {"stable"}


def test_coverage_from_the_status_alone_says_per_device_detail_needs_the_database() -> None:
    summary = reports.coverage_from_status(
        {**DEPLOYMENT, "status": {**DEPLOYMENT["status"], "coverage": {"display": "3/4"}}}
    )
    assert summary["coverage"] == {"display": "3/4"}
    assert "PKG_DATABASE_URL" in summary["note"]


def test_history_merges_status_actions_promotions_and_audit_rows_oldest_first() -> None:
    snap = {
        "kind": "PolicySnapshot",
        "status": {
            "lastAction": {
                "action": "rollback",
                "actor": "bob",
                "at": "2026-01-01T00:00:03+00:00",
                "outcome": "refused: not active",
            }
        },
    }
    promotions = [
        {
            "created_at": dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
            "action": "promote",
            "actor": "alice",
            "success": True,
            "reason": "fixtures pass",
            "env": "prod",
            "from_version": None,
            "to_version": "v1",
        }
    ]
    audit = [
        {
            "id": 7,
            "created_at": dt.datetime(2026, 1, 1, 0, 0, 2, tzinfo=dt.UTC),
            "action": "activate",
            "actor": "alice",
            "entity_type": "snapshot",
            "entity_id": "3",
            "details": {"reason": "fixtures pass"},
        }
    ]
    entries = reports.history_entries(snap, promotions, audit)
    assert [(e["source"], e["what"], e["actor"], e["result"]) for e in entries] == [
        ("pkg_promotions", "promote", "alice", "succeeded"),
        ("pkg_audit_log", "activate", "alice", "row 7"),
        ("status", "rollback", "bob", "refused"),
    ]
    assert entries[0]["reason"] == "fixtures pass"
    assert entries[0]["detail"] == "prod: - -> v1"
    assert len(reports.history_table(entries)[0]) == len(reports.HISTORY_HEADER)


def test_history_lists_a_deployments_ended_attempts_and_the_running_one() -> None:
    pdep = {
        "status": {
            "history": [
                {
                    "id": 1,
                    "generation": 1,
                    "version": "v2",
                    "outcome": "Aborted",
                    "reason": "AbortRequested",
                    "startedAt": "2026-01-01T00:00:00Z",
                    "finishedAt": "2026-01-01T00:01:00Z",
                }
            ],
            "attempt": {
                "id": 2,
                "generation": 1,
                "snapshot": {"version": "v2"},
                "startedAt": "2026-01-01T00:02:00Z",
                "outcome": None,
            },
        }
    }
    entries = reports.history_entries(pdep)
    assert [(e["what"], e["result"], e["reason"]) for e in entries] == [
        ("attempt 1 (generation 1)", "Aborted", "AbortRequested"),
        ("attempt 2 (generation 1)", "running", ""),
    ]
    assert entries[0]["detail"] == "v2, ended 2026-01-01T00:01:00Z"


def test_the_status_tree_shows_the_last_events_and_the_shadow_diff_rate() -> None:
    obj = {
        "kind": "PolicyDeployment",
        "metadata": {"namespace": "ns", "name": "router"},
        "spec": {},
        "status": {
            "summary": "Progressing",
            "health": {"shadowSamples": 200, "shadowDiffs": 3, "shadowDiffRate": 0.015},
            "shadow": {"version": "rules@2.0.0", "sampleRate": 0.1, "step": "shadow"},
        },
    }
    events = [
        {"type": "Normal", "reason": f"Step{i}", "message": f"m{i}", "lastTimestamp": f"T{i}"}
        for i in range(7)
    ]
    events[6]["count"] = 3
    text = view.lines(view.tree(obj, events))
    assert "├── Shadow:   diff rate 1.50% (3 of 200 sampled) against rules@2.0.0" in text
    assert "└── Events" in text
    shown = [line.strip("│├└─ ") for line in text[text.index("└── Events") + 1 :]]
    assert shown == [f"T{i} Normal Step{i}: m{i}" for i in range(2, 6)] + [
        "T6 Normal Step6 (x3): m6"
    ]


def test_no_shadow_line_without_a_shadow_comparison() -> None:
    assert reports.shadow_line({"health": {"evaluations": 3}}) is None
