"""The rollout state machine: ``reconcile(spec, status, obs, now) -> Decision``. Pure.

One decision per tick: the spec, the status written last time, the observations
and the time in; the complete new status and the side effects to perform, in
order, out. No I/O, no clock, no randomness. This module owns the top-level flow
of a tick (supersession, a new generation or snapshot content, a running or an
ended attempt); the transitions live in steps, rollback and requests, the
judgements in judge. The states and the design: docs/rollout-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pkg_operator.actions import ActionRequest
from pkg_operator.rollout import judge, render, requests, rollback, steps
from pkg_operator.rollout.intents import OPERATOR_ACTOR
from pkg_operator.rollout.model import Decision, Observations
from pkg_operator.rollout.spec import SpecError, parse_spec
from pkg_operator.rollout.state import Attempt, load_state
from pkg_operator.rollout.tick import Tick

__all__ = ["OPERATOR_ACTOR", "reconcile"]


def reconcile(
    spec: Mapping[str, Any], status: Mapping[str, Any], obs: Observations, now: datetime
) -> Decision:
    """Decide one tick of the rollout. Pure; see docs/rollout-state-machine.md."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("reconcile needs a timezone-aware `now` (UTC)")
    moment = now.astimezone(UTC)
    state = load_state(status)
    if state.observed_generation is not None and obs.generation < state.observed_generation:
        # A copy older than one already decided on (a stale cache or a late event):
        # acting on it would restart the rollout for a spec that is no longer current.
        return Decision(status=dict(status), actions=(), requeue_after=None)
    try:
        rollout = parse_spec(spec)
    except SpecError as exc:
        return render.invalid(status, state, obs, moment, str(exc))
    t = Tick(rollout, state, obs, moment)
    _run(t)
    actions = t.out.actions(t.now)  # first: a publication also becomes status.lastPublish
    new_status = render.status(t.st, t.spec, t.obs, t.now, status)
    actions += render.activation_events(status, new_status)
    return Decision(
        status=new_status,
        actions=actions,
        requeue_after=judge.requeue_after(t.spec, t.st, t.obs, t.now),
    )


def _run(t: Tick) -> None:
    st, obs = t.st, t.obs
    request = requests.pending(st, obs)
    if obs.superseded_by is not None:
        _superseded(t, request)
        return
    if st.attempt is None or st.observed_generation != obs.generation:
        first = st.attempt is None
        steps.new_attempt(
            t,
            "SpecChanged",
            f"the spec changed (generation {obs.generation}); a new attempt starts "
            "from the first step",
        )
        if not first:
            t.out.event(
                "Normal",
                "NewGeneration",
                f"generation {obs.generation}: attempt {t.attempt.id} starts from the first step",
            )
        steps.try_start(t)
        return
    if judge.snapshot_content_changed(st, obs):
        snap = obs.snapshot
        assert snap is not None
        steps.new_attempt(
            t,
            "SnapshotChanged",
            f"PolicySnapshot {snap.name} now holds {snap.version} ({snap.checksum[:12]}); "
            "a new attempt rolls it out from the first step",
        )
        t.out.event(
            "Normal",
            "SnapshotChanged",
            f"PolicySnapshot {snap.name} changed to {snap.version}: attempt "
            f"{t.attempt.id} starts from the first step",
        )
        steps.try_start(t)
        return
    if t.attempt.running:
        _running(t, request)
    elif request is not None:
        requests.after_end(t, request)


def _running(t: Tick, request: ActionRequest | None) -> None:
    if request is not None and request.action in ("abort", "rollback"):
        requests.accept(t, request, f"{request.action}: back to the stable snapshot at once")
        rollback.roll_back(
            t,
            "Aborted",
            f"aborted by {request.actor}" + (f": {request.reason}" if request.reason else ""),
            manual=request,
        )
        return
    problem = judge.snapshot_problem(t.spec, t.obs)
    if problem is not None:
        reason, message = problem
        if judge.canary_published(t.st):
            requests.refuse_if(t, request, f"the rollout was rolled back: {message}")
            rollback.roll_back(t, reason, f"the canary's snapshot is no longer usable: {message}")
            return
        requests.refuse_if(t, request, f"{message}; fix the snapshot, or abort")
        _check_deadline(t)
        return
    if t.st.step_started_at is None:
        # The snapshot just became Ready: start. A request waits for the next tick.
        steps.try_start(t)
        return
    breach = judge.health_breach(t.spec, t.st, t.obs) or judge.shadow_breach(t.spec, t.st, t.obs)
    if breach is None:
        t.st.bad_checks = 0
    elif _breach_counts(t, breach):
        requests.refuse_if(t, request, f"the canary breached a limit: {breach.message}")
        rollback.roll_back(t, breach.reason, breach.message)
        return
    if request is not None and requests.while_running(t, request):
        return
    if _check_deadline(t):
        return
    if breach is None and steps.flip_if_prepared(t):
        return
    if breach is None:
        # A step never passes on a check that found a breached limit.
        steps.advance_if_done(t)


def _breach_counts(t: Tick, breach: judge.Breach) -> bool:
    """Count one bad check; True once ``consecutiveFailures`` of them came in a row."""
    st = t.st
    st.bad_checks += 1
    needed = judge.checks_needed(t.spec, st)
    if st.bad_checks < needed:
        t.out.event(
            "Warning",
            "HealthCheckFailed",
            f"bad check {st.bad_checks} of {needed} in a row: {breach.message}",
        )
        return False
    return True


def _check_deadline(t: Tick) -> bool:
    why = judge.overdue(t.spec, t.st, t.obs, t.now)
    if why is None:
        return False
    rollback.roll_back(t, "ProgressDeadlineExceeded", why)
    return True


def _superseded(t: Tick, request: ActionRequest | None) -> None:
    st, by = t.st, t.obs.superseded_by
    if st.attempt is None:
        st.attempt = Attempt(id=1, generation=t.obs.generation, started_at=t.now)
    attempt = t.attempt
    if attempt.outcome != "Superseded":
        before = "running" if attempt.running else f"ended {attempt.outcome}"
        t.end(
            "Superseded",
            "SupersededByDeployment",
            f"PolicyDeployment {by} now rolls out to {judge.where(t.spec)}; this one stopped "
            f"({before}) and publishes nothing",
        )
    # The newer deployment owns this target's desired state now.
    st.canary, st.weight = None, 0.0
    if request is not None:
        # No actions at all while superseded, not even an event: record the refusal only.
        requests.handled(t, request, accepted=False, outcome=f"refused: superseded by {by}")
