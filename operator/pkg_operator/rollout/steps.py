"""Attempts and their steps: start an attempt, start a step, advance, complete. Pure.

One step starts per tick at most, and a step is judged only in a later tick
than the one that started it. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from pkg_operator.conditions import format_time
from pkg_operator.rollout import judge
from pkg_operator.rollout.intents import OPERATOR_ACTOR
from pkg_operator.rollout.model import (
    PrepareSpec,
    RecordPromotion,
    RecordStep,
    ShadowSpec,
    SnapshotRef,
)
from pkg_operator.rollout.state import MAX_BLOCKED_SNAPSHOTS, MAX_HISTORY, Attempt
from pkg_operator.rollout.tick import Tick

__all__ = [
    "advance_if_done",
    "block_snapshot",
    "flip_if_prepared",
    "new_attempt",
    "start_step",
    "try_start",
]


def new_attempt(t: Tick, end_reason: str, end_message: str) -> None:
    """End the running attempt (Superseded) if any, keep it in history, and start the next."""
    st = t.st
    old = st.attempt
    if old is not None:
        if old.running:
            old.outcome, old.reason, old.message = "Superseded", end_reason, end_message
            old.finished_at = t.now
            t.out.record(
                RecordStep(
                    attempt=old.id,
                    step_index=st.step_index,
                    kind="superseded",
                    percent=st.weight,
                    version=old.snapshot.version if old.snapshot else "",
                    detail=end_message,
                    key=t.out.key("superseded", "step", attempt=old.id),
                )
            )
        st.history = [*st.history, old.history_entry()][-MAX_HISTORY:]
    st.attempt = Attempt(
        id=old.id + 1 if old else 1,
        generation=t.obs.generation,
        started_at=t.now,
    )
    st.step_index = 0
    st.step_started_at = None


def try_start(t: Tick, *, by_person: bool = False) -> None:
    """Start the attempt's first step if its snapshot is Ready; else withdraw and wait.

    A snapshot whose rollout was aborted or rolled back for health is not started
    again by itself (a new generation, the snapshot changing back): the attempt
    fails SnapshotBlocked until a person retries (``by_person``), which unblocks it.
    """
    st = t.st
    if judge.snapshot_problem(t.spec, t.obs) is not None:
        if judge.canary_published(st):
            t.out.publish(st.stable, None, 0.0, kind="withdraw", reason="snapshot not Ready")
            t.out.record_step("withdraw", "canary withdrawn until the snapshot is Ready")
        return
    snap = t.obs.snapshot
    assert snap is not None
    t.attempt.snapshot = SnapshotRef.of(snap)
    if by_person:
        st.blocked = [b for b in st.blocked if b.get("checksum") != (snap.checksum or snap.version)]
    elif _refuse_blocked(t):
        return
    if st.stable is not None and st.stable.same_content(snap):
        # Nothing to roll out: go straight to finishing, which still waits for coverage.
        start_step(t, len(t.spec.steps))
    else:
        start_step(t, 0)


def _identity(snap: SnapshotRef) -> str:
    """What a blocked snapshot is known by: its content checksum (its version without one)."""
    return snap.checksum or snap.version


def _refuse_blocked(t: Tick) -> bool:
    st, snap = t.st, t.attempt.snapshot
    assert snap is not None
    entry = st.blocked_entry(_identity(snap))
    if entry is None:
        return False
    message = (
        f"{snap.version} ({_identity(snap)[:12]}) is not rolled out again by itself: attempt "
        f"{entry.get('attempt')} ended {entry.get('reason')} at {entry.get('at')}. To roll it "
        'out anyway, set the annotation pkg.seedcore.io/action to {"action": "retry", '
        '"token": "<unique>", "actor": "<you>"}; or point spec.snapshotRef at a fixed snapshot'
    )
    if judge.canary_published(st):
        t.out.publish(st.stable, None, 0.0, kind="withdraw", reason="snapshot blocked")
    t.out.record_step("blocked", message)
    t.out.event("Warning", "SnapshotBlocked", message)
    t.end("Failed", "SnapshotBlocked", message)
    return True


def block_snapshot(t: Tick, reason: str) -> None:
    """Remember that this attempt's snapshot was aborted or rolled back for health."""
    st, attempt = t.st, t.attempt
    snap = attempt.snapshot
    if snap is None or reason not in judge.HEALTH_REASONS:
        return
    entry = {
        "version": snap.version,
        "checksum": _identity(snap),
        "reason": reason,
        "attempt": attempt.id,
        "at": format_time(t.now),
    }
    kept = [b for b in st.blocked if b.get("checksum") != _identity(snap)]
    st.blocked = [*kept, entry][-MAX_BLOCKED_SNAPSHOTS:]


def start_step(t: Tick, index: int) -> None:
    """Start step ``index`` (``len(steps)``: finishing at 100%), publishing what it needs."""
    st, steps, out = t.st, t.spec.steps, t.out
    snap = t.attempt.snapshot
    assert snap is not None, "a step starts only with a Ready snapshot"
    st.step_index, st.step_started_at = index, t.now
    st.bad_checks = 0
    if index >= len(steps):
        if st.stable is not None and st.stable.same_content(snap):
            out.publish(
                st.stable, None, 0.0, kind="finish", reason=f"{snap.version} is already stable"
            )
            detail = f"{snap.version} is already the stable snapshot: waiting for coverage"
        else:
            out.publish(
                st.stable, snap, 100.0, kind="finish", reason=f"{snap.version} to every device"
            )
            detail = f"{snap.version} to every device: waiting for coverage"
        out.record_step("finish", detail)
        return
    step = steps[index]
    if step.shadow is not None:
        out.publish(
            st.stable,
            st.canary if index > 0 else None,
            st.weight if index > 0 else 0.0,
            kind="shadow",
            reason=f"step {index + 1}/{len(steps)}: {snap.version} in shadow at "
            f"{step.shadow.sample_rate:g} of requests",
            shadow=ShadowSpec(
                snapshot=snap,
                sample_rate=step.shadow.sample_rate,
                step=format_time(t.now),
                deployment_name=t.obs.name,
            ),
        )
    elif step.kind == "setWeight" and _two_phase(t, snap, step.weight):
        # Phase one: the devices the step switches prepare it; the flip follows.
        out.publish(
            st.stable,
            st.canary,
            st.weight,
            kind="prepare",
            reason=f"step {index + 1}/{len(steps)}: devices prepare {snap.version} for "
            f"{step.weight:g}%",
            prepare=PrepareSpec(snap, step.weight),
        )
    elif step.kind == "setWeight":
        weight = step.weight
        out.publish(
            st.stable,
            snap if weight > 0 else None,
            weight,
            kind="setWeight",
            reason=f"step {index + 1}/{len(steps)}: {snap.version} at {weight:g}%",
        )
    elif index == 0:
        # A new attempt starts clean: no canary of an earlier attempt stays published.
        out.publish(st.stable, None, 0.0, kind=step.kind, reason="a new attempt starts")
    elif st.shadow is not None:
        # The shadow step before this one ended: the sidecars drop the candidate.
        out.publish(st.stable, st.canary, st.weight, kind=step.kind, reason="shadow step ended")
    out.record_step(step.kind, f"step {index + 1}/{len(steps)}: {step.describe()}")


def _two_phase(t: Tick, snap: SnapshotRef, weight: float) -> bool:
    """Whether raising the canary to ``weight`` goes through a preparation first."""
    st = t.st
    if not t.spec.two_phase or weight <= 0:
        return False
    same_canary = st.canary is not None and st.canary.same_content(snap)
    return not same_canary or weight > st.weight


def flip_if_prepared(t: Tick) -> bool:
    """Phase two: once every device that switches has prepared, publish the canary.

    True when the flip was published (the tick has moved the rollout).
    """
    st, prepare = t.st, t.st.prepare
    if prepare is None or not judge.prepared(t.obs):
        return False
    covered = t.obs.coverage
    t.out.publish(
        st.stable,
        prepare.snapshot,
        prepare.canary_percent,
        kind="flip",
        reason=f"{covered.prepared}/{covered.prepare_expected} devices prepared "
        f"{prepare.snapshot.version}: all switch now at {prepare.canary_percent:g}%",
    )
    t.out.record_step(
        "flip",
        f"{covered.prepared}/{covered.prepare_expected} devices prepared; flipped to "
        f"{prepare.canary_percent:g}%",
    )
    return True


def advance_if_done(t: Tick) -> None:
    """Start the next step once the current one is done; complete once finishing is."""
    if not judge.step_done(t.spec, t.st, t.obs, t.now):
        return
    if judge.current_step(t.spec, t.st) is None:
        _complete(t)
    else:
        start_step(t, t.st.step_index + 1)


def _complete(t: Tick) -> None:
    st, attempt, out = t.st, t.attempt, t.out
    snap = attempt.snapshot
    assert snap is not None
    coverage = t.coverage_text()
    where = judge.where(t.spec)
    if st.stable is not None and st.stable.same_content(snap) and st.canary is None:
        reason = "AlreadyStable"
        message = f"{snap.version} is the stable snapshot of {where}; {coverage}"
    else:
        reason = "RolloutComplete"
        message = f"{snap.version} is now the stable snapshot of {where}; {coverage}"
        from_version = st.stable.version if st.stable else None
        st.previous_stable = st.stable
        out.publish(snap, None, 0.0, kind="complete", reason=f"{snap.version} becomes stable")
        out.record(
            RecordPromotion(
                action="promote",
                from_version=from_version,
                to_version=snap.version,
                actor=OPERATOR_ACTOR,
                reason=f"rollout attempt {attempt.id} completed: {coverage}",
                metrics=t.metrics(reason),
                key=out.key("complete", "promotion"),
            )
        )
    out.record_step("complete", message)
    out.event("Normal", reason, message)
    t.end("Succeeded", reason, message)
