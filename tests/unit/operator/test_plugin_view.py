"""What ``kubectl pkg`` prints and writes, from objects alone (pkg_operator.plugin.view)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pkg_operator.plugin import view


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "kind": "PolicyDeployment",
        "metadata": {"namespace": "ns", "name": "router", "generation": 3},
        "spec": {
            "env": "prod",
            "target": "router",
            "strategy": {
                "canary": {
                    "steps": [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"pause": {}}]
                }
            },
        },
        "status": {"observedGeneration": 3, **status},
    }


PAUSED = deployment(
    summary="Paused",
    weight=10,
    currentStepIndex=2,
    stepProgress="3/3",
    stable={"version": "rules@1.4.0"},
    canary={"version": "rules@1.5.0"},
    coverage={"display": "4/4", "percent": 100.0, "stale": 0},
    health={"evaluations": 200, "errorRate": 0.005, "p99Ms": 1.5},
    processedActions=[
        {"token": "t1", "action": "retry", "actor": "alice", "accepted": False,
         "outcome": "refused: attempt 1 is still running", "at": "2026-01-01T00:00:00Z"},
    ],
)  # fmt: skip


def test_the_tree_marks_done_steps_the_current_one_and_shows_the_figures() -> None:
    text = "\n".join(view.lines(view.tree(PAUSED)))
    assert text.splitlines()[0] == "PolicyDeployment ns/router"
    assert "├── Status:   Paused" in text
    assert "├── Stable:   rules@1.4.0" in text
    assert "├── Canary:   rules@1.5.0" in text
    assert "├── Weight:   10%" in text
    assert "Coverage: 4/4 devices on their version (100.0%, 0 stale)" in text
    assert "Health:   200 evaluations, error rate 0.50%, p99 1.5 ms" in text
    assert "│   ├── ✔ 1. setWeight 10%" in text
    assert "│   ├── ✔ 2. pause 30s" in text
    assert "│   └── ► 3. pause (until promoted)  ◀ current" in text
    assert "└── Last actions" in text
    assert "retry by alice (refused): refused: attempt 1 is still running" in text


def test_the_health_line_shows_the_shadow_diff_rate_the_operator_writes() -> None:
    shadowing = deployment(
        summary="Progressing",
        health={"evaluations": 50, "errorRate": 0.0, "shadowDiffRate": 0.125},
    )
    text = "\n".join(view.lines(view.tree(shadowing)))
    assert "Health:   50 evaluations, error rate 0.00%, diff rate 12.50%" in text


def test_a_succeeded_rollout_shows_every_step_done_and_none_current() -> None:
    done = deployment(summary="Succeeded", currentStepIndex=3, stepProgress="3/3")
    text = "\n".join(view.lines(view.tree(done)))
    assert text.count("✔") == 3
    assert "current" not in text


def test_a_snapshot_tree_shows_its_conditions_and_last_action() -> None:
    snap = {
        "kind": "PolicySnapshot",
        "metadata": {"namespace": "ns", "name": "v1"},
        "spec": {"version": "rules@1.0.0", "env": "dev"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Validated", "message": ""},
                {"type": "Active", "status": "False", "reason": "NotPromoted", "message": ""},
            ],
            "lastAction": {"token": "x", "action": "promote", "actor": "bob",
                           "outcome": "refused: only a Ready snapshot", "at": "t"},
        },
    }  # fmt: skip
    text = "\n".join(view.lines(view.tree(snap)))
    assert "Version:  rules@1.0.0 (native)" in text
    assert "Ready:    True Validated" in text
    assert "Active:   False NotPromoted" in text
    assert "promote by bob (refused)" in text


def test_the_outcome_of_a_token_comes_from_processed_actions_or_last_action() -> None:
    found = view.recorded(PAUSED, "t1")
    assert found is not None
    assert (found.action, found.accepted, found.actor) == ("retry", False, "alice")
    assert view.recorded(PAUSED, "other") is None
    snap = {"status": {"lastAction": {"token": "s", "action": "promote", "outcome": "active"}}}
    assert view.recorded(snap, "s") == view.Recorded("promote", True, "active", "", "")
    refused = {
        "status": {"lastAction": {"token": "s", "action": "promote", "outcome": "refused: x"}}
    }
    assert view.recorded(refused, "s").accepted is False  # type: ignore[union-attr]


def test_watch_ends_only_on_a_final_summary_of_the_current_generation() -> None:
    assert view.ending(deployment(summary="Succeeded")) == view.EXIT_OK
    assert view.ending(deployment(summary="Aborted")) == view.EXIT_ENDED_BADLY
    assert view.ending(deployment(summary="RolledBack")) == view.EXIT_ENDED_BADLY
    assert view.ending(deployment(summary="Paused")) is None
    stale = deployment(summary="Succeeded")
    stale["status"]["observedGeneration"] = 2  # the spec changed since: not over yet
    assert view.ending(stale) is None


def test_the_progress_line_says_summary_step_weight_and_coverage() -> None:
    assert view.progress_line(PAUSED) == (
        "Paused step=3/3 weight=10% coverage=4/4 (100.0%) canary=rules@1.5.0 stable=rules@1.4.0"
    )


def test_resource_names_and_the_annotation_value() -> None:
    assert view.resource("pdep") == view.resource("PolicyDeployment") == "policydeployments"
    assert view.resource("psnap") == "policysnapshots"
    with pytest.raises(ValueError, match="use pdep"):
        view.resource("pod")
    value = json.loads(view.action_value("promote-full", "tok-1", "alice", "ok"))
    assert value == {"action": "promote-full", "token": "tok-1", "actor": "alice", "reason": "ok"}


def test_a_listing_has_one_aligned_row_per_deployment() -> None:
    header, table = view.rows([PAUSED])
    assert header[:4] == ["NAMESPACE", "NAME", "STATUS", "STEP"]
    assert table == [["ns", "router", "Paused", "3/3", "10%", "4/4", "rules@1.4.0", "rules@1.5.0"]]
    text = view.plain_table(header, table)
    assert text[0].startswith("NAMESPACE   NAME     STATUS   STEP")
    assert text[1].startswith("ns          router   Paused   3/3 ")
