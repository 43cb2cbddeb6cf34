"""Automatic rollback: a breached limit, the progress deadline or a lost snapshot.

Back to the stable snapshot at once with ONE publication (no step replayed),
a rollback row with the figures, a Warning event, Degraded=True with the
reason, and the time to roll back recorded.
"""

from __future__ import annotations

import pytest
from rollout_world import (
    OLD,
    UID,
    World,
    events,
    promotions,
    publishes,
    replace_health,
    snapshot,
    steps_of,
    the_publish,
)

from pkg_operator.rollout.model import SnapshotRef

GATE = {"maxErrorRate": 0.01, "maxP99LatencyMs": 50, "maxActivationFailures": 0}


def at_the_gate(**gate: object) -> World:
    """A rollout at step 3/4: 10%, then 30%, now analysing."""
    world = World(
        [
            {"setWeight": 10},
            {"setWeight": 30},
            {"analysis": {**GATE, "durationSeconds": 300, **gate}},
            {"setWeight": 100},
        ]
    )
    for _ in range(3):
        world.tick()
    assert world.step == 2
    return world


class TestALimitBreached:
    @pytest.mark.parametrize(
        ("health", "reason", "figures"),
        [
            ({"evaluations": 400, "errors": 9}, "ErrorRateExceeded", "error rate 2.25% (9 of 400"),
            ({"evaluations": 10, "p99_ms": 75.5}, "LatencyExceeded", "p99 evaluation latency 75.5"),
            ({"activation_failures": 1}, "ActivationFailuresExceeded", "1 canary devices failed"),
        ],
    )
    def test_rolls_back_at_once_with_one_publication(
        self, health: dict[str, float], reason: str, figures: str
    ) -> None:
        world = at_the_gate()
        replace_health(world, **health)
        decision = world.tick()
        publish = the_publish(decision)
        assert (publish.stable, publish.canary, publish.canary_percent) == (
            SnapshotRef.of(OLD),
            None,
            0,
        )
        assert publish.key == f"{UID}/a1/s2/rollback#desired"
        [promotion] = promotions(decision)
        assert (promotion.action, promotion.from_version, promotion.to_version) == (
            "rollback",
            "rules@1.5.0",
            "rules@1.4.0",
        )
        assert promotion.metrics["reason"] == reason
        assert promotion.metrics["step"] == "step 3/4 (analysis 300s)"
        [warning] = events(decision)
        assert (warning.type, warning.reason) == ("Warning", reason)
        assert figures in warning.message
        assert world.outcome == "RolledBack"
        assert world.summary == "RolledBack"
        assert world.cond("Degraded") == ("True", reason)
        assert world.cond("Progressing") == ("False", "RolledBack")
        assert world.cond("Available") == ("False", "RolledBack")
        assert world.weight == 0
        assert "canary" not in world.status

    def test_the_time_to_roll_back_and_the_detection_time_are_recorded(self) -> None:
        world = at_the_gate()
        replace_health(world, evaluations=100, errors=50)
        world.tick()
        rollback = world.status["lastRollback"]
        assert rollback["automatic"] is True
        assert rollback["reason"] == "ErrorRateExceeded"
        assert rollback["detectedAt"] == rollback["publishedAt"] == "2030-01-01T12:00:04Z"
        assert rollback["timeToRollbackSeconds"] == 0
        assert rollback["health"]["errorRate"] == 0.5
        assert (rollback["fromVersion"], rollback["toVersion"]) == ("rules@1.5.0", "rules@1.4.0")

    def test_after_a_rollback_nothing_more_happens(self) -> None:
        world = at_the_gate()
        replace_health(world, activation_failures=3)
        world.tick()
        for _ in range(3):
            assert world.tick(100).actions == ()
        assert world.outcome == "RolledBack"

    def test_the_error_rate_is_judged_only_once_the_window_has_min_evaluations(self) -> None:
        world = at_the_gate(minEvaluations=100)
        replace_health(world, evaluations=20, errors=5)
        world.tick()
        assert world.outcome is None
        replace_health(world, evaluations=100, errors=5)
        world.tick()
        assert world.outcome == "RolledBack"

    def test_rollout_wide_limits_are_watched_at_every_step(self) -> None:
        world = World(
            [{"setWeight": 10}, {"pause": {"durationSeconds": 600}}],
            strategy={
                "canary": {
                    "steps": [{"setWeight": 10}, {"pause": {"durationSeconds": 600}}],
                    "analysis": {"maxP99LatencyMs": 30},
                }
            },
        )
        world.tick()
        world.tick()
        assert world.step == 1
        replace_health(world, p99_ms=31.0)
        world.tick()
        assert world.cond("Degraded") == ("True", "LatencyExceeded")

    def test_no_limit_is_judged_while_no_canary_is_published(self) -> None:
        world = World(
            [{"pause": {"durationSeconds": 60}}, {"setWeight": 10}],
            strategy={
                "canary": {
                    "steps": [{"pause": {"durationSeconds": 60}}, {"setWeight": 10}],
                    "analysis": {"maxActivationFailures": 0},
                }
            },
        )
        world.tick()
        replace_health(world, activation_failures=4)  # devices of another rollout, say
        world.tick()
        assert world.outcome is None

    def test_a_promote_arriving_with_a_breach_is_refused_not_applied(self) -> None:
        world = at_the_gate()
        replace_health(world, evaluations=10, errors=10)
        world.request("promote", "late")
        decision = world.tick()
        assert len(publishes(decision)) == 1
        assert world.outcome == "RolledBack"
        handled = world.status["processedActions"][-1]
        assert handled["token"] == "late"
        assert handled["accepted"] is False
        assert "breached" in handled["outcome"]


class TestTheProgressDeadline:
    def test_a_stalled_setweight_rolls_back_with_the_coverage_figures(self) -> None:
        world = World([{"setWeight": 10}, {"setWeight": 50}], progressDeadlineSeconds=120)
        world.tick()
        world.devices(targeted=12, on_intended=9, stale=3, on_canary=0, expected_canary=1)
        world.tick(119)
        assert world.outcome is None
        decision = world.tick(1)
        assert the_publish(decision).canary is None
        assert world.outcome == "RolledBack"
        assert world.cond("Degraded") == ("True", "ProgressDeadlineExceeded")
        message = world.condition("Degraded")["message"]
        assert "not done within 120s" in message
        assert "9/12 live devices" in message
        assert "3 stale" in message
        assert "step 1/2 (setWeight 10%)" in message

    def test_a_gate_gets_its_own_duration_plus_the_deadline(self) -> None:
        world = World(
            [{"setWeight": 10}, {"analysis": {"durationSeconds": 900, "minEvaluations": 10}}],
            progressDeadlineSeconds=60,
        )
        world.tick()
        world.tick()
        world.tick(900)  # the gate's own time: it may not pass (no evaluations) but it is allowed
        assert world.outcome is None
        world.tick(59)
        assert world.outcome is None
        world.tick(1)
        assert world.outcome == "RolledBack"
        assert "900s + 60s" in world.status["message"]

    def test_a_timed_pause_longer_than_the_deadline_is_not_cut_short(self) -> None:
        world = World(
            [{"setWeight": 10}, {"pause": {"durationSeconds": 3600}}, {"setWeight": 20}],
            progressDeadlineSeconds=60,
        )
        world.tick()
        world.tick()
        world.tick(3599)
        assert world.outcome is None
        world.tick(1)
        assert world.step == 2

    def test_a_snapshot_that_never_becomes_ready_ends_as_failed_with_nothing_published(
        self,
    ) -> None:
        world = World([{"setWeight": 10}], progressDeadlineSeconds=300)
        world.snapshot = snapshot("rules@1.5.0", ready=False, message="fixture vip failed")
        world.tick()
        decision = world.tick(300)
        assert publishes(decision) == []
        assert promotions(decision) == []
        assert world.outcome == "Failed"
        assert world.summary == "Failed"
        assert world.cond("Degraded") == ("True", "ProgressDeadlineExceeded")
        assert world.cond("Progressing") == ("False", "ProgressDeadlineExceeded")
        assert "fixture vip failed" in world.status["message"]
        assert "lastRollback" not in world.status


class TestTheSnapshotLostMidRollout:
    @pytest.mark.parametrize(
        ("observed", "reason"),
        [
            (None, "SnapshotNotFound"),
            (
                snapshot("rules@1.5.0", ready=False, message="revalidation failed"),
                "SnapshotNotReady",
            ),
        ],
    )
    def test_a_published_canary_whose_snapshot_is_not_ready_is_rolled_back(
        self, observed: object, reason: str
    ) -> None:
        world = World([{"setWeight": 10}, {"pause": {}}])
        world.tick()
        world.snapshot = observed  # type: ignore[assignment]
        decision = world.tick()
        assert the_publish(decision).canary is None
        assert world.outcome == "RolledBack"
        assert world.cond("Degraded") == ("True", reason)
        assert [s.kind for s in steps_of(decision)] == ["rollback"]

    def test_with_no_canary_out_it_waits_instead(self) -> None:
        world = World([{"pause": {"durationSeconds": 30}}, {"setWeight": 10}])
        world.tick()
        world.snapshot = snapshot("rules@1.5.0", ready=False)
        world.tick(60)
        assert world.outcome is None
        assert world.cond("Progressing") == ("False", "SnapshotNotReady")
        assert world.step == 0
