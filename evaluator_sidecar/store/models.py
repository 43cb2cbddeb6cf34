"""Small value types the PKG client takes and returns (beyond plain row dicts).

Rows come back as plain ``dict[str, Any]`` keyed by column name, so a caller
needs no row type to read one; these dataclasses are for inputs with many fields
and for results that carry more than an id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "AUDIT_ACTIONS",
    "DeviceHeartbeat",
    "SnapshotSummary",
    "TemporalFact",
    "ValidationOutcome",
]

#: Audit actions the client writes itself (entity type in brackets). Operators
#: add their own with ``append_audit``: dotted lowercase names, e.g.
#: ``rollout.paused`` or ``operator.started``.
AUDIT_ACTIONS: dict[str, str] = {
    "snapshot.stored": "[snapshot] store_snapshot wrote a new snapshot",
    "snapshot.reclaimed": "[snapshot] an identical snapshot was stored from a new resource uid",
    "snapshot.archived": "[snapshot] archive_snapshot (soft delete)",
    "snapshot.restored": "[snapshot] restore_snapshot, or an archived snapshot stored again",
    "snapshot.promoted": "[snapshot] promote_snapshot activated it (promotion_id, env, from/to)",
    "snapshot.rolled_back": "[snapshot] rollback_snapshot activated it (details as promoted)",
    "promotion.recorded": "[promotion] create_promotion recorded an outcome without activating",
    "validation.started": "[validation_run] create_validation_run",
    "validation.finished": "[validation_run] finish_validation_run (success, report_sha256)",
    "deployment.step": "[deployment] upsert_deployment changed a rollout row (percent, active)",
    "fact.created": "[fact] create_temporal_fact (env, facts_version)",
    "fact.expired": "[fact] expire_temporal_fact ended a fact early (env, facts_version)",
    "fact.deleted": "[fact] delete_temporal_fact (env, facts_version)",
}


@dataclass(frozen=True)
class TemporalFact:
    """A fact valid in ``[valid_from, valid_to)`` (a missing bound is open).

    It belongs to the environment ``env`` (None: the client's environment) and
    reaches that environment's sidecars as part of its versioned fact set.
    ``snapshot_id`` is refused by ``create_temporal_fact``: a snapshot's facts
    are part of its immutable content (``spec.facts``), written only when it is
    stored.
    """

    subject: str
    predicate: str
    object: Any
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    snapshot_id: int | None = None
    created_by: str | None = None
    env: str | None = None


@dataclass(frozen=True)
class DeviceHeartbeat:
    """One device's report: what it runs, where, and how it fares.

    ``target`` defaults to ``device_type``; ``seen_at`` to the database's now();
    ``environment`` to the environment of the snapshot it runs (``unknown`` when
    it names no stored snapshot). Devices are keyed by (environment, device id).
    Metrics left None keep the device's previous values. ``snapshot_id`` may
    be omitted when ``version`` names a stored snapshot. ``last_error``,
    ``policy_stale`` and ``prepared_version`` are the latest report's state (a
    report without them clears them): what a rollout tick reads per device.
    """

    device_id: str
    device_type: str
    snapshot_id: int | None = None
    version: str | None = None
    region: str = "global"
    target: str | None = None
    evaluations: int | None = None
    errors: int | None = None
    p99_latency_ms: float | None = None
    activation_failures: int | None = None
    seen_at: datetime | None = None
    environment: str | None = None
    last_error: str | None = None
    policy_stale: bool | None = None
    prepared_version: str | None = None


@dataclass(frozen=True)
class ValidationOutcome:
    """The result of ``validate_snapshot``: the run it wrote and the fixtures' report."""

    run_id: int
    snapshot_id: int
    success: bool
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotSummary:
    """A stored snapshot's identity without its content: what bookkeeping needs.

    Reading it neither loads nor verifies the rules, so a snapshot whose rows were
    tampered with does not stop the operator from reasoning about the others; the
    sidecars verify content before activation and the integrity checks report it.
    """

    id: int
    version: str
    env: str
    checksum: str | None
