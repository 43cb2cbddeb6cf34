"""What a PolicyDeployment's status says: conditions, summary, message and figures.

The rollout machine (``machine.py``) decides what happens; this module derives
from the resulting state how it reads for people and for ``kubectl wait``:

- Progressing: True while the rollout moves by itself; Unknown while it waits
  for a person (indefinite pause); False once the attempt ended or while it is
  blocked on its snapshot (reason SnapshotNotReady or SnapshotNotFound).
- Available: True only when the attempt of the CURRENT generation succeeded:
  the spec's snapshot is what the devices run. Any other state says False.
- Degraded: True when the operator itself rolled back or gave up (the reason
  names the breached limit or the deadline); a person's abort is not Degraded.
- Paused: True while an indefinite pause waits for promote or resume.
- ActivationsHealthy: False while live devices of the target refuse to activate
  what they were told to run (a snapshot that fails its verification), with how
  many and why; True when none does; Unknown with no live device. Turning False
  posts a Warning event ``ActivationsRefused`` (:func:`activation_events`).

It also renders the complete status dict, with ``seq`` bumped when anything
in it changed. Pure. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pkg_operator.conditions import ConditionStatus, set_condition
from pkg_operator.health import HEALTH_TYPES, rollout_health
from pkg_operator.rollout.model import (
    Action,
    CoverageObs,
    Decision,
    EmitEvent,
    HealthObs,
    Observations,
)
from pkg_operator.rollout.spec import Coverage, RolloutSpec
from pkg_operator.rollout.state import (
    State,
    prepare_to_dict,
    ref_to_dict,
    shadow_to_dict,
    time_or_none,
)

__all__ = [
    "ACTIVATIONS",
    "CONDITION_TYPES",
    "activation_events",
    "activations",
    "coverage",
    "coverage_text",
    "health",
    "invalid",
    "measured_at",
    "snapshot_problem",
    "status",
]

CONDITION_TYPES = ("Progressing", "Available", "Degraded", "Paused")

#: The condition that says whether live devices refuse their activations.
ACTIVATIONS = "ActivationsHealthy"

_Cond = tuple[ConditionStatus, str, str]


def snapshot_problem(snapshot_name: str, obs: Observations) -> tuple[str, str] | None:
    """(reason, message) when the spec's snapshot cannot be published, else None."""
    snap = obs.snapshot
    if snap is None:
        return (
            "SnapshotNotFound",
            f"PolicySnapshot {snapshot_name} does not exist; create it, or point "
            "spec.snapshotRef at an existing one",
        )
    if not snap.ready:
        detail = snap.message or "it has not been stored and validated yet"
        why = f"{snap.reason}: {detail}" if snap.reason else detail
        return (
            "SnapshotNotReady",
            f"PolicySnapshot {snap.name} ({snap.version}) is not Ready ({why})",
        )
    return None


def coverage(obs: CoverageObs, *, weight: float | None = None) -> dict[str, Any]:
    """The coverage figures for the status; ``weight``: the percentage now published.

    Figures computed for another percentage (the tick that publishes a step observed
    the fleet at the previous one) say nothing of who runs what it should now: what
    depends on the percentage is left out (deleted from the status) until measured,
    rather than claimed (chaos scenario partition/sidecar-redis-only/all-needed).
    """
    percent = 100.0 * obs.on_intended / obs.targeted if obs.targeted else 0.0
    figures: dict[str, Any] = {
        "targeted": obs.targeted,
        "onCanary": obs.on_canary,
        "onStable": obs.on_stable,
        "stale": obs.stale,
        "onIntended": obs.on_intended,
        "expectedCanary": obs.expected_canary,
        "policyStale": obs.policy_stale,
        "percent": round(percent, 2),
        "display": f"{obs.on_intended}/{obs.targeted}",
    }
    if not measured_at(obs, weight):
        figures.update(
            onIntended=None, expectedCanary=None, percent=None, display=f"?/{obs.targeted}"
        )
    return figures


def measured_at(obs: CoverageObs, weight: float | None) -> bool:
    """True unless ``obs`` was computed for another percentage than ``weight``."""
    return weight is None or obs.weight is None or abs(obs.weight - weight) <= 1e-9


def coverage_text(obs: CoverageObs, wanted: Coverage) -> str:
    percent = 100.0 * obs.on_intended / obs.targeted if obs.targeted else 0.0
    return (
        f"{obs.on_intended}/{obs.targeted} live devices run their intended version "
        f"({percent:.1f}%; need {wanted.min_percent:g}% of at least {wanted.min_devices}), "
        f"{obs.on_canary} on the canary (expected {obs.expected_canary}), {obs.stale} stale"
        + (
            f", {obs.policy_stale} past their maximum staleness (never counted as converged)"
            if obs.policy_stale
            else ""
        )
    )


#: How many devices' activation errors ``status.health`` lists, and how much of each.
MAX_ACTIVATION_ERRORS = 5
ERROR_CHARS = 500


def health(obs: HealthObs) -> dict[str, Any]:
    return {
        "evaluations": obs.evaluations,
        "errors": obs.errors,
        "errorRate": round(obs.errors / obs.evaluations, 6) if obs.evaluations else None,
        "p99Ms": obs.p99_ms,
        "activationFailures": obs.activation_failures,
        "windowSeconds": obs.window_seconds,
        # exact: every canary device reported cumulative counters, so the figures are
        # totals since the step began; else some come from devices' latest windows.
        "exact": obs.windowed_devices == 0,
        # Every live device's refusal, not only the canary's: a stable device that refuses
        # its snapshot (a checksum mismatch) matters as much. At most MAX_ACTIVATION_ERRORS.
        "activationErrors": [
            {"device": device, "error": error[:ERROR_CHARS]}
            for device, error in obs.activation_errors[:MAX_ACTIVATION_ERRORS]
        ],
        "devicesWithActivationErrors": len(obs.activation_errors),
        # The shadow step's figures (every targeted device, since the step began).
        "shadowSamples": obs.shadow_samples,
        "shadowDiffs": obs.shadow_diffs,
        "shadowDiffRate": round(obs.shadow_diffs / obs.shadow_samples, 6)
        if obs.shadow_samples
        else None,
    }


#: How many distinct refusal texts the ActivationsHealthy message names, and how long each.
_MAX_WHYS = 3
_WHY_CHARS = 200


def activations(health_obs: HealthObs, coverage_obs: CoverageObs) -> _Cond:
    """The ActivationsHealthy condition: how many live devices refuse to activate, and why."""
    refusing = health_obs.activation_errors
    if not refusing:
        if coverage_obs.targeted == 0:
            return ("Unknown", "NoLiveDevices", "no live device reports its activations")
        return (
            "True",
            "NoRefusals",
            f"none of {coverage_obs.targeted} live devices refuses an activation",
        )
    whys: dict[str, list[str]] = {}
    for device, error in refusing:
        whys.setdefault(error[:_WHY_CHARS], []).append(device)
    ranked = sorted(whys.items(), key=lambda item: (-len(item[1]), item[0]))
    shown = "; ".join(
        f"{len(devices)} x {why} (e.g. {devices[0]})" for why, devices in ranked[:_MAX_WHYS]
    )
    more = f"; and {len(ranked) - _MAX_WHYS} other reason(s)" if len(ranked) > _MAX_WHYS else ""
    total = max(coverage_obs.targeted, len(refusing))
    return (
        "False",
        "ActivationsRefused",
        f"{len(refusing)} of {total} live devices refuse to activate: {shown}{more}. "
        "They keep running what they ran; status.health.activationErrors lists them",
    )


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for item in status.get("conditions") or []:
        if item.get("type") == type_:
            found: Mapping[str, Any] = item
            return found
    return None


def activation_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[Action, ...]:
    """A Warning event when ActivationsHealthy turns False (once per transition)."""
    after = _condition(new, ACTIVATIONS)
    if after is None or after.get("status") != "False":
        return ()
    before = _condition(old, ACTIVATIONS)
    if before is not None and before.get("status") == "False":
        return ()
    return (EmitEvent("Warning", "ActivationsRefused", str(after.get("message") or "")),)


def _step_text(state: State, spec: RolloutSpec) -> str:
    steps, index = spec.steps, state.step_index
    if index >= len(steps):
        return "finishing (100%)"
    return f"step {index + 1}/{len(steps)} ({steps[index].describe()})"


def _view(state: State, spec: RolloutSpec, obs: Observations) -> tuple[str, str, dict[str, _Cond]]:
    """summary, message and the four conditions for the state at the end of a decision."""
    attempt = state.attempt
    assert attempt is not None
    not_paused: _Cond = ("False", "NotPaused", "")
    healthy: _Cond = ("False", "NoFailure", "")
    if attempt.running:
        version = attempt.snapshot.version if attempt.snapshot else spec.snapshot_name
        available: _Cond = (
            "False",
            "RolloutInProgress",
            f"attempt {attempt.id} (generation {attempt.generation}) is rolling out {version}",
        )
        problem = snapshot_problem(spec.snapshot_name, obs)
        if state.step_started_at is None or problem is not None:
            reason, message = problem or ("Starting", "the attempt is starting")
            return (
                "Waiting",
                message,
                {
                    "Progressing": ("False", reason, message),
                    "Available": available,
                    "Degraded": healthy,
                    "Paused": not_paused,
                },
            )
        where = _step_text(state, spec)
        index = state.step_index
        step = spec.steps[index] if index < len(spec.steps) else None
        if step is not None and step.kind == "pause" and step.pause_seconds is None:
            message = (
                f"{where} waits for a person: set the annotation pkg.seedcore.io/action to "
                '{"action": "promote", "token": "<unique>", "actor": "<you>"}'
            )
            return (
                "Paused",
                message,
                {
                    "Progressing": ("Unknown", "WaitingForPromotion", message),
                    "Available": available,
                    "Degraded": healthy,
                    "Paused": ("True", "WaitingForPromotion", message),
                },
            )
        if state.prepare is not None:
            covered = obs.coverage
            reason = "Preparing"
            message = (
                f"{where}: prepared {covered.prepared}/{covered.prepare_expected} devices for "
                f"{state.prepare.snapshot.version}; all switch together once every one has"
            )
        elif (step is None or step.kind == "setWeight") and not measured_at(
            obs.coverage, state.weight
        ):
            reason = "WaitingForCoverage"
            message = f"{where}: published; waiting for the devices to report on it"
        elif step is None or step.kind == "setWeight":
            reason = "WaitingForCoverage"
            message = f"{where}: {coverage_text(obs.coverage, spec.coverage)}"
        elif step.kind == "pause":
            reason, message = "Pausing", f"{where}"
        elif step.kind == "shadow":
            health = obs.health
            reason = "Shadowing"
            message = (
                f"{where}: {health.shadow_diffs} of {health.shadow_samples} sampled decisions "
                "differ"
            )
        else:
            reason = "Analyzing"
            message = f"{where}: {obs.health.evaluations} evaluations, {obs.health.errors} errors"
        return (
            "Progressing",
            message,
            {
                "Progressing": ("True", reason, message),
                "Available": available,
                "Degraded": healthy,
                "Paused": not_paused,
            },
        )
    outcome = attempt.outcome or "Unknown"
    reason = attempt.reason or outcome
    message = attempt.message or outcome
    degraded: _Cond = ("True", reason, message)
    if outcome == "Succeeded":
        current = attempt.generation == obs.generation
        return (
            outcome,
            message,
            {
                "Progressing": ("False", reason, message),
                "Available": ("True", reason, message)
                if current
                else ("False", "OutdatedGeneration", "the succeeded attempt was for an older spec"),
                "Degraded": healthy,
                "Paused": not_paused,
            },
        )
    automatic = outcome in ("RolledBack", "Failed") and reason != "RollbackRequested"
    short: dict[str, str] = {
        "RolledBack": "RolledBack",
        "Aborted": "Aborted",
        "Failed": "Failed",
        "Superseded": "Superseded",
    }
    word = short.get(outcome, "Ended")
    progressing_reason = reason if outcome == "Failed" else word
    return (
        outcome,
        message,
        {
            "Progressing": ("False", progressing_reason, message),
            "Available": ("False", word, message),
            "Degraded": degraded if automatic else healthy,
            "Paused": not_paused,
        },
    )


def _prune(value: Any) -> Any:
    """Drop None values, as a stored object (after a merge patch) has none."""
    if isinstance(value, Mapping):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _next_seq(old: Mapping[str, Any], body: Mapping[str, Any], seq: int) -> int:
    owned = [key for key in body if key != "seq"]
    before = _prune({key: old[key] for key in owned if key in old})
    after = _prune({key: body[key] for key in owned})
    return seq + 1 if before != after else seq


def status(
    state: State, spec: RolloutSpec, obs: Observations, now: datetime, old: Mapping[str, Any]
) -> dict[str, Any]:
    """The complete status after a decision (None values mean "delete" in a merge patch)."""
    summary, message, conds = _view(state, spec, obs)
    conds = {**conds, **rollout_health(summary, conds)}
    conditions = state.conditions
    for type_ in (*CONDITION_TYPES, *HEALTH_TYPES):
        cond_status, reason, text = conds[type_]
        conditions = set_condition(
            conditions, type_, cond_status, reason, text, obs.generation, now
        )
    cond_status, reason, text = activations(obs.health, obs.coverage)
    conditions = set_condition(
        conditions, ACTIVATIONS, cond_status, reason, text, obs.generation, now
    )
    attempt = state.attempt
    count = len(spec.steps)
    running_unstarted = attempt is not None and attempt.running and state.step_started_at is None
    shown = 0 if running_unstarted else min(state.step_index + 1, count)
    body: dict[str, Any] = {
        "observedGeneration": obs.generation,
        "seq": state.seq,
        "summary": summary,
        "message": message,
        "stable": ref_to_dict(state.stable),
        "canary": ref_to_dict(state.canary),
        "previousStable": ref_to_dict(state.previous_stable),
        "weight": state.weight,
        "currentStepIndex": state.step_index,
        "stepCount": count,
        "stepProgress": f"{shown}/{count}",
        "stepStartedAt": time_or_none(state.step_started_at),
        "coverage": coverage(obs.coverage, weight=state.weight),
        "health": health(obs.health),
        "attempt": attempt.to_dict() if attempt else None,
        "history": state.history,
        "lastRollback": state.last_rollback,
        "lastPublish": state.last_publish,
        "processedActions": state.processed_actions,
        "consecutiveBadChecks": state.bad_checks,
        "shadow": shadow_to_dict(state.shadow),
        "prepare": None
        if state.prepare is None
        else {
            **(prepare_to_dict(state.prepare) or {}),
            "prepared": f"{obs.coverage.prepared}/{obs.coverage.prepare_expected}",
        },
        "blockedSnapshots": state.blocked,
        "conditions": conditions,
    }
    body["seq"] = _next_seq(old, body, state.seq)
    return body


def invalid(
    old: Mapping[str, Any], state: State, obs: Observations, now: datetime, error: str
) -> Decision:
    """A spec the machine cannot read (the CRD refuses it first): say so, act on nothing."""
    message = f"the spec cannot be rolled out: {error}"
    wanted: tuple[tuple[str, _Cond], ...] = (
        ("Progressing", ("False", "InvalidSpec", message)),
        ("Available", ("False", "InvalidSpec", message)),
        ("Degraded", ("True", "InvalidSpec", message)),
        ("Paused", ("False", "NotPaused", "")),
        ("Ready", ("False", "InvalidSpec", message)),
        ("Reconciling", ("False", "InvalidSpec", "")),
        ("Stalled", ("True", "InvalidSpec", message)),
    )
    conditions = state.conditions
    for type_, (cond_status, reason, text) in wanted:
        conditions = set_condition(
            conditions, type_, cond_status, reason, text, obs.generation, now
        )
    body = dict(old)
    body.update(
        observedGeneration=obs.generation,
        summary="Invalid",
        message=message,
        conditions=conditions,
    )
    body["seq"] = _next_seq(old, body, state.seq)
    return Decision(status=body, actions=(), requeue_after=None)
