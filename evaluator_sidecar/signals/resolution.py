"""Desired-state resolution: which snapshot one device runs, decided from the levels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from evaluator_sidecar.signals.cohorts import in_canary
from evaluator_sidecar.signals.messages import Cohort, DesiredState, SnapshotRef

__all__ = ["DesiredLevels", "Resolution", "resolve_desired"]


@dataclass(frozen=True)
class DesiredLevels:
    """The two levels a sidecar reads: its environment's and its rollout's; either may be absent."""

    env_state: DesiredState | None = None
    rollout_state: DesiredState | None = None

    @property
    def epoch(self) -> int:
        """The newest epoch of the levels present (0 when none is)."""
        return max(
            (s.epoch for s in (self.env_state, self.rollout_state) if s is not None), default=0
        )

    def with_state(self, state: DesiredState) -> DesiredLevels:
        """These levels with ``state`` replacing the one of its kind when it is newer."""
        if state.is_rollout:
            if self.rollout_state is None or state.epoch > self.rollout_state.epoch:
                return replace(self, rollout_state=state)
            return self
        if self.env_state is None or state.epoch > self.env_state.epoch:
            return replace(self, env_state=state)
        return self


@dataclass(frozen=True)
class Resolution:
    """What one device should run, decided from the levels.

    ``ref`` is ``None`` when no level names a snapshot: the device then runs
    PostgreSQL's active snapshot for its environment (``source == "database"``).
    """

    ref: SnapshotRef | None
    cohort: Cohort
    epoch: int
    source: Literal["rollout", "env", "database", "manual"]


def resolve_desired(levels: DesiredLevels, *, device_id: str) -> Resolution:
    """A device's snapshot: the rollout level if present, else the environment's, else the DB.

    Within a rollout, a device whose bucket is below ``canary_percent`` runs the
    canary; the others run the rollout's stable, or the environment's stable when
    the rollout names none.
    """
    epoch = levels.epoch
    rollout = levels.rollout_state
    env_ref = levels.env_state.stable if levels.env_state else None
    if rollout is not None:
        if (
            rollout.canary is not None
            and rollout.deployment
            and in_canary(device_id, rollout.deployment, rollout.canary_percent)
        ):
            return Resolution(rollout.canary, "canary", epoch, "rollout")
        if rollout.stable is not None:
            return Resolution(rollout.stable, "stable", epoch, "rollout")
    if env_ref is not None:
        return Resolution(env_ref, "stable", epoch, "env")
    return Resolution(None, "stable", epoch, "database")
