"""A new PolicyDeployment: the first attempt, its first step, and waiting for the snapshot."""

from __future__ import annotations

from rollout_world import NEW, OLD, UID, World, events, publishes, snapshot, steps_of, the_publish

from pkg_operator.rollout.model import SnapshotRef

CANARY = [{"setWeight": 10}, {"pause": {"durationSeconds": 60}}, {"setWeight": 50}]


class TestTheFirstTick:
    def test_starts_attempt_one_and_publishes_the_first_weight_over_the_active_snapshot(
        self,
    ) -> None:
        world = World(CANARY)
        decision = world.tick()
        publish = the_publish(decision)
        assert publish.stable == SnapshotRef.of(OLD)
        assert publish.canary == SnapshotRef.of(NEW)
        assert publish.canary_percent == 10
        assert publish.key == f"{UID}/a1/s0/setWeight#desired"
        [record] = steps_of(decision)
        assert (record.attempt, record.step_index, record.kind, record.percent) == (
            1,
            0,
            "setWeight",
            10,
        )
        assert record.version == "rules@1.5.0"
        assert world.status["attempt"]["id"] == 1
        assert world.status["attempt"]["generation"] == 1
        assert world.status["attempt"]["snapshot"]["version"] == "rules@1.5.0"
        assert world.summary == "Progressing"
        assert world.status["stepProgress"] == "1/3"
        assert world.status["canary"]["version"] == "rules@1.5.0"
        assert world.status["stable"]["version"] == "rules@1.4.0"

    def test_the_status_describes_this_generation_and_is_not_yet_available(self) -> None:
        world = World(CANARY)
        world.generation = 4
        world.tick()
        assert world.status["observedGeneration"] == 4
        assert all(c["observedGeneration"] == 4 for c in world.status["conditions"])
        assert world.cond("Available") == ("False", "RolloutInProgress")
        assert world.cond("Progressing") == ("True", "WaitingForCoverage")
        assert world.cond("Degraded") == ("False", "NoFailure")
        assert world.cond("Paused") == ("False", "NotPaused")
        assert world.status["seq"] == 1

    def test_without_an_active_snapshot_the_canary_goes_out_with_no_stable(self) -> None:
        world = World(CANARY)
        world.baseline = None
        publish = the_publish(world.tick())
        assert publish.stable is None
        assert publish.canary == SnapshotRef.of(NEW)


class TestTheStableSnapshot:
    def test_follows_the_active_snapshot_until_the_deployment_publishes_then_is_pinned(
        self,
    ) -> None:
        world = World([{"pause": {"durationSeconds": 30}}, {"setWeight": 20}])
        assert publishes(world.tick()) == []  # a pause first: nothing to publish yet
        world.baseline = snapshot("rules@1.4.1")
        world.tick()
        assert world.status["stable"]["version"] == "rules@1.4.1"
        publish = the_publish(world.tick(30))
        assert publish.stable is not None
        assert publish.stable.version == "rules@1.4.1"
        world.baseline = snapshot("rules@1.4.2")
        world.tick()
        assert world.status["stable"]["version"] == "rules@1.4.1"


class TestWaitingForTheSnapshot:
    def test_a_missing_snapshot_is_never_published_and_the_status_says_what_to_do(self) -> None:
        world = World(CANARY)
        world.snapshot = None
        for _ in range(3):
            assert publishes(world.tick()) == []
        assert world.summary == "Waiting"
        status, reason = world.cond("Progressing")
        assert (status, reason) == ("False", "SnapshotNotFound")
        assert "create it, or point spec.snapshotRef" in world.condition("Progressing")["message"]
        assert world.status["stepProgress"] == "0/3"
        assert "canary" not in world.status

    def test_an_unready_snapshot_waits_with_its_own_explanation(self) -> None:
        world = World(CANARY)
        world.snapshot = snapshot(
            "rules@1.5.0", ready=False, reason="ValidationFailed", message="fixture vip failed"
        )
        assert publishes(world.tick()) == []
        assert world.cond("Progressing") == ("False", "SnapshotNotReady")
        assert "ValidationFailed: fixture vip failed" in world.status["message"]

    def test_the_first_step_starts_in_the_tick_the_snapshot_becomes_ready(self) -> None:
        world = World(CANARY)
        world.snapshot = snapshot("rules@1.5.0", ready=False)
        world.tick()
        world.snapshot = NEW
        publish = the_publish(world.tick())
        assert publish.canary_percent == 10
        assert world.summary == "Progressing"
        assert world.status["attempt"]["id"] == 1

    def test_requeue_after_is_the_time_left_before_the_deadline(self) -> None:
        world = World(CANARY)
        world.snapshot = None
        assert world.tick().requeue_after == 600
        assert world.tick(100).requeue_after == 500


class TestNothingToRollOut:
    def test_a_snapshot_that_is_already_stable_finishes_on_coverage_without_publishing(
        self,
    ) -> None:
        world = World(CANARY)
        world.baseline = NEW
        first = world.tick()
        assert publishes(first) == []
        assert world.step == 3  # straight to finishing
        assert world.cond("Available") == ("False", "RolloutInProgress")
        second = world.tick()
        assert publishes(second) == []
        assert [r.kind for r in steps_of(second)] == ["complete"]
        assert [e.reason for e in events(second)] == ["AlreadyStable"]
        assert world.outcome == "Succeeded"
        assert world.cond("Available") == ("True", "AlreadyStable")
