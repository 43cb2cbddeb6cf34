"""Ready, Reconciling and Stalled: what Flux's kstatus reads, from each kind's own conditions."""

from __future__ import annotations

import pytest

from pkg_operator.health import Cond, rollout_health, snapshot_health

RUNNING: dict[str, Cond] = {
    "Progressing": ("True", "WaitingForCoverage", "step 1/2"),
    "Available": ("False", "RolloutInProgress", "attempt 1 rolls out v2"),
    "Degraded": ("False", "NoFailure", ""),
    "Paused": ("False", "NotPaused", ""),
}


def test_a_running_rollout_is_reconciling_and_not_ready() -> None:
    health = rollout_health("Progressing", RUNNING)
    assert health["Reconciling"] == ("True", "WaitingForCoverage", "step 1/2")
    assert health["Ready"][0] == "False"
    assert health["Stalled"][0] == "False"


def test_a_rollout_at_a_manual_gate_is_neither_reconciling_nor_stalled() -> None:
    gate = {**RUNNING, "Progressing": ("Unknown", "WaitingForPromotion", "waits")}
    health = rollout_health("Paused", gate)
    assert [health[t][0] for t in ("Ready", "Reconciling", "Stalled")] == ["False"] * 3


def test_a_succeeded_rollout_is_ready() -> None:
    done = {**RUNNING, "Available": ("True", "Completed", "v2 is stable")}
    health = rollout_health("Succeeded", done)
    assert health["Ready"] == ("True", "Completed", "v2 is stable")
    assert health["Reconciling"][0] == health["Stalled"][0] == "False"


@pytest.mark.parametrize("summary", ["RolledBack", "Aborted", "Failed", "Superseded"])
def test_a_rollout_that_ended_without_success_is_stalled(summary: str) -> None:
    ended = {
        **RUNNING,
        "Progressing": ("False", "ProgressDeadlineExceeded", "0/1 devices"),
        "Available": ("False", summary, "ended"),
    }
    health = rollout_health(summary, ended)
    assert health["Stalled"] == ("True", "ProgressDeadlineExceeded", "0/1 devices")
    assert health["Ready"][0] == "False"


def test_a_snapshot_being_validated_is_reconciling() -> None:
    health = snapshot_health(("Unknown", "Validating", "waiting"), settled=False)
    assert health["Reconciling"][0] == "True"
    assert health["Stalled"][0] == "False"


def test_a_snapshot_whose_fixtures_failed_is_stalled() -> None:
    health = snapshot_health(("False", "FixturesFailed", "1 of 1 failed"), settled=True)
    assert health["Stalled"] == ("True", "FixturesFailed", "1 of 1 failed")
    assert health["Reconciling"][0] == "False"


def test_a_ready_snapshot_is_neither() -> None:
    health = snapshot_health(("True", "Ready", "ok"), settled=True)
    assert health["Stalled"][0] == health["Reconciling"][0] == "False"
