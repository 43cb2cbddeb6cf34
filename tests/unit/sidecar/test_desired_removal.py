"""A sidecar whose rollout level disappears from Redis follows its environment's level.

The operator removes rollout levels no PolicyDeployment owns; the sidecar reads
both levels in one round trip, and a rollout level it holds but no longer finds,
while the environment's level is there, is dropped. A Redis that lost every key
drops nothing: the device keeps what it runs until the levels are rewritten.
"""

from __future__ import annotations

from evaluator_sidecar.sidecar.desired import DesiredTracker
from evaluator_sidecar.signals import DesiredLevels, DesiredState, SnapshotRef

V1, V2 = SnapshotRef("rules@1"), SnapshotRef("rules@2")


def env_level(epoch: int) -> DesiredState:
    return DesiredState(epoch=epoch, env="prod", stable=V1)


def rollout_level(epoch: int) -> DesiredState:
    return DesiredState(
        epoch=epoch, env="prod", stable=V2, target="router", region="eu", deployment="by-hand"
    )


def on_the_rollout() -> DesiredTracker:
    tracker = DesiredTracker("router-1")
    tracker.merge_levels(DesiredLevels(env_level(3), rollout_level(9)))
    assert (tracker.resolution().ref, tracker.resolution().source) == (V2, "rollout")
    return tracker


def test_a_removed_rollout_level_gives_way_to_the_environments() -> None:
    tracker = on_the_rollout()
    assert tracker.merge_levels(DesiredLevels(env_level(3), None))
    resolution = tracker.resolution()
    assert (resolution.ref, resolution.source) == (V1, "env")


def test_a_redis_that_lost_every_key_moves_nothing() -> None:
    tracker = on_the_rollout()
    assert not tracker.merge_levels(DesiredLevels(None, None))
    assert tracker.resolution().ref == V2


def test_a_message_is_not_a_read_and_drops_nothing() -> None:
    tracker = on_the_rollout()
    tracker.merge(env_level(12))
    assert tracker.resolution().ref == V2


def test_a_withdrawal_naming_nothing_sends_the_device_to_the_environments_level() -> None:
    tracker = on_the_rollout()
    withdrawn = DesiredState(
        epoch=10, env="prod", stable=None, target="router", region="eu", deployment="by-hand"
    )
    assert tracker.merge(withdrawn)
    assert (tracker.resolution().ref, tracker.resolution().source) == (V1, "env")
