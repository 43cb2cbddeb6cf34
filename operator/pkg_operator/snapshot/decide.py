"""Pure decisions about one PolicySnapshot: its pending action, refusals, status records.

No I/O and no clock: the caller passes ``now``. :mod:`.reconcile` applies what these
functions decide.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pkg_operator.actions import SNAPSHOT_ACTIONS, ActionRequest, parse_action
from pkg_operator.api import ACTION_ANNOTATION
from pkg_operator.conditions import format_time
from pkg_operator.snapshot.status import Outcome

__all__ = [
    "Refusal",
    "action_key",
    "action_record",
    "auto_promotable",
    "pending_action",
    "promotion_message",
    "refusal",
]


@dataclass(frozen=True)
class Refusal:
    """Why a person's action is not carried out: the event's reason and message, and the
    outcome recorded in ``status.lastAction``."""

    reason: str
    message: str
    outcome: str


def pending_action(meta: Mapping[str, Any], status: Mapping[str, Any]) -> ActionRequest | None:
    """The person's action in the annotation, unless it was already carried out (same token).

    Raises ActionError when the annotation is malformed.
    """
    raw = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    if not raw:
        return None
    request = parse_action(raw, SNAPSHOT_ACTIONS)
    done = (status.get("lastAction") or {}).get("token")
    return None if request.token == done else request


def auto_promotable(outcome: Outcome) -> bool:
    """Ready and not active, and never active before (a superseded snapshot stays so)."""
    return (
        outcome.active_in is None
        and outcome.superseded_by is None
        and outcome.validation is not None
        and outcome.validation.success
    )


def refusal(outcome: Outcome, request: ActionRequest) -> Refusal | None:
    """Why ``request`` cannot be carried out on a snapshot in this state, or None."""
    if request.action not in ("promote", "rollback"):
        message = (
            f"a PolicySnapshot accepts the actions promote and rollback, not {request.action!r}"
        )
        return Refusal("InvalidAction", message, f"refused: {message}")
    if request.action == "promote":
        if outcome.validation is None or not outcome.validation.success:
            message = "refused: only a Ready snapshot (stored and validated) can be promoted"
            return Refusal("PromotionRefused", message, message)
        return None
    if outcome.active_in is None:
        message = (
            "refused: only the active snapshot can be rolled back; to activate another "
            "version, promote it"
        )
        return Refusal("RollbackRefused", message, message)
    return None


def action_key(uid: str, token: str) -> str:
    """The idempotency key of a person's action on the snapshot with ``uid``."""
    return f"{uid}:{token}"


def promotion_message(env: str, from_version: str | None, epoch: int) -> str:
    previous = f" (replacing {from_version})" if from_version else ""
    return f"active in {env}{previous}; sidecars signalled at epoch {epoch}"


def action_record(
    action: str, token: str, actor: str, outcome: str, now: dt.datetime
) -> dict[str, Any]:
    """``status.lastAction``: what was asked, by whom, and what came of it."""
    return {
        "action": action,
        "token": token,
        "actor": actor,
        "outcome": outcome,
        "at": format_time(now),
    }
