"""The conditions generic health readers understand, derived from each kind's own. Pure.

Flux (through cli-utils' kstatus), ``kubectl wait --for=condition=Ready`` and other
tools know nothing of Progressing/Available/Degraded or Stored/Validated; kstatus reads
``observedGeneration`` and three conditions: ``Reconciling=True`` (InProgress),
``Stalled=True`` (Failed) and ``Ready`` (True: Current, otherwise InProgress). These
functions give both kinds those three, always set (False with a reason when they do
not hold), so that a reader never has to guess from their absence:

- PolicyDeployment: Ready is Available; Reconciling while the attempt runs and is
  not waiting for a person; Stalled once it ended without its snapshot becoming stable
  (rolled back, aborted, failed, superseded by another deployment, or an invalid spec).
- PolicySnapshot: Ready is its own Ready (stored, compiled, validated); Reconciling
  while it is stored and validated; Stalled when it was refused or its fixtures failed
  (a snapshot's spec is immutable: only a new snapshot fixes it).
"""

from __future__ import annotations

from collections.abc import Mapping

from pkg_operator.conditions import ConditionStatus

__all__ = ["ENDED_BADLY", "HEALTH_TYPES", "Cond", "rollout_health", "snapshot_health"]

Cond = tuple[ConditionStatus, str, str]  # status, reason, message
HEALTH_TYPES = ("Ready", "Reconciling", "Stalled")
#: Rollout summaries of an attempt that ended without its snapshot becoming stable.
ENDED_BADLY = frozenset({"RolledBack", "Aborted", "Failed", "Superseded", "Invalid"})


def rollout_health(summary: str, conds: Mapping[str, Cond]) -> dict[str, Cond]:
    """Ready, Reconciling and Stalled of a PolicyDeployment from its four conditions."""
    available = conds["Available"]
    progressing = conds["Progressing"]
    ready: Cond = ("True" if available[0] == "True" else "False", available[1], available[2])
    if summary in ("Waiting", "Progressing"):
        reconciling: Cond = ("True", progressing[1], progressing[2])
    else:
        reconciling = ("False", summary or "Idle", "")
    if summary in ENDED_BADLY:
        stalled: Cond = ("True", progressing[1], progressing[2])
    else:
        stalled = ("False", "NotStalled", "")
    return {"Ready": ready, "Reconciling": reconciling, "Stalled": stalled}


def snapshot_health(ready: Cond, *, settled: bool) -> dict[str, Cond]:
    """Reconciling and Stalled of a PolicySnapshot from its Ready condition; ``settled``
    is False while the operator is still storing or validating it."""
    if not settled:
        return {
            "Reconciling": ("True", ready[1], ready[2]),
            "Stalled": ("False", "NotStalled", ""),
        }
    if ready[0] == "True":
        return {"Reconciling": ("False", "Reconciled", ""), "Stalled": ("False", "NotStalled", "")}
    return {"Reconciling": ("False", "Reconciled", ""), "Stalled": ("True", ready[1], ready[2])}
