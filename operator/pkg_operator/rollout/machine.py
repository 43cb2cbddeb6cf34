"""The PolicyDeployment rollout: a pure state machine, one decision per tick.

``reconcile(spec, status, obs, now) -> Decision`` reads the spec (defaults
applied by the CRD), the status it wrote last time, what the operator observed
(:class:`~pkg_operator.rollout.model.Observations`) and the time, and returns
the complete new status plus the side effects to perform, in order. It does no
I/O, reads no clock and draws no random numbers: the same inputs always give
the same decision, which is what makes it safe to replay and easy to test.

States (``status.summary``; ``status.attempt.outcome`` once an attempt ends)::

    new generation / retry / snapshot content changed
          │
          ▼
      Waiting ──(snapshot Ready)──► Progressing: step 0 … step n-1 ──► finishing (100%,
      (snapshot not Ready;             ▲    │ setWeight: coverage        waits for coverage)
       canary withdrawn)               │    │ pause {durationSeconds}            │
          │ deadline                   │    │ analysis: gate                     ▼
          ▼                            │    ▼                               Succeeded
       Failed                      Paused (pause {}: promote/resume)   (rollback action →
                                                                         RolledBack)
    any running state ── limit breached / deadline / snapshot lost ──► RolledBack (automatic)
    any running state ── abort (or rollback) action ─────────────────► Aborted
    any state ── a newer PolicyDeployment for the same env/target/region ► Superseded
    RolledBack / Aborted / Failed / Superseded ── retry action ──► new attempt from step 0

What this does better than the rollout controllers it learns from (Argo
Rollouts, Flagger), pain by pain:

- Rollouts stuck with no end state. Every attempt ends in a named outcome
  (Succeeded, RolledBack, Aborted, Failed, Superseded). Every step except an
  indefinite pause has a deadline: its own planned duration plus
  ``progressDeadlineSeconds``, so a long pause or gate is not cut short and a
  stalled one cannot hang; waiting for a snapshot that never becomes Ready is
  bounded the same way. The deadline message carries the coverage figures (how
  many devices, how many stale), so it says why it stalled.
- Confusing aborts. Three different words for three different things:
  RolledBack (the operator did it, Degraded=True with the limit that was
  breached and the figures), Aborted (a person did it, Degraded=False, their
  name and reason in the audit row), Failed (the deadline passed before
  anything was published, so nothing had to be rolled back). A promote that
  arrives in the tick where a limit is breached is refused, never applied.
- Rollbacks that replay every step. A rollback is ONE desired-state
  publication (stable only, canary withdrawn, weight 0) decided in the tick
  that observed the breach; ``status.lastRollback`` records when the breach
  was seen and when the rollback was published (timeToRollbackSeconds).
- Spec changes mid-analysis promoting an untested version. Any new generation
  ends the running attempt (Superseded, reason SpecChanged) and starts a new
  attempt from step 0; the old canary is withdrawn at once; the health window
  restarts with the step; a snapshot that is not Ready is never published, and
  a canary whose snapshot stops being Ready is rolled back. A PolicySnapshot
  re-created under the same name with other content counts as a spec change.
- Split-brain controllers. The machine keeps no memory outside status, and
  ``status.seq`` grows with every change so the operator can refuse to act on
  a stale copy; every side effect carries a deterministic idempotency key
  (uid, attempt, step, event, token), so a replayed tick writes no duplicate
  row; a superseded deployment takes no action at all; and the desired state
  itself is written with a compare-and-set on the epoch (see signals.py).
- CI unable to tell whether the status is about its own change. Every
  condition carries observedGeneration, and the decision that first sees a new
  generation sets Available=False for it, so
  ``kubectl wait --for=condition=Available`` only returns for the change it
  waits on (kubectl 1.34 itself also skips a condition whose observedGeneration
  is older than metadata.generation: both guards are proven in
  tests/integration/test_crd_policydeployment.py); ``status.attempt``
  names the generation and snapshot version it rolls out, and
  ``status.history`` keeps how the earlier attempts ended.
- Promoting past a coverage wait. promote/resume finish a pause or an
  analysis gate early; they are refused (with what to do instead) on a
  setWeight step or while finishing, because promoting would not make a single
  device switch, only make the status claim it did. promote-full skips to
  100% and still completes only once coverage holds.

Rules worth knowing when reading the code:

- One step starts per tick at most, and a step is judged only in a later tick
  than the one that started it (coverage figures describe the weight that was
  published before the tick). So a decision never contains two
  SetDesiredState actions: intents within a tick collapse into one
  publication, made only when it differs from what is already published.
- A decision that observes a new generation only switches attempts (and
  withdraws or replaces the canary); a person's request waiting in the
  annotation is left unhandled for the next tick (its token is not recorded).
- ``stable`` follows the environment's active snapshot (obs.baseline) until
  the deployment first publishes; from then on the deployment pins it.
- Health limits (``strategy.canary.analysis``) are checked at every step while
  a canary is published; an analysis step's own limits override them for that
  gate. The error rate is judged once the window holds ``minEvaluations``.
- resume is promote under another name (both finish a pause or a gate);
  rollback during a running attempt is abort (back to stable at once).
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
    """Decide one tick of the rollout. Pure; see the module docstring."""
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
    actions = t.out.actions(t.now)
    return Decision(
        status=render.status(t.st, t.spec, t.obs, t.now, status),
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
    breach = judge.health_breach(t.spec, t.st, t.obs)
    if breach is not None:
        requests.refuse_if(t, request, f"the canary breached a limit: {breach.message}")
        rollback.roll_back(t, breach.reason, breach.message)
        return
    if request is not None and requests.while_running(t, request):
        return
    if _check_deadline(t):
        return
    steps.advance_if_done(t)


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
