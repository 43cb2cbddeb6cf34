"""The rollout gauges the alerts read: a running step's deadline and a shadow step's diff rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY
from rollout_world import World

from pkg_operator import metrics
from pkg_operator.rollout.judge import running_deadline


def test_a_set_weight_step_is_due_the_progress_deadline_after_it_started() -> None:
    world = World([{"setWeight": 50}, {"pause": {}}], progressDeadlineSeconds=90)
    world.lagging(on_intended=3)
    world.tick()
    started = world.now
    world.tick(10)  # still waiting for coverage: the deadline does not move
    assert world.step == 0
    due = running_deadline(world.spec, world.status)
    assert due is not None
    assert started <= due <= started + timedelta(seconds=90)
    assert due > world.now


def test_a_timed_pause_is_due_its_duration_plus_the_progress_deadline_after_it_started() -> None:
    steps = [{"setWeight": 50}, {"pause": {"durationSeconds": 60}}]
    world = World(steps, progressDeadlineSeconds=90)
    world.run_until(lambda w: w.step == 1)
    due = running_deadline(world.spec, world.status)
    assert due is not None
    assert world.now + timedelta(seconds=90) < due <= world.now + timedelta(seconds=150)


def test_nothing_is_due_in_an_indefinite_pause_after_the_attempt_ended_or_for_an_invalid_spec() -> (
    None
):
    world = World([{"setWeight": 50}, {"pause": {}}])
    world.run_until(lambda w: w.step == 1)
    assert running_deadline(world.spec, world.status) is None  # waits for a person
    world.request("promote", "t-1")
    world.run_until(lambda w: w.outcome is not None)
    assert running_deadline(world.spec, world.status) is None
    assert running_deadline({"strategy": "nonsense"}, world.status) is None


LABELS = {"namespace": "gauges", "name": "shadowed"}


def _sample(metric: str) -> float | None:
    return REGISTRY.get_sample_value(metric, LABELS)


def test_the_gauges_carry_the_deadline_and_the_shadow_diff_rate_only_while_there_is_one() -> None:
    due = datetime(2030, 1, 1, 12, 10, tzinfo=UTC)
    status = {"health": {"shadowSamples": 200, "shadowDiffs": 3, "shadowDiffRate": 0.015}}
    metrics.record_rollout("gauges", "shadowed", status, due)
    assert _sample("pkg_operator_rollout_deadline_timestamp_seconds") == due.timestamp()
    assert _sample("pkg_operator_rollout_shadow_diff_ratio") == 0.015
    metrics.record_rollout("gauges", "shadowed", {"health": {"shadowSamples": 0}}, None)
    assert _sample("pkg_operator_rollout_deadline_timestamp_seconds") == 0
    assert _sample("pkg_operator_rollout_shadow_diff_ratio") is None
    metrics.forget_rollout("gauges", "shadowed")
    assert _sample("pkg_operator_rollout_deadline_timestamp_seconds") is None
