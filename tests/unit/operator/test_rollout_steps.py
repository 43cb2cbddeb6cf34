"""The steps: setWeight waits for coverage, pauses wait, analysis gates, then completion."""

from __future__ import annotations

from rollout_world import (
    NEW,
    OLD,
    UID,
    World,
    events,
    promotions,
    publishes,
    replace_health,
    steps_of,
    the_publish,
)

from pkg_operator.rollout.model import CoverageObs, SnapshotRef


class TestSetWeight:
    def test_holds_until_every_live_device_runs_its_intended_version(self) -> None:
        world = World([{"setWeight": 10}, {"setWeight": 50}])
        world.lagging(on_intended=9)
        world.tick()
        for _ in range(5):
            assert world.tick(10).actions == ()
        assert world.step == 0
        assert "9/10 live devices" in world.condition("Progressing")["message"]
        world.devices(targeted=10)
        publish = the_publish(world.tick())
        assert publish.canary_percent == 50
        assert world.step == 1

    def test_min_percent_lowers_the_bar(self) -> None:
        world = World(
            [{"setWeight": 10}, {"setWeight": 50}],
            coverage={"minPercent": 90, "heartbeatTTLSeconds": 30, "minDevices": 1},
        )
        world.tick()
        world.lagging(on_intended=8)
        world.tick()
        assert world.step == 0
        world.lagging(on_intended=9)
        world.tick()
        assert world.step == 1

    def test_min_devices_keeps_a_target_with_too_few_live_devices_from_converging(self) -> None:
        world = World(
            [{"setWeight": 10}, {"setWeight": 50}],
            coverage={"minPercent": 100, "heartbeatTTLSeconds": 30, "minDevices": 3},
        )
        world.tick()
        world.devices(targeted=2, stale=7)
        world.tick()
        assert world.step == 0
        world.devices(targeted=3)
        world.tick()
        assert world.step == 1

    def test_figures_computed_for_another_weight_are_stale_and_ignored(self) -> None:
        world = World([{"setWeight": 10}, {"setWeight": 50}])
        world.tick()
        world.coverage = CoverageObs(targeted=10, on_intended=10, weight=0)
        world.tick()
        assert world.step == 0
        world.coverage = CoverageObs(targeted=10, on_intended=10, weight=10)
        world.tick()
        assert world.step == 1

    def test_a_step_is_judged_only_after_the_tick_that_started_it(self) -> None:
        world = World([{"setWeight": 10}, {"setWeight": 50}])
        world.tick()
        # Same instant: coverage figures cannot yet describe the new weight.
        assert world.tick(after=0).actions == ()
        assert world.step == 0

    def test_weight_zero_publishes_no_canary(self) -> None:
        world = World([{"setWeight": 0}, {"setWeight": 5}])
        world.status = {}
        assert publishes(world.tick()) == []
        assert "canary" not in world.status
        assert world.weight == 0


class TestTimedPause:
    def test_elapses_exactly_at_its_duration(self) -> None:
        world = World([{"setWeight": 10}, {"pause": {"durationSeconds": 30}}, {"setWeight": 20}])
        world.tick()
        world.tick()  # converged: the pause starts
        assert world.step == 1
        started = world.status["stepStartedAt"]
        assert world.tick(29).actions == ()
        assert world.step == 1
        assert world.cond("Progressing") == ("True", "Pausing")
        assert world.cond("Paused") == ("False", "NotPaused")
        the_publish(world.tick(1))
        assert world.step == 2
        assert world.status["stepStartedAt"] != started

    def test_requeue_after_is_the_time_left_in_the_pause(self) -> None:
        world = World([{"pause": {"durationSeconds": 30}}, {"setWeight": 20}])
        assert world.tick().requeue_after == 30
        assert world.tick(12).requeue_after == 18


class TestIndefinitePause:
    def test_waits_for_a_person_with_paused_true_and_no_deadline(self) -> None:
        world = World([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}])
        world.tick()
        decision = world.tick()
        assert decision.requeue_after is None
        assert world.summary == "Paused"
        assert world.cond("Paused") == ("True", "WaitingForPromotion")
        assert world.cond("Progressing") == ("Unknown", "WaitingForPromotion")
        assert "pkg.seedcore.io/action" in world.status["message"]
        for _ in range(3):
            assert world.tick(3600).actions == ()  # six progress deadlines pass: still paused
        assert world.summary == "Paused"

    def test_promote_goes_to_the_next_step_and_is_audited(self) -> None:
        world = World([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}])
        world.tick()
        world.tick()
        world.request("promote", "tok-1", actor="alice", reason="dashboards fine")
        decision = world.tick()
        assert the_publish(decision).canary_percent == 50
        promote, start = steps_of(decision)
        assert (promote.kind, promote.step_index, promote.key) == (
            "promote",
            1,
            f"{UID}/a1/s1/promote/tok-1#step",
        )
        assert "alice" in promote.detail
        assert "dashboards fine" in promote.detail
        assert (start.kind, start.step_index) == ("setWeight", 2)
        assert world.cond("Paused") == ("False", "NotPaused")
        assert world.status["processedActions"][-1]["accepted"] is True

    def test_resume_is_promote_by_another_name(self) -> None:
        world = World([{"pause": {}}, {"setWeight": 50}])
        world.tick()
        world.request("resume", "tok-r")
        assert the_publish(world.tick()).canary_percent == 50
        assert steps_of(world.decisions[-1])[0].kind == "resume"


class TestAnalysisGate:
    def world(self, **gate: object) -> World:
        limits = {"maxErrorRate": 0.01, "maxP99LatencyMs": 50, "durationSeconds": 120, **gate}
        world = World([{"setWeight": 10}, {"analysis": limits}, {"setWeight": 50}])
        world.tick()
        world.tick()
        assert world.step == 1
        return world

    def test_passes_after_its_duration_while_the_limits_hold(self) -> None:
        world = self.world()
        replace_health(world, evaluations=1000, errors=5, p99_ms=20.0)
        assert world.tick(119).actions == ()
        assert world.cond("Progressing") == ("True", "Analyzing")
        assert the_publish(world.tick(1)).canary_percent == 50

    def test_holds_until_the_window_has_min_evaluations(self) -> None:
        world = self.world(minEvaluations=500)
        replace_health(world, evaluations=499)
        world.tick(200)
        assert world.step == 1
        replace_health(world, evaluations=500)
        world.tick()
        assert world.step == 2

    def test_holds_until_min_coverage_percent(self) -> None:
        world = self.world(minCoveragePercent=95)
        world.lagging(on_intended=9)
        world.tick(200)
        assert world.step == 1
        world.devices()
        world.tick()
        assert world.step == 2

    def test_the_gate_length_defaults_to_60_seconds(self) -> None:
        world = World([{"analysis": {}}, {"setWeight": 5}])
        world.tick()
        world.tick(59)
        assert world.step == 0
        world.tick(1)
        assert world.step == 1


class TestCompletion:
    def test_after_the_last_step_the_snapshot_goes_to_every_device_then_becomes_stable(
        self,
    ) -> None:
        world = World([{"setWeight": 10}, {"setWeight": 50}])
        world.tick()
        world.tick()
        finishing = world.tick()
        publish = the_publish(finishing)
        assert (publish.canary_percent, publish.canary) == (100, SnapshotRef.of(NEW))
        assert publish.key == f"{UID}/a1/s2/finish#desired"
        assert world.status["stepProgress"] == "2/2"
        world.lagging(on_intended=7)
        assert world.tick().actions == ()  # 100% still waits for coverage
        world.devices()
        done = world.tick()
        final = the_publish(done)
        assert (final.stable, final.canary, final.canary_percent) == (SnapshotRef.of(NEW), None, 0)
        [promotion] = promotions(done)
        assert (promotion.action, promotion.from_version, promotion.to_version) == (
            "promote",
            "rules@1.4.0",
            "rules@1.5.0",
        )
        assert promotion.actor == "pkg-operator"
        assert promotion.metrics["coverage"]["display"] == "10/10"
        assert [e.reason for e in events(done)] == ["RolloutComplete"]
        assert world.outcome == "Succeeded"
        assert world.summary == "Succeeded"
        assert world.cond("Available") == ("True", "RolloutComplete")
        assert world.cond("Progressing") == ("False", "RolloutComplete")
        assert world.status["stable"]["version"] == "rules@1.5.0"
        assert world.status["previousStable"]["version"] == OLD.version
        assert "canary" not in world.status
        assert done.requeue_after is None

    def test_a_last_step_at_100_percent_completes_without_another_weight_change(self) -> None:
        world = World([{"setWeight": 100}])
        world.tick()
        finishing = world.tick()
        assert world.step == 1  # finishing: 100% is already published
        assert publishes(finishing) == []
        final = the_publish(world.tick())
        assert final.canary is None
        assert world.outcome == "Succeeded"

    def test_no_steps_means_every_device_at_once_and_completion_on_coverage(self) -> None:
        world = World([])
        assert the_publish(world.tick()).canary_percent == 100
        assert world.status["stepProgress"] == "0/0"
        world.tick()
        assert world.outcome == "Succeeded"

    def test_nothing_happens_after_success(self) -> None:
        world = World([{"setWeight": 100}])
        for _ in range(3):
            world.tick()
        assert world.outcome == "Succeeded"
        for _ in range(3):
            assert world.tick(1000).actions == ()
