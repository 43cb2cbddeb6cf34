"""Random stories of observations and requests never produce an invalid status.

Hypothesis draws a strategy and a sequence of ticks (time passing, devices
converging or not, health figures, snapshots appearing, vanishing, changing,
spec edits, a newer deployment, people's requests with reused tokens) and
checks after every decision the properties that must always hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollout_world import NEW, NEWER, OLD, World, keys, snapshot
from test_rollout_crd_schema import status_schema, violations

from pkg_operator.actions import ActionRequest
from pkg_operator.conditions import find_condition
from pkg_operator.rollout.machine import reconcile
from pkg_operator.rollout.model import (
    CoverageObs,
    Decision,
    EmitEvent,
    HealthObs,
    SetDesiredState,
    SnapshotInfo,
)

SUMMARIES = {
    "Waiting",
    "Progressing",
    "Paused",
    "Succeeded",
    "RolledBack",
    "Aborted",
    "Failed",
    "Superseded",
}
SNAPSHOTS: dict[str, SnapshotInfo | None] = {
    "new": NEW,
    "newer": NEWER,
    "unready": snapshot("rules@1.5.0", ready=False),
    "missing": None,
    "recreated": snapshot("rules@1.5.0", checksum="sha256:" + "cd" * 32, name=NEW.name),
}

limits = st.fixed_dictionaries(
    {},
    optional={
        "maxErrorRate": st.sampled_from([0.0, 0.01, 0.5]),
        "maxP99LatencyMs": st.sampled_from([10, 50]),
        "maxActivationFailures": st.sampled_from([0, 2]),
        "minEvaluations": st.sampled_from([0, 20]),
        "minCoveragePercent": st.sampled_from([0, 80]),
        "durationSeconds": st.sampled_from([0, 30, 120]),
    },
)
step = st.one_of(
    st.builds(lambda w: {"setWeight": w}, st.sampled_from([0, 5, 12.5, 50, 100])),
    st.builds(
        lambda d: {"pause": {} if d is None else {"durationSeconds": d}},
        st.none() | st.sampled_from([0, 30, 900]),
    ),
    st.builds(lambda a: {"analysis": a}, limits),
)


@dataclass(frozen=True)
class Move:
    after: float
    targeted: int
    intended_share: float
    stale: int
    evaluations: int
    error_share: float
    p99_ms: float | None
    activation_failures: int
    snapshot: str
    baseline: bool
    edit: bool
    superseded: bool
    request: tuple[str, str] | None


moves = st.builds(
    Move,
    after=st.sampled_from([0.0, 1.0, 30.0, 61.0, 400.0, 1000.0]),
    targeted=st.integers(0, 6),
    intended_share=st.sampled_from([0.0, 0.5, 1.0, 1.0, 1.0]),
    stale=st.integers(0, 2),
    evaluations=st.sampled_from([0, 5, 50]),
    error_share=st.sampled_from([0.0] * 5 + [0.2]),
    p99_ms=st.none() | st.sampled_from([5.0, 80.0]),
    activation_failures=st.sampled_from([0] * 7 + [3]),
    # Mostly the same snapshot, so that rollouts get deep; now and then it changes or goes.
    snapshot=st.sampled_from(["new"] * 16 + ["newer", "unready", "missing", "recreated"]),
    baseline=st.booleans(),
    edit=st.sampled_from([False] * 15 + [True]),
    superseded=st.sampled_from([False] * 24 + [True]),
    request=st.none()
    | st.none()
    | st.tuples(
        st.sampled_from(["promote", "promote-full", "abort", "retry", "rollback", "resume"]),
        st.sampled_from(["t1", "t2", "t3", "t4", "t5", "t6"]),
    ),
)


def apply(world: World, move: Move) -> bool:
    """Set the world's observations from a move; True when the spec changed."""
    on_intended = round(move.targeted * move.intended_share)
    world.coverage = CoverageObs(targeted=move.targeted, on_intended=on_intended, stale=move.stale)
    errors = round(move.evaluations * move.error_share)
    world.health = HealthObs(
        evaluations=move.evaluations,
        errors=errors,
        p99_ms=move.p99_ms,
        activation_failures=move.activation_failures,
    )
    world.snapshot = SNAPSHOTS[move.snapshot]
    world.baseline = OLD if move.baseline else None
    world.superseded_by = "newer-deployment" if move.superseded else None
    world.action = (
        ActionRequest(move.request[0], move.request[1], "prop", "") if move.request else None
    )
    if move.edit:
        world.change_spec(progressDeadlineSeconds=int(world.spec["progressDeadlineSeconds"]) + 1)
    return move.edit


def check(world: World, decision: Decision, previous_seq: int, new_generation: bool) -> None:
    status, obs = decision.status, world.obs()
    publishes = [a for a in decision.actions if isinstance(a, SetDesiredState)]
    assert len(publishes) <= 1, decision.actions
    if obs.superseded_by is not None:
        assert decision.actions == ()
    for publish in publishes:
        assert 0 <= publish.canary_percent <= 100
        assert (publish.canary is None) == (publish.canary_percent == 0)
        if publish.canary is not None:
            assert obs.snapshot is not None
            assert obs.snapshot.ready
            assert publish.canary.same_content(obs.snapshot)
    assert 0 <= status["weight"] <= 100
    assert (status["canary"] is None) == (status["weight"] == 0)
    if status["canary"] is not None:
        assert obs.snapshot is not None
        assert obs.snapshot.ready, "a canary is published while its snapshot is not Ready"
        assert status["canary"]["version"] == obs.snapshot.version
        assert status["canary"]["checksum"] == obs.snapshot.checksum
    assert 0 <= status["currentStepIndex"] <= status["stepCount"]
    assert status["summary"] in SUMMARIES
    assert status["observedGeneration"] == obs.generation
    assert status["seq"] >= previous_seq
    for condition in status["conditions"]:
        assert condition["observedGeneration"] == obs.generation
    available = find_condition(status["conditions"], "Available")
    assert available is not None
    if available["status"] == "True":
        assert not new_generation, "Available=True in the first decision of a generation"
        assert status["attempt"]["generation"] == obs.generation
        assert status["attempt"]["outcome"] == "Succeeded"
    paused = find_condition(status["conditions"], "Paused")
    assert paused is not None
    if paused["status"] == "True":
        assert status["summary"] == "Paused"
    assert violations(status, status_schema()) == []


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(step, max_size=5),
    rollout_limits=limits,
    story=st.lists(moves, min_size=1, max_size=40),
)
def test_random_stories_keep_every_invariant(
    steps: list[dict[str, Any]], rollout_limits: dict[str, Any], story: list[Move]
) -> None:
    world = World(
        steps,
        strategy={"canary": {"steps": steps, "analysis": rollout_limits}},
        progressDeadlineSeconds=600,
    )
    seen_keys: set[str] = set()
    previous_seq = 0
    last_generation = 0
    for move in story:
        apply(world, move)
        new_generation = world.generation != last_generation
        before, obs = dict(world.status), world.obs()
        decision = world.tick(move.after)
        assert reconcile(world.spec, before, obs, world.now) == decision  # deterministic
        check(world, decision, previous_seq, new_generation)
        fresh = keys(decision.actions)
        assert len(fresh) == len(set(fresh))
        assert not seen_keys & set(fresh), "an idempotency key was reused for another event"
        seen_keys |= set(fresh)
        assert all(isinstance(a, EmitEvent) or a.key for a in decision.actions)
        previous_seq = world.status["seq"]
        last_generation = world.generation
