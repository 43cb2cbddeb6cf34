"""Judgements of the observations against the spec and the state. Pure, and changes nothing.

Is the snapshot usable, are the coverage figures fresh and converged, did the
canary breach a health limit, is the current step done, when is it overdue,
and when to look again. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pkg_operator.rollout import render
from pkg_operator.rollout.model import Observations
from pkg_operator.rollout.spec import Limits, RolloutSpec, SpecError, Step, parse_spec
from pkg_operator.rollout.state import State, load_state

__all__ = [
    "HEALTH_REASONS",
    "Breach",
    "canary_published",
    "checks_needed",
    "converged",
    "coverage_percent",
    "coverage_text",
    "current_step",
    "deadline",
    "health_breach",
    "overdue",
    "prepared",
    "requeue_after",
    "running_deadline",
    "shadow_breach",
    "snapshot_content_changed",
    "snapshot_problem",
    "step_done",
    "step_text",
    "where",
]


#: Rollback reasons that judge the snapshot itself (not the fleet's progress): a snapshot
#: rolled back for one of them, or aborted by a person, is never started again by itself.
HEALTH_REASONS = frozenset(
    {
        "ErrorRateExceeded",
        "LatencyExceeded",
        "ActivationFailuresExceeded",
        "ShadowDiffExceeded",
        "Aborted",
    }
)


@dataclass(frozen=True)
class Breach:
    reason: str
    message: str


# ------------------------------------------------------------------------- texts


def where(spec: RolloutSpec) -> str:
    return f"{spec.env}/{spec.target}/{spec.region}"


def step_text(spec: RolloutSpec, st: State) -> str:
    steps, index = spec.steps, st.step_index
    if index >= len(steps):
        return "finishing (100%)"
    return f"step {index + 1}/{len(steps)} ({steps[index].describe()})"


def coverage_text(spec: RolloutSpec, obs: Observations) -> str:
    return render.coverage_text(obs.coverage, spec.coverage)


# ---------------------------------------------------------------------- snapshot


def snapshot_problem(spec: RolloutSpec, obs: Observations) -> tuple[str, str] | None:
    return render.snapshot_problem(spec.snapshot_name, obs)


def snapshot_content_changed(st: State, obs: Observations) -> bool:
    snap, attempt = obs.snapshot, st.attempt
    if snap is None or not snap.ready or attempt is None or attempt.snapshot is None:
        return False
    return not attempt.snapshot.same_content(snap)


def canary_published(st: State) -> bool:
    return st.canary is not None or st.weight > 0


# ---------------------------------------------------------------------- coverage


def coverage_fresh(st: State, obs: Observations) -> bool:
    """False when the figures were computed for another weight than the published one."""
    weight = obs.coverage.weight
    return weight is None or abs(weight - st.weight) <= 1e-9


def coverage_percent(st: State, obs: Observations) -> float:
    coverage = obs.coverage
    if not coverage_fresh(st, obs) or not coverage.targeted:
        return 0.0
    return 100.0 * coverage.on_intended / coverage.targeted


def converged(spec: RolloutSpec, st: State, obs: Observations) -> bool:
    coverage, wanted = obs.coverage, spec.coverage
    if not coverage_fresh(st, obs):
        return False
    if coverage.targeted < wanted.min_devices:
        return False
    if coverage.targeted == 0:
        return True
    return coverage.on_intended * 100.0 >= wanted.min_percent * coverage.targeted


# ------------------------------------------------------------------------ health


def _limits(spec: RolloutSpec, st: State) -> Limits:
    step = current_step(spec, st)
    return step.limits if step is not None and step.kind == "analysis" else spec.limits


def checks_needed(spec: RolloutSpec, st: State) -> int:
    """Bad health checks in a row before a breach rolls back (consecutiveFailures)."""
    return max(1, _limits(spec, st).consecutive_failures or 1)


def health_breach(spec: RolloutSpec, st: State, obs: Observations) -> Breach | None:
    if not canary_published(st):
        return None
    limits = _limits(spec, st)
    health = obs.health
    at = step_text(spec, st)
    enough = health.evaluations >= max(1, limits.min_evaluations or 0)
    if limits.max_error_rate is not None and enough:
        rate = health.errors / health.evaluations
        if rate > limits.max_error_rate:
            return Breach(
                "ErrorRateExceeded",
                f"error rate {rate:.2%} ({health.errors} of {health.evaluations} evaluations "
                f"on canary devices) is above the limit {limits.max_error_rate:.2%} at {at}",
            )
    if (
        limits.max_p99_latency_ms is not None
        and health.p99_ms is not None
        and health.p99_ms > limits.max_p99_latency_ms
    ):
        return Breach(
            "LatencyExceeded",
            f"p99 evaluation latency {health.p99_ms:g} ms on canary devices is above the limit "
            f"{limits.max_p99_latency_ms:g} ms at {at}",
        )
    if (
        limits.max_activation_failures is not None
        and health.activation_failures > limits.max_activation_failures
    ):
        return Breach(
            "ActivationFailuresExceeded",
            f"{health.activation_failures} canary devices failed to activate the snapshot "
            f"(limit {limits.max_activation_failures}) at {at}",
        )
    return None


def shadow_breach(spec: RolloutSpec, st: State, obs: Observations) -> Breach | None:
    """The shadow step's candidate decides otherwise too often (once minSamples are in)."""
    step = current_step(spec, st)
    if step is None or step.shadow is None or st.shadow is None:
        return None
    wanted, health = step.shadow, obs.health
    samples, diffs = health.shadow_samples, health.shadow_diffs
    if samples < max(1, wanted.min_samples):
        return None
    rate = diffs / samples
    if rate <= wanted.max_diff_rate:
        return None
    return Breach(
        "ShadowDiffExceeded",
        f"the candidate {st.shadow.snapshot.version} decided differently from the active "
        f"snapshot on {diffs} of {samples} sampled requests ({rate:.2%}), above maxDiffRate "
        f"{wanted.max_diff_rate:.2%} at {step_text(spec, st)}; examples: pkg diff "
        f"--candidate {st.shadow.snapshot.version}",
    )


# ------------------------------------------------------------------------- steps


def current_step(spec: RolloutSpec, st: State) -> Step | None:
    index = st.step_index
    return spec.steps[index] if index < len(spec.steps) else None


def prepared(obs: Observations) -> bool:
    """Every live device that will switch at the flip reports the snapshot prepared.

    Figures computed for another weight than the published one (``coverage_fresh``)
    are not checked here: phase one publishes no new weight.
    """
    covered = obs.coverage
    return covered.prepared >= covered.prepare_expected


def step_done(spec: RolloutSpec, st: State, obs: Observations, now: datetime) -> bool:
    """Whether the current step (or finishing) has done what it waits for.

    A step is judged only after the tick that started it.
    """
    started = st.step_started_at
    if started is None or now <= started or st.prepare is not None:
        return False  # a two-phase step is not done before its flip
    step = current_step(spec, st)
    if step is None:
        return converged(spec, st, obs)
    elapsed = (now - started).total_seconds()
    if step.kind == "setWeight":
        return converged(spec, st, obs)
    if step.kind == "pause":
        return step.pause_seconds is not None and elapsed >= step.pause_seconds
    if step.shadow is not None:
        return (
            elapsed >= step.shadow.duration_seconds
            and obs.health.shadow_samples >= step.shadow.min_samples
        )
    limits = step.limits
    health = obs.health
    return (
        elapsed >= (limits.duration_seconds or 0)
        and health.evaluations >= (limits.min_evaluations or 0)
        and (
            limits.min_coverage_percent is None
            or coverage_percent(st, obs) >= limits.min_coverage_percent
        )
    )


# --------------------------------------------------------------------- deadlines


def planned_seconds(spec: RolloutSpec, st: State) -> int | None:
    """How long the current step means to take on its own; None for an indefinite pause."""
    step = current_step(spec, st)
    if step is None or step.kind == "setWeight":
        return 0
    if step.kind == "pause":
        return step.pause_seconds
    if step.shadow is not None:
        return step.shadow.duration_seconds
    return step.limits.duration_seconds or 0


def deadline(spec: RolloutSpec, st: State) -> datetime | None:
    allowed = spec.progress_deadline_seconds
    started = st.step_started_at
    if started is None:
        attempt = st.attempt
        assert attempt is not None, "a deadline belongs to an attempt"
        return attempt.started_at + timedelta(seconds=allowed)
    planned = planned_seconds(spec, st)
    if planned is None:
        return None
    return started + timedelta(seconds=planned + allowed)


def running_deadline(spec: Mapping[str, Any], status: Mapping[str, Any]) -> datetime | None:
    """When the running attempt's current step is due, read from a written status.

    None when no attempt runs, the step is an indefinite pause, or the spec is
    invalid (then nothing runs). For the metrics, which report it as a gauge.
    """
    try:
        rollout = parse_spec(spec)
    except SpecError:
        return None
    state = load_state(status)
    if state.attempt is None or not state.attempt.running:
        return None
    return deadline(rollout, state)


def overdue(spec: RolloutSpec, st: State, obs: Observations, now: datetime) -> str | None:
    """Why the attempt is past its deadline (with the figures), or None while it is not."""
    due = deadline(spec, st)
    if due is None or now < due:
        return None
    allowed = spec.progress_deadline_seconds
    problem = snapshot_problem(spec, obs)
    if st.step_started_at is None and problem is not None:
        return f"{problem[1]}, still after {allowed}s"
    planned = planned_seconds(spec, st) or 0
    budget = f"{planned}s + {allowed}s" if planned else f"{allowed}s"
    why = f"not done within {budget}: {coverage_text(spec, obs)}"
    if st.prepare is not None:
        covered = obs.coverage
        why = (
            f"not flipped within {budget}: {covered.prepared}/{covered.prepare_expected} "
            f"devices prepared {st.prepare.snapshot.version} (a device that cannot prepare "
            "holds the flip; status.health.activationErrors names why)"
        )
    if problem is not None:
        why = f"{why}; {problem[1]}"
    return why


def requeue_after(spec: RolloutSpec, st: State, obs: Observations, now: datetime) -> float | None:
    """Seconds until something is due (a pause ends, the deadline passes), else None."""
    attempt = st.attempt
    if attempt is None or not attempt.running or obs.superseded_by is not None:
        return None
    due: list[datetime] = []
    step_deadline = deadline(spec, st)
    if step_deadline is not None:
        due.append(step_deadline)
    started, planned = st.step_started_at, planned_seconds(spec, st)
    if started is not None and planned:
        due.append(started + timedelta(seconds=planned))
    future = [(moment - now).total_seconds() for moment in due if moment > now]
    return min(future) if future else None
