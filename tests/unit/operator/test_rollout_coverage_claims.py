"""The status never pairs a new step's percentage with figures measured at the previous one.

The tick that publishes a step judged the fleet at the step before: every device then
ran what its cohort said. Shown next to the new percentage, those figures would claim
the whole fleet already runs what the new step asks (chaos scenario
partition/sidecar-redis-only/all-needed saw ``weight: 100`` with ``onIntended: 4`` while
one of the four devices, cut off from Redis, still ran the old snapshot). What depends
on the percentage is left out until the devices have reported on it.
"""

from __future__ import annotations

from rollout_world import World, the_publish

from pkg_operator.rollout.model import CoverageObs


def test_the_tick_that_publishes_a_step_claims_no_coverage_for_it() -> None:
    world = World([{"setWeight": 10}, {"setWeight": 50}])
    world.tick()
    world.coverage = CoverageObs(targeted=10, on_intended=10, on_stable=9, on_canary=1, weight=10)

    assert the_publish(world.tick()).canary_percent == 50

    covered = world.status["coverage"]
    assert world.weight == 50
    assert "onIntended" not in covered
    assert "expectedCanary" not in covered
    assert covered["display"] == "?/10"
    assert (covered["targeted"], covered["onStable"], covered["onCanary"]) == (10, 9, 1)
    message = world.condition("Progressing")["message"]
    assert "10/10" not in message
    assert "waiting for the devices to report" in message


def test_figures_measured_at_the_published_step_are_shown() -> None:
    world = World([{"setWeight": 10}, {"setWeight": 50}])
    world.tick()
    world.coverage = CoverageObs(targeted=10, on_intended=10, weight=10)
    world.tick()
    world.coverage = CoverageObs(targeted=10, on_intended=7, expected_canary=5, weight=50)
    world.tick()

    covered = world.status["coverage"]
    assert (covered["onIntended"], covered["expectedCanary"], covered["display"]) == (7, 5, "7/10")
    assert "7/10 live devices" in world.condition("Progressing")["message"]
