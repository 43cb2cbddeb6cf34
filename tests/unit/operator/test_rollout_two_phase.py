"""Two-phase activation: prepare on every device that switches, then one flip."""

from __future__ import annotations

from dataclasses import replace

from rollout_world import NEW, World, publishes

TWO_PHASE = {"canary": {"steps": [{"setWeight": 50}], "activation": "twoPhase"}}


def _world() -> World:
    return World([], strategy=TWO_PHASE)


class TestTwoPhase:
    def test_a_weight_step_first_publishes_a_preparation_not_the_weight(self) -> None:
        world = _world()
        decision = world.tick()
        [published] = publishes(decision)
        assert published.canary is None
        assert published.canary_percent == 0
        assert published.prepare is not None
        assert published.prepare.snapshot.version == NEW.version
        assert published.prepare.canary_percent == 50
        assert world.status["prepare"]["weight"] == 50
        assert world.cond("Progressing") == ("True", "Preparing")

    def test_the_flip_waits_for_every_device_that_switches(self) -> None:
        world = _world()
        world.tick()
        world.coverage = replace(world.coverage, prepare_expected=4, prepared=3)
        decision = world.tick()
        assert not publishes(decision)
        assert world.status["prepare"]["prepared"] == "3/4"
        assert world.step == 0
        world.coverage = replace(world.coverage, prepare_expected=4, prepared=4)
        decision = world.tick()
        [flip] = publishes(decision)
        assert flip.prepare is None
        assert (flip.canary is not None, flip.canary_percent) == (True, 50)
        assert "prepare" not in world.status

    def test_a_device_that_cannot_prepare_holds_the_flip_until_the_deadline(self) -> None:
        world = World([], strategy=TWO_PHASE, progressDeadlineSeconds=30)
        world.tick()
        world.coverage = replace(world.coverage, prepare_expected=4, prepared=3)
        world.tick(after=40)
        assert world.outcome == "Failed"
        message = world.status["attempt"]["message"]
        assert "3/4 devices prepared" in message
        assert "holds the flip" in message

    def test_without_two_phase_the_weight_is_published_at_once(self) -> None:
        world = World([{"setWeight": 50}])
        [published] = publishes(world.tick())
        assert published.canary_percent == 50
        assert published.prepare is None
