"""The shadow step in the rollout machine: publish the candidate beside, judge the diff rate."""

from __future__ import annotations

import pytest
from rollout_world import NEW, World, publishes

from pkg_operator.rollout.model import HealthObs
from pkg_operator.rollout.spec import SpecError, parse_spec

SHADOW = {
    "shadow": {"durationSeconds": 30, "sampleRate": 0.5, "maxDiffRate": 0.05, "minSamples": 20}
}


def _world() -> World:
    world = World([SHADOW, {"setWeight": 50}])
    world.tick()
    assert world.step == 0
    return world


class TestSpec:
    def test_defaults(self) -> None:
        spec = parse_spec(World([{"shadow": {}}]).spec)
        shadow = spec.steps[0].shadow
        assert shadow is not None
        assert (shadow.duration_seconds, shadow.sample_rate) == (60, 0.1)
        assert (shadow.max_diff_rate, shadow.min_samples) == (0.0, 100)

    def test_a_zero_sample_rate_is_refused(self) -> None:
        with pytest.raises(SpecError, match="sampleRate"):
            parse_spec(World([{"shadow": {"sampleRate": 0}}]).spec)


class TestShadowStep:
    def test_the_candidate_is_published_as_a_shadow_not_a_canary(self) -> None:
        world = World([SHADOW, {"setWeight": 50}])
        decision = world.tick()
        [published] = publishes(decision)
        assert published.canary is None
        assert published.canary_percent == 0
        assert published.shadow is not None
        assert published.shadow.snapshot.version == NEW.version
        assert published.shadow.sample_rate == 0.5
        assert world.status["shadow"]["version"] == NEW.version

    def test_it_passes_after_its_duration_with_enough_samples_and_drops_the_shadow(
        self,
    ) -> None:
        world = _world()
        world.health = HealthObs(shadow_samples=19, shadow_diffs=0)
        world.tick(after=40)
        assert world.step == 0  # too few samples
        world.health = HealthObs(shadow_samples=200, shadow_diffs=5)
        decision = world.tick()
        assert world.step == 1
        [published] = publishes(decision)
        assert published.shadow is None
        assert published.canary_percent == 50
        assert "shadow" not in world.status

    def test_a_diff_rate_above_the_limit_fails_the_rollout_with_the_figures(self) -> None:
        world = _world()
        world.health = HealthObs(shadow_samples=100, shadow_diffs=30)
        decision = world.tick()
        assert world.outcome == "Failed"
        attempt = world.status["attempt"]
        assert attempt["reason"] == "ShadowDiffExceeded"
        assert "30 of 100" in attempt["message"]
        assert "30.00%" in attempt["message"]
        [published] = publishes(decision)
        assert published.shadow is None
        assert world.status["blockedSnapshots"][0]["reason"] == "ShadowDiffExceeded"
        assert world.cond("Degraded") == ("True", "ShadowDiffExceeded")

    def test_the_diff_rate_is_not_judged_before_min_samples(self) -> None:
        world = _world()
        world.health = HealthObs(shadow_samples=10, shadow_diffs=10)
        world.tick()
        assert world.outcome is None

    def test_the_status_shows_the_diff_rate(self) -> None:
        world = _world()
        world.health = HealthObs(shadow_samples=40, shadow_diffs=1)
        world.tick()
        assert world.status["health"]["shadowDiffRate"] == 0.025
        assert "1 of 40" in world.status["message"]
