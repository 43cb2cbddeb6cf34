"""Rolling back: one publication of the stable snapshot, no step replayed. Pure.

An automatic rollback (a breached limit, a deadline, a lost snapshot) ends the
attempt RolledBack, or Failed when no canary had been published; a person's
abort ends it Aborted; a rollback requested after success returns to the
previous stable snapshot. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from pkg_operator.actions import ActionRequest
from pkg_operator.conditions import format_time
from pkg_operator.rollout import judge, render, steps
from pkg_operator.rollout.intents import OPERATOR_ACTOR
from pkg_operator.rollout.model import RecordPromotion
from pkg_operator.rollout.tick import Tick

__all__ = ["roll_back", "roll_back_completed"]


def roll_back(t: Tick, reason: str, message: str, manual: ActionRequest | None = None) -> None:
    """Back to stable at once: one publication, no step replayed."""
    st, attempt, out = t.st, t.attempt, t.out
    had_canary = judge.canary_published(st)
    from_version = (
        st.canary.version if st.canary else attempt.snapshot.version if attempt.snapshot else None
    )
    to_version = st.stable.version if st.stable else None
    kind = manual.action if manual else "rollback"
    token = manual.token if manual else None
    actor = manual.actor if manual else OPERATOR_ACTOR
    full = f"{message} ({t.step_text()})"
    out.publish(st.stable, None, 0.0, kind=kind, reason=f"{reason}: {message}", token=token)
    out.record_step(kind, full, token=token, actor=actor)
    if had_canary:
        out.record(
            RecordPromotion(
                action="rollback",
                from_version=from_version,
                to_version=to_version,
                actor=actor,
                reason=manual.reason if manual and manual.reason else full,
                metrics=t.metrics(reason),
                key=out.key(kind, "promotion", token=token),
            )
        )
        _note_rollback(
            t,
            reason=reason,
            message=full,
            actor=actor,
            from_version=from_version,
            to_version=to_version,
            automatic=not manual,
        )
    steps.block_snapshot(t, reason)
    if manual:
        out.event("Normal", "Aborted", f"{full}; back to {to_version or 'no stable'}")
        t.end("Aborted", "Aborted", full)
    elif had_canary:
        out.event("Warning", reason, f"rolled back to {to_version or 'no stable'}: {full}")
        t.end("RolledBack", reason, full)
    else:
        out.event("Warning", reason, full)
        t.end("Failed", reason, full)


def roll_back_completed(t: Tick, request: ActionRequest) -> None:
    """A person's rollback after success: the previous stable snapshot, published at once."""
    st, out = t.st, t.out
    previous, current = st.previous_stable, st.stable
    assert previous is not None
    from_version = current.version if current else None
    message = (
        f"{request.actor} rolled {judge.where(t.spec)} back from {from_version} to "
        f"{previous.version}" + (f": {request.reason}" if request.reason else "")
    )
    out.publish(previous, None, 0.0, kind="rollback", reason=message, token=request.token)
    st.previous_stable = None
    out.record(
        RecordPromotion(
            action="rollback",
            from_version=from_version,
            to_version=previous.version,
            actor=request.actor,
            reason=request.reason or message,
            metrics=t.metrics("RollbackRequested"),
            key=out.key("rollback", "promotion", token=request.token),
        )
    )
    out.record_step("rollback", message, token=request.token, actor=request.actor)
    _note_rollback(
        t,
        reason="RollbackRequested",
        message=message,
        actor=request.actor,
        from_version=from_version,
        to_version=previous.version,
        automatic=False,
    )
    out.event("Normal", "RolledBack", message)
    t.end("RolledBack", "RollbackRequested", message)


def _note_rollback(
    t: Tick,
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
    t.st.last_rollback = {
        "attempt": t.attempt.id,
        "automatic": automatic,
        "actor": actor,
        "reason": reason,
        "message": message,
        "fromVersion": from_version,
        "toVersion": to_version,
        "detectedAt": format_time(t.now),
        "publishedAt": format_time(t.now),
        "timeToRollbackSeconds": 0.0,
        "health": render.health(t.obs.health),
    }
