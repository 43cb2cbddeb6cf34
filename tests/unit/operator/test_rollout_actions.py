"""People's requests: promote, promote-full, abort, retry, rollback; each token acted on once."""

from __future__ import annotations

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

STEPS = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"durationSeconds": 60}}]


def paused() -> World:
    """A rollout at step 2/4: 10% published, waiting for a person."""
    world = World(STEPS)
    world.tick()
    world.tick()
    assert world.summary == "Paused"
    return world


def succeeded() -> World:
    world = World([{"setWeight": 50}])
    world.tick()
    world.tick()
    world.tick()
    assert world.outcome == "Succeeded"
    return world


class TestAbort:
    def test_goes_back_to_stable_at_once_and_is_not_degraded(self) -> None:
        world = paused()
        world.request("abort", "stop-1", actor="bob", reason="customer complaint")
        decision = world.tick()
        publish = the_publish(decision)
        assert (publish.stable, publish.canary, publish.canary_percent) == (
            SnapshotRef.of(OLD),
            None,
            0,
        )
        assert publish.key == f"{UID}/a1/s1/abort/stop-1#desired"
        [record] = steps_of(decision)
        assert (record.kind, record.key) == ("abort", f"{UID}/a1/s1/abort/stop-1#step")
        assert "bob" in record.detail
        assert "customer complaint" in record.detail
        [promotion] = promotions(decision)
        assert (promotion.action, promotion.actor, promotion.reason) == (
            "rollback",
            "bob",
            "customer complaint",
        )
        assert world.outcome == "Aborted"
        assert world.summary == "Aborted"
        assert world.cond("Progressing") == ("False", "Aborted")
        assert world.cond("Degraded") == ("False", "NoFailure")
        assert world.cond("Available") == ("False", "Aborted")
        assert world.status["lastRollback"]["automatic"] is False
        assert world.status["lastRollback"]["actor"] == "bob"

    def test_with_nothing_published_there_is_nothing_to_withdraw(self) -> None:
        world = World(STEPS)
        world.snapshot = None
        world.tick()
        world.request("abort", "stop-2")
        decision = world.tick()
        assert publishes(decision) == []
        assert promotions(decision) == []
        assert world.outcome == "Aborted"

    def test_rollback_during_a_running_attempt_is_an_abort(self) -> None:
        world = paused()
        world.request("rollback", "rb-1")
        assert the_publish(world.tick()).canary is None
        assert world.outcome == "Aborted"


class TestPromote:
    def test_is_refused_on_a_setweight_step_because_it_would_not_move_a_device(self) -> None:
        world = World(STEPS)
        world.lagging(on_intended=6)
        world.tick()
        world.request("promote", "p-1")
        decision = world.tick()
        assert publishes(decision) == []
        [warning] = events(decision)
        assert (warning.type, warning.reason) == ("Warning", "ActionRefused")
        assert "lower spec.coverage.minPercent" in warning.message
        handled = world.status["processedActions"][-1]
        assert (handled["token"], handled["accepted"]) == ("p-1", False)
        assert world.step == 0

    def test_finishes_a_timed_pause_early(self) -> None:
        world = paused()
        world.request("promote", "p-2")
        world.tick()
        world.tick()  # 50% converged: the timed pause starts
        assert world.step == 3
        world.request("promote", "p-3")
        world.tick()
        assert world.step == 4  # finishing

    def test_finishes_an_analysis_gate_early(self) -> None:
        world = World(
            [{"setWeight": 10}, {"analysis": {"durationSeconds": 600}}, {"setWeight": 60}]
        )
        world.tick()
        world.tick()
        world.request("promote", "gate-ok")
        assert the_publish(world.tick()).canary_percent == 60

    def test_while_finishing_is_refused(self) -> None:
        world = World([{"setWeight": 10}])
        world.tick()
        world.tick()
        world.lagging(on_intended=3)
        world.request("promote", "p-4")
        world.tick()
        assert world.status["processedActions"][-1]["accepted"] is False
        assert world.outcome is None


class TestPromoteFull:
    def test_skips_the_remaining_steps_and_still_completes_on_coverage(self) -> None:
        world = paused()
        world.request("promote-full", "all-in", actor="carol")
        decision = world.tick()
        assert the_publish(decision).canary_percent == 100
        assert [s.kind for s in steps_of(decision)] == ["promote-full", "finish"]
        assert world.step == 4
        world.lagging(on_intended=8)
        world.tick()
        assert world.outcome is None
        world.devices()
        world.tick()
        assert world.outcome == "Succeeded"

    def test_while_already_finishing_is_accepted_and_changes_nothing(self) -> None:
        world = World([{"setWeight": 10}])
        world.tick()
        world.tick()
        world.lagging(on_intended=3)
        world.request("promote-full", "pf")
        assert world.tick().actions == ()
        assert world.status["processedActions"][-1]["accepted"] is True


class TestRetry:
    def test_after_an_abort_starts_a_new_attempt_from_the_first_step(self) -> None:
        world = paused()
        world.request("abort", "a")
        world.tick()
        world.request("retry", "r", actor="dave")
        decision = world.tick()
        publish = the_publish(decision)
        assert publish.canary_percent == 10
        assert publish.key == f"{UID}/a2/s0/setWeight#desired"
        assert [s.kind for s in steps_of(decision)] == ["retry", "setWeight"]
        assert world.status["attempt"]["id"] == 2
        assert world.outcome is None
        assert world.status["history"][-1]["outcome"] == "Aborted"
        assert world.status["history"][-1]["id"] == 1

    def test_after_an_automatic_rollback_clears_degraded(self) -> None:
        world = World(
            STEPS,
            strategy={"canary": {"steps": STEPS, "analysis": {"maxActivationFailures": 0}}},
        )
        world.tick()
        replace_health(world, activation_failures=1)
        world.tick()
        assert world.cond("Degraded") == ("True", "ActivationFailuresExceeded")
        replace_health(world, activation_failures=0)
        world.request("retry", "again")
        world.tick()
        assert world.cond("Degraded") == ("False", "NoFailure")
        assert world.summary == "Progressing"
        assert world.status["history"][-1]["outcome"] == "RolledBack"
        assert world.status["history"][-1]["reason"] == "ActivationFailuresExceeded"

    def test_is_refused_while_running_and_after_success(self) -> None:
        world = paused()
        world.request("retry", "early")
        world.tick()
        assert "abort it first" in world.status["processedActions"][-1]["outcome"]
        done = succeeded()
        done.request("retry", "late")
        assert publishes(done.tick()) == []
        assert "change the spec" in done.status["processedActions"][-1]["outcome"]


class TestRollbackAfterCompletion:
    def test_restores_the_previous_stable_at_once(self) -> None:
        world = succeeded()
        world.request("rollback", "undo", actor="erin", reason="bad decisions in prod")
        decision = world.tick()
        publish = the_publish(decision)
        assert (publish.stable, publish.canary, publish.canary_percent) == (
            SnapshotRef.of(OLD),
            None,
            0,
        )
        [promotion] = promotions(decision)
        assert (
            promotion.action,
            promotion.from_version,
            promotion.to_version,
            promotion.actor,
        ) == (
            "rollback",
            "rules@1.5.0",
            "rules@1.4.0",
            "erin",
        )
        assert world.outcome == "RolledBack"
        assert world.status["attempt"]["reason"] == "RollbackRequested"
        assert world.cond("Available") == ("False", "RolledBack")
        assert world.cond("Degraded") == ("False", "NoFailure")
        assert world.status["stable"]["version"] == "rules@1.4.0"
        assert world.status["lastRollback"]["actor"] == "erin"

    def test_twice_is_refused_there_is_no_earlier_stable_left(self) -> None:
        world = succeeded()
        world.request("rollback", "undo-1")
        world.tick()
        world.request("rollback", "undo-2")
        assert publishes(world.tick()) == []
        assert world.status["processedActions"][-1]["accepted"] is False

    def test_without_a_previous_stable_is_refused_with_what_to_do(self) -> None:
        world = World([{"setWeight": 100}])
        world.baseline = None
        for _ in range(3):
            world.tick()
        world.request("rollback", "undo")
        decision = world.tick()
        assert publishes(decision) == []
        assert "point spec.snapshotRef" in events(decision)[0].message

    def test_then_retry_rolls_the_spec_out_again(self) -> None:
        world = succeeded()
        world.request("rollback", "undo")
        world.tick()
        world.request("retry", "redo")
        publish = the_publish(world.tick())
        assert publish.canary is not None
        assert publish.canary.version == "rules@1.5.0"
        assert publish.stable == SnapshotRef.of(OLD)


class TestTokens:
    def test_a_token_is_acted_on_once_however_long_the_annotation_stays(self) -> None:
        world = World([{"pause": {}}, {"pause": {}}, {"setWeight": 10}])
        world.tick()
        world.request("promote", "once")
        world.tick()
        assert world.step == 1
        for _ in range(5):
            assert world.tick().actions == ()
        assert world.step == 1
        assert [a["token"] for a in world.status["processedActions"]] == ["once"]

    def test_the_list_of_handled_tokens_is_bounded(self) -> None:
        world = succeeded()
        for n in range(25):
            world.request("promote", f"t{n}")
            world.tick()
        tokens = [a["token"] for a in world.status["processedActions"]]
        assert len(tokens) == 20
        assert tokens[-1] == "t24"

    def test_a_request_is_left_for_the_next_tick_when_a_new_generation_arrives(self) -> None:
        world = paused()
        world.point_at(snapshot("rules@1.6.0"))
        world.request("abort", "with-the-edit")
        world.tick()
        assert world.outcome is None  # the new attempt started; the abort waits
        assert "processedActions" not in world.status or all(
            a["token"] != "with-the-edit" for a in world.status["processedActions"]
        )
        world.tick()
        assert world.outcome == "Aborted"
