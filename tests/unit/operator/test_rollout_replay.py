"""Replays and restarts: same inputs, same decision; status alone is enough to continue."""

from __future__ import annotations

import copy
import json
from datetime import timedelta

from rollout_world import NEWER, UID, World, keys, replace_health, steps_of, the_publish

from pkg_operator.rollout.machine import reconcile

STEPS = [
    {"setWeight": 10},
    {"pause": {"durationSeconds": 30}},
    {"analysis": {"maxErrorRate": 0.05, "durationSeconds": 60}},
    {"pause": {}},
    {"setWeight": 50},
]


def long_story(world: World) -> None:
    """A rollout with a restart, an abort, a retry and a completion."""
    world.tick()
    world.tick()
    world.tick(30)
    world.point_at(NEWER)
    world.tick()
    world.request("abort", "stop")
    world.tick()
    world.request("retry", "again")
    world.tick()
    world.tick()
    world.tick(30)
    replace_health(world, evaluations=100)
    world.tick(60)
    world.request("promote", "go")
    world.tick()
    world.tick()
    world.tick()
    assert world.outcome == "Succeeded"


class TestReplayingATick:
    def test_the_same_inputs_give_the_same_decision(self) -> None:
        world = World(STEPS)
        for after in (1, 1, 30, 61):
            before = copy.deepcopy(world.status)
            obs, now = world.obs(), world.now + timedelta(seconds=after)
            first = reconcile(world.spec, before, obs, now)
            second = reconcile(world.spec, before, obs, now)
            assert first == second
            assert before == world.status  # the input status is not modified
            world.tick(after)

    def test_a_decision_fed_its_own_status_at_the_same_instant_does_nothing_more(self) -> None:
        world = World(STEPS)
        for after in (1, 1, 30, 61, 1):
            world.tick(after)
            again = world.tick(after=0)
            assert again.actions == ()


class TestAStaleCopy:
    def test_an_older_generation_than_already_observed_decides_nothing(self) -> None:
        world = World(STEPS)
        world.tick()
        world.change_spec(progressDeadlineSeconds=700)
        world.tick()
        current = copy.deepcopy(world.status)
        world.generation = 1  # a late event carrying the first spec
        decision = world.tick()
        assert decision.actions == ()
        assert world.status == current


class TestARestartedOperator:
    def test_continues_from_the_stored_status_without_repeating_a_step(self) -> None:
        world = World(STEPS)
        world.tick()
        world.tick()
        world.tick(30)
        assert world.step == 2
        stored = json.dumps(world.status)

        # A fresh process: only the stored status survives.
        fresh = World(STEPS)
        fresh.status = json.loads(stored)
        fresh.now = world.now
        replace_health(fresh, evaluations=50)
        fresh.tick(30)
        assert fresh.tick(30).actions != ()  # the gate, 60 s after it started, passes
        assert fresh.step == 3
        recorded = [r for d in fresh.decisions for r in steps_of(d)]
        assert [(r.step_index, r.kind) for r in recorded] == [(3, "pause")]
        assert recorded[0].key == f"{UID}/a1/s3/pause#step"
        assert fresh.status["attempt"]["id"] == 1

    def test_a_replayed_transition_carries_the_same_keys_for_deduplication(self) -> None:
        world = World(STEPS)
        world.tick()
        stored = copy.deepcopy(world.status)
        applied = world.tick()
        # The operator crashed before writing the status: the next tick decides again from
        # the old status, later; the rows it asks for carry the keys already written.
        world.status = stored
        replayed = world.tick(5)
        assert keys(replayed.actions) == keys(applied.actions)


class TestConditionsOverTime:
    def test_last_transition_time_moves_only_when_the_status_changes(self) -> None:
        world = World(STEPS)
        seen: dict[str, tuple[str, str]] = {}
        for after in (1, 1, 5, 30, 10, 61, 1, 100):
            world.tick(after)
            for condition in world.status["conditions"]:
                kind, status = condition["type"], condition["status"]
                stamp = condition["lastTransitionTime"]
                if kind in seen:
                    old_status, old_stamp = seen[kind]
                    if old_status == status:
                        assert stamp == old_stamp, f"{kind} moved without a status change"
                    else:
                        assert stamp != old_stamp, f"{kind} changed status but kept its time"
                seen[kind] = (status, stamp)
        assert world.summary == "Paused"

    def test_every_condition_and_the_status_carry_the_observed_generation(self) -> None:
        world = World(STEPS)
        world.tick()
        world.change_spec(progressDeadlineSeconds=700)
        world.tick()
        assert world.status["observedGeneration"] == 2
        assert {c["observedGeneration"] for c in world.status["conditions"]} == {2}


class TestSeq:
    def test_grows_on_every_change_and_only_then(self) -> None:
        world = World([{"setWeight": 10}, {"pause": {}}])
        world.tick()
        assert world.status["seq"] == 1
        world.tick()
        assert world.status["seq"] == 2
        assert world.tick(50).actions == ()
        assert world.status["seq"] == 2  # paused, nothing changed
        world.devices(targeted=11)
        world.tick()
        assert world.status["seq"] == 3


class TestIdempotencyKeys:
    def test_no_two_rows_or_publications_of_a_long_story_share_a_key(self) -> None:
        world = World(STEPS)
        long_story(world)
        every = [k for d in world.decisions for k in keys(d.actions)]
        assert len(every) == len(set(every))
        assert all(k.startswith(f"{UID}/a") for k in every)

    def test_a_manual_request_key_carries_its_token(self) -> None:
        world = World([{"pause": {}}, {"setWeight": 10}])
        world.tick()
        world.request("promote", "ci-run-77")
        publish = the_publish(world.tick())
        assert publish.key == f"{UID}/a1/s1/setWeight#desired"
        assert f"{UID}/a1/s0/promote/ci-run-77#step" in keys(world.decisions[-1].actions)
