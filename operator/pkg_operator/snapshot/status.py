"""A PolicySnapshot's status, computed from what reconciliation found (pure).

The handler gathers an :class:`Outcome` (did the checksum match, did it compile,
was it stored, how did the fixtures do, is it active) and this module turns it
into the status subresource: ``observedGeneration``, the checksum, the rule
count, the validation summary, and four conditions in Kubernetes style:

- ``Stored``: the snapshot is in PostgreSQL (``snapshotId``);
- ``Validated``: its fixtures passed with the engine the sidecars run;
- ``Ready``: stored, compiled and validated, so it may be promoted;
- ``Active``: it is its environment's active snapshot;
- ``Synced``: the last reconciliation finished; False (DatabaseUnavailable,
  RedisUnavailable) while the operator retries, so an outage shows in the status.

A snapshot that fails at one stage is ``False`` at that stage and at every later
one, with the same reason, so ``kubectl get psnap`` and ``kubectl wait`` read one
clear answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pkg_operator.conditions import ConditionStatus, find_condition, set_condition
from pkg_operator.health import snapshot_health

__all__ = ["Outcome", "ValidationSummary", "active_status", "snapshot_status"]


@dataclass(frozen=True)
class ValidationSummary:
    run_id: int
    passed: int
    failed: int
    total: int
    finished_at: dt.datetime
    message: str

    @property
    def success(self) -> bool:
        return self.failed == 0


@dataclass(frozen=True)
class Outcome:
    """What reconciliation established about one snapshot, stage by stage."""

    checksum: str | None = None
    rule_count: int = 0
    #: Why the snapshot cannot be stored: a CamelCase reason and a message for people.
    rejected: tuple[str, str] | None = None
    snapshot_id: int | None = None
    validation: ValidationSummary | None = None
    #: The environment it is active in, or None.
    active_in: str | None = None
    #: When not active: the version that replaced it, if it was active before.
    superseded_by: str | None = None


def _with_health(
    conditions: list[dict[str, Any]], generation: int, now: dt.datetime, *, settled: bool
) -> list[dict[str, Any]]:
    """Reconciling and Stalled beside Ready, for kstatus (pkg_operator.health)."""
    ready = find_condition(conditions, "Ready") or {}
    derived = snapshot_health(
        (
            ready.get("status", "Unknown"),
            ready.get("reason", "Validating"),
            ready.get("message", ""),
        ),
        settled=settled,
    )
    for kind, (cond_status, reason, message) in derived.items():
        conditions = set_condition(conditions, kind, cond_status, reason, message, generation, now)
    return conditions


def snapshot_status(
    outcome: Outcome, *, previous: Mapping[str, Any], generation: int, now: dt.datetime
) -> dict[str, Any]:
    """The full status for ``outcome``; conditions keep their transition times when unchanged."""
    conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])

    def put(kind: str, status: ConditionStatus, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, kind, status, reason, message, generation, now)

    status: dict[str, Any] = {"observedGeneration": generation, "ruleCount": outcome.rule_count}
    if outcome.checksum:
        status["checksum"] = outcome.checksum
    if outcome.rejected is not None:
        reason, message = outcome.rejected
        for kind in ("Stored", "Validated", "Ready"):
            put(kind, "False", reason, message)
        put("Active", "False", reason, "a snapshot that is not Ready can never become active")
        put("Reconciling", "False", "Reconciled", "")
        put("Stalled", "True", reason, message)
        status["conditions"] = conditions
        return status

    if outcome.snapshot_id is None:
        for kind in ("Stored", "Validated", "Ready", "Active"):
            put(
                kind,
                "Unknown",
                "Reconciling",
                "the operator is storing and validating the snapshot",
            )
        put("Stalled", "False", "NotStalled", "")
        status["conditions"] = conditions
        return status

    status["snapshotId"] = outcome.snapshot_id
    put("Stored", "True", "Stored", f"stored in PostgreSQL as snapshot {outcome.snapshot_id}")
    validation = outcome.validation
    if validation is None:
        put("Validated", "Unknown", "Validating", "the fixtures are running")
        put("Ready", "Unknown", "Validating", "waiting for the validation run")
    else:
        status["validation"] = {
            "runId": validation.run_id,
            "passed": validation.passed,
            "failed": validation.failed,
            "total": validation.total,
            "finishedAt": validation.finished_at.isoformat().replace("+00:00", "Z"),
            "message": validation.message,
        }
        if validation.success:
            reason = "FixturesPassed" if validation.total else "NoFixtures"
            put("Validated", "True", reason, validation.message)
            put("Ready", "True", "Ready", "stored, compiled and validated: it may be promoted")
        else:
            put("Validated", "False", "FixturesFailed", validation.message)
            put("Ready", "False", "FixturesFailed", validation.message)

    conditions = _with_health(conditions, generation, now, settled=validation is not None)
    # None clears the field: the status is applied as a merge patch.
    status["activeIn"] = outcome.active_in
    if outcome.active_in is not None:
        put("Active", "True", "Promoted", f"the active snapshot of environment {outcome.active_in}")
    elif outcome.superseded_by is not None:
        put("Active", "False", "Superseded", f"superseded by {outcome.superseded_by}")
    else:
        put("Active", "False", "NotPromoted", "not promoted in its environment")
    put("Synced", "True", "Reconciled", "the operator reconciled this generation")
    status["conditions"] = conditions
    return status


def active_status(
    previous: Mapping[str, Any],
    *,
    version: str,
    env: str,
    active_version: str | None,
    generation: int,
    now: dt.datetime,
) -> dict[str, Any] | None:
    """The status patch that makes snapshot ``version``'s Active condition and
    ``activeIn`` say what PostgreSQL says (``active_version`` is ``env``'s active one);
    None when they already do. Compared by version, which PostgreSQL holds, never by the
    status's own ``snapshotId``: a snapshot whose handler has not run yet has none."""
    conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])
    if active_version == version:
        updated = set_condition(
            conditions,
            "Active",
            "True",
            "Promoted",
            f"the active snapshot of environment {env}",
            generation,
            now,
        )
        active_in: str | None = env
    elif active_version is None:
        message = f"no snapshot is active in environment {env}"
        updated = set_condition(
            conditions, "Active", "False", "NotPromoted", message, generation, now
        )
        active_in = None
    else:
        message = f"superseded by {active_version}"
        updated = set_condition(
            conditions, "Active", "False", "Superseded", message, generation, now
        )
        active_in = None
    if updated == conditions and previous.get("activeIn") == active_in:
        return None
    return {"conditions": updated, "activeIn": active_in}
