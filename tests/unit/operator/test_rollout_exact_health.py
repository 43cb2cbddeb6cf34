"""Exact step health: cumulative counters since the step began, consecutive failures, and
snapshots that are never rolled out again by themselves after failing for health."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import orjson
from rollout_world import NEW, NEWER, T0, World

from evaluator_sidecar.signals import Heartbeat, Totals
from pkg_operator.rollout.coverage import DeviceReport, fold
from pkg_operator.rollout.model import HealthObs

UID = "dep-uid"
STEP_START = T0


def _report(
    device: str,
    *,
    totals: Mapping[str, int] | None = None,
    baseline: Mapping[str, int] | None = None,
    evaluations: int = 0,
    errors: int = 0,
) -> DeviceReport:
    return DeviceReport(
        device_id=device,
        target="router",
        region="global",
        version="rules@1.5.0",
        last_seen=T0 + dt.timedelta(seconds=30),
        totals=totals,
        baseline=baseline,
        evaluations=evaluations,
        errors=errors,
    )


def _health(*reports: DeviceReport) -> HealthObs:
    _, health = fold(
        reports,
        target="router",
        region="global",
        deployment_uid=UID,
        stable_version="rules@1.4.0",
        canary_version="rules@1.5.0",
        weight=100.0,
        ttl_seconds=60,
        step_started_at=STEP_START,
        now=T0 + dt.timedelta(seconds=31),
    )
    return health


class TestCountersSinceTheStepBegan:
    def test_a_burst_in_an_earlier_window_still_counts_when_the_latest_window_is_quiet(
        self,
    ) -> None:
        # The latest window says 100 evaluations, 0 errors; the totals hold the burst.
        device = _report(
            "r1",
            evaluations=100,
            errors=0,
            totals={"requests": 1300, "errors": 250},
            baseline={"requests": 1000, "errors": 0},
        )
        health = _health(device)
        assert (health.evaluations, health.errors) == (300, 250)
        assert health.exact_devices == 1
        assert health.windowed_devices == 0

    def test_errors_before_the_step_began_do_not_count(self) -> None:
        device = _report(
            "r1",
            totals={"requests": 5000, "errors": 900},
            baseline={"requests": 4000, "errors": 900},
        )
        assert (_health(device).evaluations, _health(device).errors) == (1000, 0)

    def test_a_device_without_a_baseline_appeared_after_the_start_and_counts_from_zero(
        self,
    ) -> None:
        device = _report("r1", totals={"requests": 40, "errors": 4, "activation_failures": 1})
        health = _health(device)
        assert (health.evaluations, health.errors, health.activation_failures) == (40, 4, 1)

    def test_a_sidecar_without_counters_is_judged_on_its_latest_window_and_says_so(
        self,
    ) -> None:
        health = _health(_report("old", evaluations=90, errors=10))
        assert (health.evaluations, health.errors) == (100, 10)
        assert health.windowed_devices == 1

    def test_shadow_samples_and_diffs_are_the_devices_counts_for_this_steps_candidate(
        self,
    ) -> None:
        device = _report(
            "r1",
            totals={"requests": 10, "shadow_samples": 70, "shadow_diffs": 21},
            baseline={"requests": 0, "shadow_samples": 10, "shadow_diffs": 1},
        )
        health = _health(dataclasses.replace(device, shadow_counts=(25, 2)))
        assert (health.shadow_samples, health.shadow_diffs) == (25, 2)

    def test_cumulative_shadow_counters_alone_never_count_for_a_shadow_step(self) -> None:
        # A device still sampling the candidate of a deleted deployment when this step
        # began grows its cumulative counters with diffs that are not this candidate's.
        device = _report(
            "r1",
            totals={"requests": 10, "shadow_samples": 70, "shadow_diffs": 21},
            baseline={"requests": 0, "shadow_samples": 10, "shadow_diffs": 1},
        )
        health = _health(device)
        assert (health.shadow_samples, health.shadow_diffs) == (0, 0)


class TestHeartbeatsCarryTotals:
    def test_totals_and_the_process_survive_the_wire(self) -> None:
        beat = Heartbeat(
            device_id="r1",
            device_type="router",
            env="prod",
            target="router",
            region="global",
            version="rules@1.5.0",
            snapshot_id=5,
            checksum=None,
            epoch=3,
            cohort="canary",
            process_id="p-1",
            process_started=1000.5,
            totals=Totals(requests=10, errors=2, activation_failures=1, shadow_samples=3),
        )
        back = Heartbeat.from_json(beat.to_json())
        assert back.totals == beat.totals
        assert (back.process_id, back.process_started) == ("p-1", 1000.5)

    def test_a_heartbeat_of_an_older_sidecar_has_no_totals(self) -> None:
        beat = Heartbeat("r1", "router", "prod", "router", "global", None, None, None, 0, "none")
        raw = beat.to_dict()
        for key in ("process_id", "process_started", "totals"):
            del raw[key]
        assert Heartbeat.from_json(orjson.dumps(raw)).totals is None


def _analysis(consecutive: int | None = None) -> list[dict[str, object]]:
    gate: dict[str, object] = {"maxErrorRate": 0.05, "durationSeconds": 60}
    if consecutive is not None:
        gate["consecutiveFailures"] = consecutive
    return [{"setWeight": 50}, {"analysis": gate}]


def _in_analysis(world: World) -> None:
    world.tick()  # step 1 publishes 50%
    world.tick()  # converged: analysis starts
    assert world.step == 1


BAD = HealthObs(evaluations=100, errors=30)
GOOD = HealthObs(evaluations=100, errors=0)


class TestConsecutiveFailures:
    def test_without_the_setting_one_bad_check_rolls_back(self) -> None:
        world = World(_analysis())
        _in_analysis(world)
        world.health = BAD
        world.tick()
        assert world.outcome == "RolledBack"

    def test_the_rollback_waits_for_n_bad_checks_in_a_row(self) -> None:
        world = World(_analysis(consecutive=3))
        _in_analysis(world)
        world.health = BAD
        world.tick()
        world.tick()
        assert world.outcome is None
        assert world.status["consecutiveBadChecks"] == 2
        world.tick()
        assert world.outcome == "RolledBack"
        assert world.status["attempt"]["reason"] == "ErrorRateExceeded"

    def test_a_good_check_resets_the_count(self) -> None:
        world = World(_analysis(consecutive=2))
        _in_analysis(world)
        for health in (BAD, GOOD, BAD, GOOD):
            world.health = health
            world.tick()
        assert world.outcome is None
        assert world.status["consecutiveBadChecks"] == 0

    def test_a_gate_does_not_pass_while_its_last_check_was_bad(self) -> None:
        world = World(_analysis(consecutive=5))
        _in_analysis(world)
        world.health = BAD
        world.tick(after=120)  # the gate's duration is over, but the check was bad
        assert world.step == 1
        assert world.outcome is None
        world.health = GOOD
        world.tick()
        assert world.step == 2

    def test_the_rollout_wide_analysis_limits_take_the_setting_too(self) -> None:
        world = World(
            [{"setWeight": 50}, {"pause": {}}],
            strategy={
                "canary": {
                    "steps": [{"setWeight": 50}, {"pause": {}}],
                    "analysis": {"maxErrorRate": 0.05, "consecutiveFailures": 2},
                }
            },
        )
        _in_analysis(world)
        world.health = BAD
        world.tick()
        assert world.outcome is None
        world.tick()
        assert world.outcome == "RolledBack"


class TestNeverBackToAFailedSnapshot:
    def _rolled_back(self) -> World:
        world = World(_analysis())
        _in_analysis(world)
        world.health = BAD
        world.tick()
        assert world.outcome == "RolledBack"
        world.health = HealthObs()
        return world

    def test_a_new_generation_does_not_restart_a_snapshot_rolled_back_for_health(self) -> None:
        world = self._rolled_back()
        world.change_spec(progressDeadlineSeconds=900)
        decision = world.tick()
        assert world.outcome == "Failed"
        assert world.status["attempt"]["reason"] == "SnapshotBlocked"
        assert "retry" in world.status["attempt"]["message"]
        assert not [a for a in decision.actions if getattr(a, "canary", None) is not None]
        assert world.status["blockedSnapshots"][0]["version"] == NEW.version

    def test_pointing_back_at_it_after_another_snapshot_is_refused_too(self) -> None:
        world = self._rolled_back()
        world.point_at(NEWER)
        world.tick()
        assert world.outcome is None  # a different snapshot rolls out
        world.point_at(NEW)
        world.tick()
        assert world.status["attempt"]["reason"] == "SnapshotBlocked"

    def test_a_person_s_abort_blocks_it_as_well(self) -> None:
        world = World(_analysis())
        _in_analysis(world)
        world.request("abort", "t-abort")
        world.tick()
        assert world.outcome == "Aborted"
        world.change_spec(progressDeadlineSeconds=900)
        world.tick()
        assert world.status["attempt"]["reason"] == "SnapshotBlocked"

    def test_a_person_s_retry_rolls_it_out_and_unblocks_it(self) -> None:
        world = self._rolled_back()
        world.request("retry", "t-retry")
        world.tick()
        assert world.outcome is None
        assert world.weight == 50
        assert world.status.get("blockedSnapshots", []) == []

    def test_a_deadline_rollback_does_not_block(self) -> None:
        world = World([{"setWeight": 50}], progressDeadlineSeconds=5)
        world.tick()
        world.lagging(on_intended=5)
        world.tick(after=10)
        assert world.status["attempt"]["reason"] == "ProgressDeadlineExceeded"
        world.change_spec(progressDeadlineSeconds=900)
        world.tick()
        assert world.outcome is None
