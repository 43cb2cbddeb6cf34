"""The working copy of one decision: what the transitions read and change. Pure.

A :class:`Tick` holds the parsed spec, the state loaded from status (mutated
in place as the tick goes), the observations, the time and the
:class:`~pkg_operator.rollout.intents.Intents` collected so far. See
docs/rollout-state-machine.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pkg_operator.rollout import judge, render
from pkg_operator.rollout.intents import Intents
from pkg_operator.rollout.model import Observations, SnapshotRef
from pkg_operator.rollout.spec import RolloutSpec
from pkg_operator.rollout.state import Attempt, State

__all__ = ["Tick"]


@dataclass
class Tick:
    spec: RolloutSpec
    st: State
    obs: Observations
    now: datetime
    out: Intents = field(init=False)

    def __post_init__(self) -> None:
        state = self.st
        if state.last_publish is None:
            # Until this deployment publishes, the target runs the environment's snapshot.
            state.stable = SnapshotRef.of(self.obs.baseline) if self.obs.baseline else None
        state.step_index = min(state.step_index, len(self.spec.steps))
        self.out = Intents(self.obs.uid, state)

    @property
    def attempt(self) -> Attempt:
        attempt = self.st.attempt
        assert attempt is not None, "an attempt exists once the tick has started"
        return attempt

    def end(self, outcome: str, reason: str, message: str) -> None:
        attempt = self.attempt
        attempt.outcome, attempt.reason, attempt.message = outcome, reason, message
        attempt.finished_at = self.now

    def step_text(self) -> str:
        return judge.step_text(self.spec, self.st)

    def coverage_text(self) -> str:
        return judge.coverage_text(self.spec, self.obs)

    def metrics(self, reason: str) -> dict[str, Any]:
        """The figures a promotion row keeps: why, where, health and coverage."""
        return {
            "reason": reason,
            "step": self.step_text(),
            "health": render.health(self.obs.health),
            "coverage": render.coverage(self.obs.coverage),
        }
