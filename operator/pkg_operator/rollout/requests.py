"""A person's request (the action annotation): what it means now, and its bookkeeping. Pure.

Each token is acted on once: accepted or refused, it is recorded in
``status.processedActions``, and a refusal also says why in an event. See
docs/rollout-state-machine.md.
"""

from __future__ import annotations

from pkg_operator.actions import ActionRequest
from pkg_operator.conditions import format_time
from pkg_operator.rollout import judge, rollback, steps
from pkg_operator.rollout.model import Observations
from pkg_operator.rollout.state import MAX_PROCESSED_ACTIONS, State
from pkg_operator.rollout.tick import Tick

__all__ = [
    "accept",
    "after_end",
    "handled",
    "pending",
    "refuse",
    "refuse_if",
    "while_running",
]


def pending(st: State, obs: Observations) -> ActionRequest | None:
    """The request in the annotation, unless its token was already handled."""
    request = obs.action
    if request is None or request.token in st.handled_tokens():
        return None
    return request


def while_running(t: Tick, request: ActionRequest) -> bool:
    """Handle promote, resume, promote-full, retry during a running attempt.

    True when the request moved the rollout (the tick is then over).
    """
    spec_steps, index = t.spec.steps, t.st.step_index
    if request.action == "retry":
        refuse(
            t,
            request,
            f"attempt {t.attempt.id} is still running; abort it first, or change the spec",
        )
        return False
    if request.action == "promote-full":
        if index >= len(spec_steps):
            accept(t, request, "already at 100%: completes once coverage holds")
            return False
        accept(t, request, "skipping the remaining steps: 100%, then complete on coverage")
        t.out.record_step("promote-full", _describe(t, request), request.token, request.actor)
        steps.start_step(t, len(spec_steps))
        return True
    step = judge.current_step(t.spec, t.st)
    if step is None:
        refuse(
            t,
            request,
            "the rollout is finishing and completes once coverage holds "
            f"({t.coverage_text()}); promoting would not make a device switch. Check "
            "stale devices, or lower spec.coverage.minPercent",
        )
        return False
    if step.kind == "setWeight":
        refuse(
            t,
            request,
            f"step {index + 1}/{len(spec_steps)} ({step.describe()}) waits for the devices to "
            f"switch ({t.coverage_text()}); promoting would not make a device switch. "
            "Check stale devices, or lower spec.coverage.minPercent",
        )
        return False
    accept(t, request, f"step {index + 1}/{len(spec_steps)} ({step.describe()}) finished early")
    t.out.record_step(request.action, _describe(t, request), request.token, request.actor)
    steps.start_step(t, index + 1)
    return True


def after_end(t: Tick, request: ActionRequest) -> None:
    """Handle a request once the attempt has ended: retry, or rollback after success."""
    attempt = t.attempt
    if request.action == "retry":
        if attempt.outcome == "Succeeded":
            refuse(
                t,
                request,
                f"attempt {attempt.id} succeeded: there is nothing to retry; to roll out again "
                "change the spec (for example spec.snapshotRef)",
            )
            return
        accept(t, request, f"attempt {attempt.id + 1} starts from the first step")
        steps.new_attempt(t, "Retried", "retried")
        t.out.record_step("retry", _describe(t, request), token=request.token, actor=request.actor)
        steps.try_start(t, by_person=True)
        return
    if request.action == "rollback":
        if attempt.outcome != "Succeeded":
            refuse(
                t,
                request,
                f"attempt {attempt.id} ended {attempt.outcome}: the stable snapshot already "
                "runs; rollback undoes a completed rollout",
            )
            return
        if t.st.previous_stable is None:
            refuse(
                t,
                request,
                "there is no earlier stable snapshot to roll back to (the rollout started "
                "from none); point spec.snapshotRef at the snapshot you want instead",
            )
            return
        accept(t, request, f"rolled back to {t.st.previous_stable.version}")
        rollback.roll_back_completed(t, request)
        return
    refuse(
        t,
        request,
        f"attempt {attempt.id} already ended {attempt.outcome}: {request.action} acts on a "
        "running rollout; use retry to start again",
    )


def _describe(t: Tick, request: ActionRequest) -> str:
    text = f"{request.action} by {request.actor} at {t.step_text()}"
    return f"{text}: {request.reason}" if request.reason else text


def accept(t: Tick, request: ActionRequest, outcome: str) -> None:
    handled(t, request, accepted=True, outcome=outcome)


def refuse(t: Tick, request: ActionRequest, why: str) -> None:
    handled(t, request, accepted=False, outcome=f"refused: {why}")
    t.out.event("Warning", "ActionRefused", f"{request.action} ({request.token}): {why}")


def refuse_if(t: Tick, request: ActionRequest | None, why: str) -> None:
    if request is not None:
        refuse(t, request, why)


def handled(t: Tick, request: ActionRequest, *, accepted: bool, outcome: str) -> None:
    """Record the request's token in ``status.processedActions`` (the newest are kept)."""
    entry = {
        "token": request.token,
        "action": request.action,
        "actor": request.actor,
        "reason": request.reason,
        "at": format_time(t.now),
        "accepted": accepted,
        "outcome": outcome,
    }
    t.st.processed_actions = [*t.st.processed_actions, entry][-MAX_PROCESSED_ACTIONS:]
