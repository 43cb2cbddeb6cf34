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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pkg_operator.actions import ActionRequest
from pkg_operator.conditions import format_time
from pkg_operator.rollout import render
from pkg_operator.rollout.model import (
    Action,
    Decision,
    EmitEvent,
    Observations,
    RecordPromotion,
    RecordStep,
    SetDesiredState,
    SnapshotRef,
    idempotency_key,
)
from pkg_operator.rollout.spec import RolloutSpec, SpecError, Step, parse_spec
from pkg_operator.rollout.state import (
    MAX_HISTORY,
    MAX_PROCESSED_ACTIONS,
    Attempt,
    State,
    load_state,
)

__all__ = ["OPERATOR_ACTOR", "reconcile"]

OPERATOR_ACTOR = "pkg-operator"


@dataclass(frozen=True)
class _Intent:
    """Why the desired state changed this tick; only the last intent of a tick is published."""

    kind: str
    step_index: int
    reason: str
    token: str | None


@dataclass(frozen=True)
class _Breach:
    reason: str
    message: str


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
    tick = _Tick(rollout, state, obs, moment)
    tick.run()
    return tick.decide(status)


class _Tick:
    """One decision: mutates a working copy of the state and collects the side effects."""

    def __init__(self, spec: RolloutSpec, state: State, obs: Observations, now: datetime) -> None:
        self.spec = spec
        self.st = state
        self.obs = obs
        self.now = now
        self.records: list[Action] = []
        self.events: list[EmitEvent] = []
        self.intent: _Intent | None = None
        if state.last_publish is None:
            # Until this deployment publishes, the target runs the environment's snapshot.
            state.stable = SnapshotRef.of(obs.baseline) if obs.baseline else None
        state.step_index = min(state.step_index, len(spec.steps))
        self.published_before = (state.stable, state.canary, state.weight)

    # ----------------------------------------------------------------- the tick

    def run(self) -> None:
        request = self._new_request()
        if self.obs.superseded_by is not None:
            self._superseded(request)
            return
        if self.st.attempt is None or self.st.observed_generation != self.obs.generation:
            first = self.st.attempt is None
            self._new_attempt(
                "SpecChanged",
                f"the spec changed (generation {self.obs.generation}); a new attempt starts "
                "from the first step",
            )
            if not first:
                self._event(
                    "Normal",
                    "NewGeneration",
                    f"generation {self.obs.generation}: attempt {self._attempt.id} starts from "
                    "the first step",
                )
            self._try_start()
            return
        if self._snapshot_content_changed():
            snap = self.obs.snapshot
            assert snap is not None
            self._new_attempt(
                "SnapshotChanged",
                f"PolicySnapshot {snap.name} now holds {snap.version} ({snap.checksum[:12]}); "
                "a new attempt rolls it out from the first step",
            )
            self._event(
                "Normal",
                "SnapshotChanged",
                f"PolicySnapshot {snap.name} changed to {snap.version}: attempt "
                f"{self._attempt.id} starts from the first step",
            )
            self._try_start()
            return
        if self._attempt.running:
            self._running(request)
        else:
            self._ended(request)

    def _running(self, request: ActionRequest | None) -> None:
        if request is not None and request.action in ("abort", "rollback"):
            self._accept(request, f"{request.action}: back to the stable snapshot at once")
            self._roll_back(
                "Aborted",
                f"aborted by {request.actor}" + (f": {request.reason}" if request.reason else ""),
                manual=request,
            )
            return
        problem = self._snapshot_problem()
        if problem is not None:
            reason, message = problem
            if self._canary_published():
                self._refuse_if(request, f"the rollout was rolled back: {message}")
                self._roll_back(reason, f"the canary's snapshot is no longer usable: {message}")
                return
            self._refuse_if(request, f"{message}; fix the snapshot, or abort")
            self._check_deadline()
            return
        if self.st.step_started_at is None:
            # The snapshot just became Ready: start. A request waits for the next tick.
            self._try_start()
            return
        breach = self._health_breach()
        if breach is not None:
            self._refuse_if(request, f"the canary breached a limit: {breach.message}")
            self._roll_back(breach.reason, breach.message)
            return
        if request is not None and self._person_while_running(request):
            return
        if self._check_deadline():
            return
        self._advance_if_done()

    def _ended(self, request: ActionRequest | None) -> None:
        if request is None:
            return
        attempt = self._attempt
        if request.action == "retry":
            if attempt.outcome == "Succeeded":
                self._refuse(
                    request,
                    f"attempt {attempt.id} succeeded: there is nothing to retry; to roll out again "
                    "change the spec (for example spec.snapshotRef)",
                )
                return
            self._accept(request, f"attempt {attempt.id + 1} starts from the first step")
            self._new_attempt("Retried", "retried")
            self._record_step(
                "retry", self._describe_request(request), token=request.token, actor=request.actor
            )
            self._try_start()
            return
        if request.action == "rollback":
            if attempt.outcome != "Succeeded":
                self._refuse(
                    request,
                    f"attempt {attempt.id} ended {attempt.outcome}: the stable snapshot already "
                    "runs; rollback undoes a completed rollout",
                )
                return
            if self.st.previous_stable is None:
                self._refuse(
                    request,
                    "there is no earlier stable snapshot to roll back to (the rollout started "
                    "from none); point spec.snapshotRef at the snapshot you want instead",
                )
                return
            self._accept(request, f"rolled back to {self.st.previous_stable.version}")
            self._roll_back_completed(request)
            return
        self._refuse(
            request,
            f"attempt {attempt.id} already ended {attempt.outcome}: {request.action} acts on a "
            "running rollout; use retry to start again",
        )

    # ---------------------------------------------------------------- attempts

    @property
    def _attempt(self) -> Attempt:
        attempt = self.st.attempt
        assert attempt is not None, "an attempt exists once run() has started"
        return attempt

    def _new_attempt(self, end_reason: str, end_message: str) -> None:
        old = self.st.attempt
        if old is not None:
            if old.running:
                old.outcome, old.reason, old.message = "Superseded", end_reason, end_message
                old.finished_at = self.now
                self.records.append(
                    RecordStep(
                        attempt=old.id,
                        step_index=self.st.step_index,
                        kind="superseded",
                        percent=self.st.weight,
                        version=old.snapshot.version if old.snapshot else "",
                        detail=end_message,
                        key=self._key("superseded", "step", attempt=old.id),
                    )
                )
            self.st.history = [*self.st.history, old.history_entry()][-MAX_HISTORY:]
        self.st.attempt = Attempt(
            id=old.id + 1 if old else 1,
            generation=self.obs.generation,
            started_at=self.now,
        )
        self.st.step_index = 0
        self.st.step_started_at = None

    def _end(self, outcome: str, reason: str, message: str) -> None:
        attempt = self._attempt
        attempt.outcome, attempt.reason, attempt.message = outcome, reason, message
        attempt.finished_at = self.now

    def _try_start(self) -> None:
        """Start the attempt's first step if its snapshot is Ready; else withdraw and wait."""
        if self._snapshot_problem() is not None:
            if self._canary_published():
                self._publish(
                    self.st.stable, None, 0.0, kind="withdraw", reason="snapshot not Ready"
                )
                self._record_step("withdraw", "canary withdrawn until the snapshot is Ready")
            return
        snap = self.obs.snapshot
        assert snap is not None
        self._attempt.snapshot = SnapshotRef.of(snap)
        if self.st.stable is not None and self.st.stable.same_content(snap):
            # Nothing to roll out: go straight to finishing, which still waits for coverage.
            self._start_step(len(self.spec.steps))
        else:
            self._start_step(0)

    def _superseded(self, request: ActionRequest | None) -> None:
        by = self.obs.superseded_by
        if self.st.attempt is None:
            self.st.attempt = Attempt(id=1, generation=self.obs.generation, started_at=self.now)
        attempt = self._attempt
        if attempt.outcome != "Superseded":
            before = "running" if attempt.running else f"ended {attempt.outcome}"
            self._end(
                "Superseded",
                "SupersededByDeployment",
                f"PolicyDeployment {by} now rolls out to {self._where()}; this one stopped "
                f"({before}) and publishes nothing",
            )
        # The newer deployment owns this target's desired state now.
        self.st.canary, self.st.weight = None, 0.0
        if request is not None:
            # No actions at all while superseded, not even an event: record the refusal only.
            self._handled(request, accepted=False, outcome=f"refused: superseded by {by}")

    # ------------------------------------------------------------------- steps

    def _start_step(self, index: int) -> None:
        st, steps = self.st, self.spec.steps
        snap = self._attempt.snapshot
        assert snap is not None, "a step starts only with a Ready snapshot"
        st.step_index, st.step_started_at = index, self.now
        if index >= len(steps):
            if st.stable is not None and st.stable.same_content(snap):
                self._publish(
                    st.stable, None, 0.0, kind="finish", reason=f"{snap.version} is already stable"
                )
                detail = f"{snap.version} is already the stable snapshot: waiting for coverage"
            else:
                self._publish(
                    st.stable, snap, 100.0, kind="finish", reason=f"{snap.version} to every device"
                )
                detail = f"{snap.version} to every device: waiting for coverage"
            self._record_step("finish", detail)
            return
        step = steps[index]
        if step.kind == "setWeight":
            weight = step.weight
            self._publish(
                st.stable,
                snap if weight > 0 else None,
                weight,
                kind="setWeight",
                reason=f"step {index + 1}/{len(steps)}: {snap.version} at {weight:g}%",
            )
        elif index == 0:
            # A new attempt starts clean: no canary of an earlier attempt stays published.
            self._publish(st.stable, None, 0.0, kind=step.kind, reason="a new attempt starts")
        self._record_step(step.kind, f"step {index + 1}/{len(steps)}: {step.describe()}")

    def _current_step(self) -> Step | None:
        index = self.st.step_index
        return self.spec.steps[index] if index < len(self.spec.steps) else None

    def _advance_if_done(self) -> None:
        started = self.st.step_started_at
        if started is None or self.now <= started:
            return  # a step is judged only after the tick that started it
        step = self._current_step()
        if step is None:
            if self._converged():
                self._complete()
            return
        elapsed = (self.now - started).total_seconds()
        if step.kind == "setWeight":
            done = self._converged()
        elif step.kind == "pause":
            done = step.pause_seconds is not None and elapsed >= step.pause_seconds
        else:
            limits = step.limits
            health = self.obs.health
            done = (
                elapsed >= (limits.duration_seconds or 0)
                and health.evaluations >= (limits.min_evaluations or 0)
                and (
                    limits.min_coverage_percent is None
                    or self._coverage_percent() >= limits.min_coverage_percent
                )
            )
        if done:
            self._start_step(self.st.step_index + 1)

    def _complete(self) -> None:
        st, attempt = self.st, self._attempt
        snap = attempt.snapshot
        assert snap is not None
        coverage = self._coverage_text()
        if st.stable is not None and st.stable.same_content(snap) and st.canary is None:
            reason = "AlreadyStable"
            message = f"{snap.version} is the stable snapshot of {self._where()}; {coverage}"
        else:
            reason = "RolloutComplete"
            message = f"{snap.version} is now the stable snapshot of {self._where()}; {coverage}"
            from_version = st.stable.version if st.stable else None
            st.previous_stable = st.stable
            self._publish(snap, None, 0.0, kind="complete", reason=f"{snap.version} becomes stable")
            self.records.append(
                RecordPromotion(
                    action="promote",
                    from_version=from_version,
                    to_version=snap.version,
                    actor=OPERATOR_ACTOR,
                    reason=f"rollout attempt {attempt.id} completed: {coverage}",
                    metrics=self._metrics(reason),
                    key=self._key("complete", "promotion"),
                )
            )
        self._record_step("complete", message)
        self._event("Normal", reason, message)
        self._end("Succeeded", reason, message)

    # ------------------------------------------------------------- rolling back

    def _roll_back(self, reason: str, message: str, manual: ActionRequest | None = None) -> None:
        """Back to stable at once: one publication, no step replayed."""
        st, attempt = self.st, self._attempt
        had_canary = self._canary_published()
        from_version = (
            st.canary.version
            if st.canary
            else attempt.snapshot.version
            if attempt.snapshot
            else None
        )
        to_version = st.stable.version if st.stable else None
        kind = manual.action if manual else "rollback"
        token = manual.token if manual else None
        actor = manual.actor if manual else OPERATOR_ACTOR
        where = self._step_text()
        full = f"{message} ({where})"
        self._publish(st.stable, None, 0.0, kind=kind, reason=f"{reason}: {message}", token=token)
        self._record_step(kind, full, token=token, actor=actor)
        if had_canary:
            self.records.append(
                RecordPromotion(
                    action="rollback",
                    from_version=from_version,
                    to_version=to_version,
                    actor=actor,
                    reason=manual.reason if manual and manual.reason else full,
                    metrics=self._metrics(reason),
                    key=self._key(kind, "promotion", token=token),
                )
            )
            self._note_rollback(
                reason=reason,
                message=full,
                actor=actor,
                from_version=from_version,
                to_version=to_version,
                automatic=not manual,
            )
        if manual:
            self._event("Normal", "Aborted", f"{full}; back to {to_version or 'no stable'}")
            self._end("Aborted", "Aborted", full)
        elif had_canary:
            self._event("Warning", reason, f"rolled back to {to_version or 'no stable'}: {full}")
            self._end("RolledBack", reason, full)
        else:
            self._event("Warning", reason, full)
            self._end("Failed", reason, full)

    def _roll_back_completed(self, request: ActionRequest) -> None:
        st = self.st
        previous, current = st.previous_stable, st.stable
        assert previous is not None
        from_version = current.version if current else None
        message = (
            f"{request.actor} rolled {self._where()} back from {from_version} to "
            f"{previous.version}" + (f": {request.reason}" if request.reason else "")
        )
        self._publish(previous, None, 0.0, kind="rollback", reason=message, token=request.token)
        st.previous_stable = None
        self.records.append(
            RecordPromotion(
                action="rollback",
                from_version=from_version,
                to_version=previous.version,
                actor=request.actor,
                reason=request.reason or message,
                metrics=self._metrics("RollbackRequested"),
                key=self._key("rollback", "promotion", token=request.token),
            )
        )
        self._record_step("rollback", message, token=request.token, actor=request.actor)
        self._note_rollback(
            reason="RollbackRequested",
            message=message,
            actor=request.actor,
            from_version=from_version,
            to_version=previous.version,
            automatic=False,
        )
        self._event("Normal", "RolledBack", message)
        self._end("RolledBack", "RollbackRequested", message)

    def _note_rollback(
        self,
        *,
        reason: str,
        message: str,
        actor: str,
        from_version: str | None,
        to_version: str | None,
        automatic: bool,
    ) -> None:
        # Detection and publication fall in the same decision: the breach is acted on in
        # the tick that first observes it, so the time to roll back is the decision's own.
        self.st.last_rollback = {
            "attempt": self._attempt.id,
            "automatic": automatic,
            "actor": actor,
            "reason": reason,
            "message": message,
            "fromVersion": from_version,
            "toVersion": to_version,
            "detectedAt": format_time(self.now),
            "publishedAt": format_time(self.now),
            "timeToRollbackSeconds": 0.0,
            "health": render.health(self.obs.health),
        }

    # ---------------------------------------------------------- people's requests

    def _new_request(self) -> ActionRequest | None:
        request = self.obs.action
        if request is None or request.token in self.st.handled_tokens():
            return None
        return request

    def _person_while_running(self, request: ActionRequest) -> bool:
        """Handle promote, resume, promote-full, retry during a running attempt.

        True when the request moved the rollout (the tick is then over).
        """
        steps, index = self.spec.steps, self.st.step_index
        if request.action == "retry":
            self._refuse(
                request,
                f"attempt {self._attempt.id} is still running; abort it first, or change the spec",
            )
            return False
        if request.action == "promote-full":
            if index >= len(steps):
                self._accept(request, "already at 100%: completes once coverage holds")
                return False
            self._accept(request, "skipping the remaining steps: 100%, then complete on coverage")
            self._record_step(
                "promote-full", self._describe_request(request), request.token, request.actor
            )
            self._start_step(len(steps))
            return True
        step = self._current_step()
        if step is None:
            self._refuse(
                request,
                "the rollout is finishing and completes once coverage holds "
                f"({self._coverage_text()}); promoting would not make a device switch. Check "
                "stale devices, or lower spec.coverage.minPercent",
            )
            return False
        if step.kind == "setWeight":
            self._refuse(
                request,
                f"step {index + 1}/{len(steps)} ({step.describe()}) waits for the devices to "
                f"switch ({self._coverage_text()}); promoting would not make a device switch. "
                "Check stale devices, or lower spec.coverage.minPercent",
            )
            return False
        self._accept(request, f"step {index + 1}/{len(steps)} ({step.describe()}) finished early")
        self._record_step(
            request.action, self._describe_request(request), request.token, request.actor
        )
        self._start_step(index + 1)
        return True

    def _describe_request(self, request: ActionRequest) -> str:
        text = f"{request.action} by {request.actor} at {self._step_text()}"
        return f"{text}: {request.reason}" if request.reason else text

    def _accept(self, request: ActionRequest, outcome: str) -> None:
        self._handled(request, accepted=True, outcome=outcome)

    def _refuse(self, request: ActionRequest, why: str) -> None:
        self._handled(request, accepted=False, outcome=f"refused: {why}")
        self._event("Warning", "ActionRefused", f"{request.action} ({request.token}): {why}")

    def _refuse_if(self, request: ActionRequest | None, why: str) -> None:
        if request is not None:
            self._refuse(request, why)

    def _handled(self, request: ActionRequest, *, accepted: bool, outcome: str) -> None:
        entry = {
            "token": request.token,
            "action": request.action,
            "actor": request.actor,
            "reason": request.reason,
            "at": format_time(self.now),
            "accepted": accepted,
            "outcome": outcome,
        }
        self.st.processed_actions = [*self.st.processed_actions, entry][-MAX_PROCESSED_ACTIONS:]

    # -------------------------------------------------------------- observations

    def _snapshot_problem(self) -> tuple[str, str] | None:
        return render.snapshot_problem(self.spec.snapshot_name, self.obs)

    def _snapshot_content_changed(self) -> bool:
        snap, attempt = self.obs.snapshot, self.st.attempt
        if snap is None or not snap.ready or attempt is None or attempt.snapshot is None:
            return False
        return not attempt.snapshot.same_content(snap)

    def _canary_published(self) -> bool:
        return self.st.canary is not None or self.st.weight > 0

    def _coverage_fresh(self) -> bool:
        """False when the figures were computed for another weight than the published one."""
        weight = self.obs.coverage.weight
        return weight is None or abs(weight - self.st.weight) <= 1e-9

    def _coverage_percent(self) -> float:
        coverage = self.obs.coverage
        if not self._coverage_fresh() or not coverage.targeted:
            return 0.0
        return 100.0 * coverage.on_intended / coverage.targeted

    def _converged(self) -> bool:
        coverage, wanted = self.obs.coverage, self.spec.coverage
        if not self._coverage_fresh():
            return False
        if coverage.targeted < wanted.min_devices:
            return False
        if coverage.targeted == 0:
            return True
        return coverage.on_intended * 100.0 >= wanted.min_percent * coverage.targeted

    def _health_breach(self) -> _Breach | None:
        if not self._canary_published():
            return None
        step = self._current_step()
        limits = step.limits if step is not None and step.kind == "analysis" else self.spec.limits
        health = self.obs.health
        where = self._step_text()
        enough = health.evaluations >= max(1, limits.min_evaluations or 0)
        if limits.max_error_rate is not None and enough:
            rate = health.errors / health.evaluations
            if rate > limits.max_error_rate:
                return _Breach(
                    "ErrorRateExceeded",
                    f"error rate {rate:.2%} ({health.errors} of {health.evaluations} evaluations "
                    f"on canary devices) is above the limit {limits.max_error_rate:.2%} at {where}",
                )
        if (
            limits.max_p99_latency_ms is not None
            and health.p99_ms is not None
            and health.p99_ms > limits.max_p99_latency_ms
        ):
            return _Breach(
                "LatencyExceeded",
                f"p99 evaluation latency {health.p99_ms:g} ms on canary devices is above the limit "
                f"{limits.max_p99_latency_ms:g} ms at {where}",
            )
        if (
            limits.max_activation_failures is not None
            and health.activation_failures > limits.max_activation_failures
        ):
            return _Breach(
                "ActivationFailuresExceeded",
                f"{health.activation_failures} canary devices failed to activate the snapshot "
                f"(limit {limits.max_activation_failures}) at {where}",
            )
        return None

    def _deadline(self) -> datetime | None:
        allowed = self.spec.progress_deadline_seconds
        started = self.st.step_started_at
        if started is None:
            return self._attempt.started_at + timedelta(seconds=allowed)
        planned = self._planned_seconds()
        if planned is None:
            return None
        return started + timedelta(seconds=planned + allowed)

    def _planned_seconds(self) -> int | None:
        """How long the current step means to take on its own; None for an indefinite pause."""
        step = self._current_step()
        if step is None or step.kind == "setWeight":
            return 0
        if step.kind == "pause":
            return step.pause_seconds
        return step.limits.duration_seconds or 0

    def _check_deadline(self) -> bool:
        deadline = self._deadline()
        if deadline is None or self.now < deadline:
            return False
        allowed = self.spec.progress_deadline_seconds
        problem = self._snapshot_problem()
        if self.st.step_started_at is None and problem is not None:
            why = f"{problem[1]}, still after {allowed}s"
        else:
            planned = self._planned_seconds() or 0
            budget = f"{planned}s + {allowed}s" if planned else f"{allowed}s"
            why = f"not done within {budget}: {self._coverage_text()}"
            if problem is not None:
                why = f"{why}; {problem[1]}"
        self._roll_back("ProgressDeadlineExceeded", why)
        return True

    # ------------------------------------------------------------------ effects

    def _publish(
        self,
        stable: SnapshotRef | None,
        canary: SnapshotRef | None,
        weight: float,
        *,
        kind: str,
        reason: str,
        token: str | None = None,
    ) -> None:
        self.st.stable, self.st.canary, self.st.weight = stable, canary, weight
        self.intent = _Intent(kind, self.st.step_index, reason, token)

    def _record_step(
        self, kind: str, detail: str, token: str | None = None, actor: str = OPERATOR_ACTOR
    ) -> None:
        attempt = self._attempt
        self.records.append(
            RecordStep(
                attempt=attempt.id,
                step_index=self.st.step_index,
                kind=kind,
                percent=self.st.weight,
                version=attempt.snapshot.version if attempt.snapshot else "",
                detail=detail,
                key=self._key(kind, "step", token=token),
                actor=actor,
            )
        )

    def _event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(EmitEvent(type=type_, reason=reason, message=message))

    def _key(
        self,
        kind: str,
        purpose: str,
        token: str | None = None,
        attempt: int | None = None,
        step_index: int | None = None,
    ) -> str:
        return idempotency_key(
            self.obs.uid,
            attempt if attempt is not None else self._attempt.id,
            step_index if step_index is not None else self.st.step_index,
            kind,
            purpose=purpose,
            token=token,
        )

    def _metrics(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "step": self._step_text(),
            "health": render.health(self.obs.health),
            "coverage": render.coverage(self.obs.coverage),
        }

    # ------------------------------------------------------------------- texts

    def _where(self) -> str:
        return f"{self.spec.env}/{self.spec.target}/{self.spec.region}"

    def _step_text(self) -> str:
        steps, index = self.spec.steps, self.st.step_index
        if index >= len(steps):
            return "finishing (100%)"
        return f"step {index + 1}/{len(steps)} ({steps[index].describe()})"

    def _coverage_text(self) -> str:
        return render.coverage_text(self.obs.coverage, self.spec.coverage)

    # ----------------------------------------------------------------- decision

    def decide(self, old_status: Mapping[str, Any]) -> Decision:
        actions: list[Action] = []
        now_state = (self.st.stable, self.st.canary, self.st.weight)
        if self.intent is not None and now_state != self.published_before:
            intent = self.intent
            key = self._key(intent.kind, "desired", intent.token, step_index=intent.step_index)
            actions.append(
                SetDesiredState(
                    stable=self.st.stable,
                    canary=self.st.canary,
                    canary_percent=self.st.weight,
                    reason=intent.reason,
                    key=key,
                )
            )
            self.st.last_publish = {
                "key": key,
                "reason": intent.reason,
                "at": format_time(self.now),
                "stableVersion": self.st.stable.version if self.st.stable else None,
                "canaryVersion": self.st.canary.version if self.st.canary else None,
                "weight": self.st.weight,
            }
        actions.extend(self.records)
        actions.extend(self.events)
        status = render.status(self.st, self.spec, self.obs, self.now, old_status)
        return Decision(status=status, actions=tuple(actions), requeue_after=self._requeue())

    def _requeue(self) -> float | None:
        attempt = self.st.attempt
        if attempt is None or not attempt.running or self.obs.superseded_by is not None:
            return None
        due: list[datetime] = []
        deadline = self._deadline()
        if deadline is not None:
            due.append(deadline)
        started, planned = self.st.step_started_at, self._planned_seconds()
        if started is not None and planned:
            due.append(started + timedelta(seconds=planned))
        future = [(moment - self.now).total_seconds() for moment in due if moment > self.now]
        return min(future) if future else None
