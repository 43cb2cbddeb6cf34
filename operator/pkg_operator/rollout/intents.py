"""The side effects one decision collects, each with its idempotency key. Pure.

Records (deployment and promotion rows) and events are kept in the order they
were decided. Publications are intents: a tick may change the desired state
several times (withdraw, then start a step), and only the last intent is
published, once, and only when it differs from what was already published.
See docs/rollout-state-machine.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pkg_operator.conditions import format_time
from pkg_operator.rollout.model import (
    Action,
    EmitEvent,
    PrepareSpec,
    RecordStep,
    SetDesiredState,
    ShadowSpec,
    SnapshotRef,
    idempotency_key,
)
from pkg_operator.rollout.state import Attempt, State

__all__ = ["OPERATOR_ACTOR", "Intents"]

OPERATOR_ACTOR = "pkg-operator"


@dataclass(frozen=True)
class _Intent:
    """Why the desired state changed this tick; only the last intent of a tick is published."""

    kind: str
    step_index: int
    reason: str
    token: str | None


class Intents:
    """The actions of one decision, keyed by the deployment uid, attempt and step."""

    def __init__(self, uid: str, state: State) -> None:
        self.uid = uid
        self.st = state
        self.records: list[Action] = []
        self.events: list[EmitEvent] = []
        self.intent: _Intent | None = None
        self.published_before = (
            state.stable,
            state.canary,
            state.weight,
            state.shadow,
            state.prepare,
        )

    @property
    def _attempt(self) -> Attempt:
        attempt = self.st.attempt
        assert attempt is not None, "an attempt exists once the tick has started"
        return attempt

    def publish(
        self,
        stable: SnapshotRef | None,
        canary: SnapshotRef | None,
        weight: float,
        *,
        kind: str,
        reason: str,
        token: str | None = None,
        shadow: ShadowSpec | None = None,
        prepare: PrepareSpec | None = None,
    ) -> None:
        """Publish this desired state (the last intent of a tick wins); a shadow runs only
        while a publication names it, so every other publication ends it."""
        self.st.stable, self.st.canary, self.st.weight = stable, canary, weight
        self.st.shadow, self.st.prepare = shadow, prepare
        self.intent = _Intent(kind, self.st.step_index, reason, token)

    def record(self, action: Action) -> None:
        self.records.append(action)

    def record_step(
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
                key=self.key(kind, "step", token=token),
                actor=actor,
            )
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(EmitEvent(type=type_, reason=reason, message=message))

    def key(
        self,
        kind: str,
        purpose: str,
        token: str | None = None,
        attempt: int | None = None,
        step_index: int | None = None,
    ) -> str:
        return idempotency_key(
            self.uid,
            attempt if attempt is not None else self._attempt.id,
            step_index if step_index is not None else self.st.step_index,
            kind,
            purpose=purpose,
            token=token,
        )

    def actions(self, now: datetime) -> tuple[Action, ...]:
        """The decision's actions in order: at most one publication, then records, then events.

        A publication also becomes ``status.lastPublish``.
        """
        actions: list[Action] = []
        now_state = (
            self.st.stable,
            self.st.canary,
            self.st.weight,
            self.st.shadow,
            self.st.prepare,
        )
        if self.intent is not None and now_state != self.published_before:
            intent = self.intent
            key = self.key(intent.kind, "desired", intent.token, step_index=intent.step_index)
            actions.append(
                SetDesiredState(
                    stable=self.st.stable,
                    canary=self.st.canary,
                    canary_percent=self.st.weight,
                    reason=intent.reason,
                    key=key,
                    shadow=self.st.shadow,
                    prepare=self.st.prepare,
                )
            )
            self.st.last_publish = {
                "key": key,
                "reason": intent.reason,
                "at": format_time(now),
                "stableVersion": self.st.stable.version if self.st.stable else None,
                "canaryVersion": self.st.canary.version if self.st.canary else None,
                "weight": self.st.weight,
                "shadowVersion": self.st.shadow.snapshot.version if self.st.shadow else None,
            }
        actions.extend(self.records)
        actions.extend(self.events)
        return tuple(actions)
