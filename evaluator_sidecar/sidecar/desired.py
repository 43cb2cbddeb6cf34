"""Desired-state tracking: which version this device should run, and what it was applied for.

:class:`DesiredTracker` folds the levels read from Redis and the messages
received into one answer, :meth:`DesiredTracker.resolution`: the snapshot this
device runs given its cohort (the rollout's canary or stable side, chosen from
its device id), the epoch that decided it, or a manual override. It is pure:
the listener does the reading, the converger acts on the answer, and tests
can drive it without Redis. :class:`Applied` records what the active evaluator
was activated for, which heartbeats and the health status report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from evaluator_sidecar.signals import (
    Cohort,
    DesiredLevels,
    DesiredState,
    Resolution,
    SnapshotRef,
    resolve_desired,
)

__all__ = ["NO_APPLIED", "Applied", "DesiredTracker", "as_cohort"]


class DesiredTracker:
    """What this device should run, folded from levels and messages (pure, no I/O).

    - A level (one key's desired state) replaces the held one only when its epoch
      is newer, so resyncs that read the same state, late or replayed messages,
      and a Redis that lost its keys never move the device backwards.
    - A rollout level removed from Redis is dropped when a read of both levels
      finds the environment's level but not the rollout's (:meth:`merge_levels`).
    - A plain ``activate:<version>`` is a manual override on top of the held
      levels; it stays in force until a level with a higher epoch than the
      levels held when it arrived.
    """

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.levels = DesiredLevels()
        self.manual: str | None = None
        self._manual_base = 0

    @property
    def epoch(self) -> int:
        return self.levels.epoch

    def merge(self, *states: DesiredState | None) -> bool:
        """Fold in states read or received; True when anything newer was taken."""
        before = self.levels
        for state in states:
            if state is not None:
                self.levels = self.levels.with_state(state)
        changed = self.levels is not before
        if self.manual is not None and self.levels.epoch > self._manual_base:
            self.manual = None
            changed = True
        return changed

    def merge_levels(self, levels: DesiredLevels) -> bool:
        """Fold in a read of both levels (one round trip, so the two agree in time).

        A rollout level held but no longer stored, while the environment's level
        is, was removed (the operator removes a rollout level no PolicyDeployment
        owns): the device drops it and follows its environment's level. A Redis
        that lost its keys lost the environment's level too: nothing is dropped.
        """
        changed = self.merge(levels.env_state, levels.rollout_state)
        if (
            levels.rollout_state is None
            and levels.env_state is not None
            and self.levels.rollout_state is not None
        ):
            self.levels = replace(self.levels, rollout_state=None)
            changed = True
        return changed

    def set_manual(self, version: str) -> None:
        self.manual = version
        self._manual_base = self.levels.epoch

    def resolution(self) -> Resolution:
        if self.manual is not None:
            return Resolution(SnapshotRef(self.manual), "manual", self.levels.epoch, "manual")
        return resolve_desired(self.levels, device_id=self.device_id)


@dataclass(frozen=True)
class Applied:
    """What the active evaluator was activated for."""

    epoch: int
    cohort: Cohort
    source: str


NO_APPLIED = Applied(0, "none", "none")


def as_cohort(value: str) -> Cohort:
    """A cohort read back from the disk cache's pointer; anything unknown is ``none``."""
    if value == "canary":
        return "canary"
    if value == "stable":
        return "stable"
    if value == "manual":
        return "manual"
    return "none"
