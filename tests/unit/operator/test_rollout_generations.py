"""Spec changes, re-created snapshots, a newer deployment; what Available means per generation."""

from __future__ import annotations

from rollout_world import (
    NEW,
    NEWER,
    OLD,
    UID,
    World,
    events,
    publishes,
    snapshot,
    steps_of,
    the_publish,
)

from pkg_operator.rollout.model import SnapshotRef

STEPS = [{"setWeight": 10}, {"analysis": {"durationSeconds": 300}}, {"setWeight": 50}]


def analysing() -> World:
    world = World(STEPS)
    world.tick()
    world.tick()
    assert world.step == 1
    return world


class TestASpecChangeMidRollout:
    def test_ends_the_attempt_and_restarts_from_step_0_with_the_new_snapshot(self) -> None:
        world = analysing()
        world.point_at(NEWER)
        decision = world.tick()
        publish = the_publish(decision)  # one publication replaces the old canary
        assert publish.canary == SnapshotRef.of(NEWER)
        assert publish.canary_percent == 10
        assert publish.stable == SnapshotRef.of(OLD)
        assert publish.key == f"{UID}/a2/s0/setWeight#desired"
        superseded, started = steps_of(decision)
        assert (superseded.attempt, superseded.kind, superseded.version) == (
            1,
            "superseded",
            "rules@1.5.0",
        )
        assert (started.attempt, started.step_index, started.version) == (2, 0, "rules@1.6.0")
        assert [e.reason for e in events(decision)] == ["NewGeneration"]
        attempt = world.status["attempt"]
        assert (attempt["id"], attempt["generation"]) == (2, 2)
        assert world.status["history"][-1] == {
            "id": 1,
            "generation": 1,
            "version": "rules@1.5.0",
            "outcome": "Superseded",
            "reason": "SpecChanged",
            "startedAt": "2030-01-01T12:00:01Z",
            "finishedAt": "2030-01-01T12:00:03Z",
        }

    def test_the_health_window_restarts_with_the_new_attempt(self) -> None:
        world = analysing()
        gate_started = world.status["stepStartedAt"]
        world.point_at(NEWER)
        world.tick(100)
        assert world.step == 0
        assert world.status["stepStartedAt"] > gate_started

    def test_an_unready_new_snapshot_is_never_published_and_the_canary_is_withdrawn(
        self,
    ) -> None:
        world = analysing()
        world.point_at(snapshot("rules@1.6.0", ready=False, message="storing"))
        withdraw = the_publish(world.tick())
        assert (withdraw.stable, withdraw.canary, withdraw.canary_percent) == (
            SnapshotRef.of(OLD),
            None,
            0,
        )
        assert withdraw.key == f"{UID}/a2/s0/withdraw#desired"
        assert world.summary == "Waiting"
        assert world.cond("Progressing") == ("False", "SnapshotNotReady")
        assert "storing" in world.status["message"]
        for _ in range(5):
            assert publishes(world.tick(30)) == []
        world.snapshot = NEWER
        assert the_publish(world.tick()).canary == SnapshotRef.of(NEWER)

    def test_a_missing_new_snapshot_withdraws_the_canary_too(self) -> None:
        world = analysing()
        world.change_spec(snapshotRef={"name": "typo"})
        world.snapshot = None
        assert the_publish(world.tick()).canary is None
        assert world.cond("Progressing") == ("False", "SnapshotNotFound")
        assert "PolicySnapshot typo does not exist" in world.status["message"]

    def test_any_spec_change_restarts_even_with_the_same_snapshot(self) -> None:
        world = World([{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}])
        world.tick()
        world.tick()
        assert world.weight == 50
        world.change_spec(progressDeadlineSeconds=900)
        publish = the_publish(world.tick())
        assert publish.canary_percent == 10
        assert world.status["attempt"]["id"] == 2


class TestAvailablePerGeneration:
    def test_the_first_decision_of_a_new_generation_is_never_available(self) -> None:
        world = World([{"setWeight": 100}])
        for _ in range(3):
            world.tick()
        assert world.cond("Available") == ("True", "RolloutComplete")
        world.change_spec(progressDeadlineSeconds=900)  # the snapshot stays the same
        world.tick()
        available = world.condition("Available")
        assert (available["status"], available["observedGeneration"]) == ("False", 2)
        assert world.status["observedGeneration"] == 2

    def test_a_change_that_rolls_nothing_out_becomes_available_again_on_coverage(self) -> None:
        world = World([{"setWeight": 100}])
        for _ in range(3):
            world.tick()
        world.change_spec(progressDeadlineSeconds=900)
        first = world.tick()
        second = world.tick()
        assert publishes(first) == publishes(second) == []
        assert world.cond("Available") == ("True", "AlreadyStable")
        assert world.condition("Available")["observedGeneration"] == 2
        assert world.status["attempt"]["generation"] == 2

    def test_after_success_a_new_snapshot_rolls_out_over_the_new_stable(self) -> None:
        world = World([{"setWeight": 100}])
        for _ in range(3):
            world.tick()
        world.point_at(NEWER)
        publish = the_publish(world.tick())
        assert publish.stable == SnapshotRef.of(NEW)
        assert publish.canary == SnapshotRef.of(NEWER)


class TestASnapshotRecreatedWithOtherContent:
    def test_counts_as_a_spec_change(self) -> None:
        world = analysing()
        world.snapshot = snapshot("rules@1.5.0", checksum="sha256:" + "ab" * 32, name=NEW.name)
        decision = world.tick()
        assert the_publish(decision).canary == SnapshotRef.of(world.snapshot)
        assert [e.reason for e in events(decision)] == ["SnapshotChanged"]
        assert world.status["history"][-1]["reason"] == "SnapshotChanged"
        assert world.status["attempt"]["id"] == 2


class TestSupersededByANewerDeployment:
    def test_stops_acting_at_once_with_no_actions_at_all(self) -> None:
        world = analysing()
        world.superseded_by = "router-canary-v2"
        decision = world.tick()
        assert decision.actions == ()
        assert decision.requeue_after is None
        assert world.outcome == "Superseded"
        assert world.summary == "Superseded"
        assert world.cond("Progressing") == ("False", "Superseded")
        assert world.cond("Available") == ("False", "Superseded")
        assert "router-canary-v2" in world.status["message"]
        assert "canary" not in world.status  # the newer deployment owns the target now

    def test_requests_and_spec_changes_are_recorded_but_not_acted_on(self) -> None:
        world = analysing()
        world.superseded_by = "newer"
        world.tick()
        world.request("retry", "r1")
        world.point_at(NEWER)
        assert world.tick().actions == ()
        handled = world.status["processedActions"][-1]
        assert (handled["token"], handled["accepted"]) == ("r1", False)
        assert world.status["observedGeneration"] == 2
        assert world.condition("Available")["observedGeneration"] == 2

    def test_once_no_longer_superseded_a_retry_starts_again(self) -> None:
        world = analysing()
        world.superseded_by = "newer"
        world.tick()
        world.superseded_by = None
        assert world.tick().actions == ()
        assert world.outcome == "Superseded"
        world.request("retry", "take-over")
        assert the_publish(world.tick()).canary_percent == 10
        assert world.status["attempt"]["id"] == 2
