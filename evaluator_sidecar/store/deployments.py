"""PKGDeploymentsDAO: rollout rows (one per deployment, target, region, snapshot) and coverage.

``upsert_deployment`` is the operator's rollout bookkeeping: each canary step
updates its row in place and appends a ``deployment.step`` audit row in the
same transaction. With an idempotency key (e.g. ``<uid>/<generation>/step-<n>``)
a restarted operator can repeat a step safely: the key's first use wins and a
retry returns the same deployment id without writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from evaluator_sidecar.store.audit import append_in, check_action, existing_key
from evaluator_sidecar.store.errors import InvalidInputError, SnapshotArchivedError, db_errors
from evaluator_sidecar.store.idempotency import write_keyed
from evaluator_sidecar.store.pool import Connection, Database

__all__ = ["PKGDeploymentsDAO"]

_DEPLOYMENT_COLUMNS = """
d.id, d.snapshot_id, s.version AS snapshot_version, d.deployment_name, d.deployment_uid,
d.target, d.region, d.percent, d.is_active, d.step, d.activated_by, d.last_idempotency_key,
d.created_at, d.updated_at
"""


class PKGDeploymentsDAO:
    """Targeted rollouts and how far they have reached."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_deployments(
        self,
        snapshot_id: int | None = None,
        target: str | None = None,
        region: str | None = None,
        active_only: bool = True,
    ) -> list[dict[str, Any]]:
        """Deployment rows (with ``snapshot_version``), filtered; active ones only by default."""
        with db_errors("reading deployments"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    f"SELECT {_DEPLOYMENT_COLUMNS} FROM pkg_deployments d "
                    "JOIN pkg_snapshots s ON s.id = d.snapshot_id "
                    "WHERE ($1::bigint IS NULL OR d.snapshot_id = $1) "
                    "AND ($2::text IS NULL OR d.target = $2) "
                    "AND ($3::text IS NULL OR d.region = $3) "
                    "AND (NOT $4 OR d.is_active) ORDER BY d.target, d.region, d.id",
                    snapshot_id,
                    target,
                    region,
                    active_only,
                )
        return [dict(r) for r in rows]

    async def get_deployment_coverage(
        self,
        target: str | None = None,
        region: str | None = None,
        *,
        ttl: timedelta | None = None,
    ) -> list[dict[str, Any]]:
        """Per active deployment, as the operator counts its status.coverage: live devices
        of its environment, target and region (devices_total), those on its snapshot, in
        its canary cohort, on what their cohort should run (see pkg_deployment_coverage).
        A device is live when seen within ``ttl`` (default: each deployment's own
        heartbeat TTL, 30 seconds when it has none)."""
        with db_errors("reading deployment coverage"):
            async with self._db.connection() as conn:
                # Without a ttl, the function's own default (one definition of "live").
                source = (
                    "pkg_deployment_coverage"
                    if ttl is None
                    else ("pkg_deployment_coverage_within($3::interval)")
                )
                rows = await conn.fetch(
                    f"SELECT * FROM {source} "  # one of two fixed names
                    "WHERE ($1::text IS NULL OR target = $1) "
                    "AND ($2::text IS NULL OR region = $2) ORDER BY target, region, deployment_id",
                    target,
                    region,
                    *(() if ttl is None else (ttl,)),
                )
        return [dict(r) for r in rows]

    async def upsert_deployment(
        self,
        *,
        snapshot_id: int,
        target: str,
        region: str = "global",
        percent: int,
        is_active: bool = True,
        deployment_name: str | None = None,
        deployment_uid: str | None = None,
        step: int | None = None,
        actor: str = "pkg-operator",
        idempotency_key: str | None = None,
        audit_action: str = "deployment.step",
        details: Mapping[str, Any] | None = None,
        heartbeat_ttl_seconds: int | None = None,
    ) -> int:
        """Create or update the row of (deployment_uid, target, region, snapshot); its id.

        Appends an audit row (``audit_action``, a ``deployment.*`` name such as
        ``deployment.step``, ``deployment.completed``, ``deployment.aborted``) with
        ``details`` in the same transaction. A repeated ``idempotency_key`` returns
        the first call's deployment id and writes nothing. ``heartbeat_ttl_seconds``
        (the PolicyDeployment's spec.coverage.heartbeatTTLSeconds; None: the default)
        says which devices pkg_deployment_coverage counts as live for it.
        """
        if not audit_action.startswith("deployment."):
            raise InvalidInputError(
                f"audit action {audit_action!r} must start with 'deployment.' "
                "(e.g. deployment.step)"
            )
        check_action(audit_action)
        with db_errors(f"recording deployment of snapshot {snapshot_id} to {target}/{region}"):
            return await write_keyed(
                self._db,
                partial(
                    self._upsert,
                    snapshot_id=snapshot_id,
                    target=target,
                    region=region,
                    percent=percent,
                    is_active=is_active,
                    deployment_name=deployment_name,
                    deployment_uid=deployment_uid,
                    step=step,
                    actor=actor,
                    idempotency_key=idempotency_key,
                    audit_action=audit_action,
                    details=details,
                    heartbeat_ttl_seconds=heartbeat_ttl_seconds,
                ),
                idempotency_key=idempotency_key,
                # The key lives on the step's audit row: only a race on it is worth a second look.
                constraint="pkg_audit_log_idempotency_key_key",
            )

    async def _upsert(
        self,
        conn: Connection,
        *,
        snapshot_id: int,
        target: str,
        region: str,
        percent: int,
        is_active: bool,
        deployment_name: str | None,
        deployment_uid: str | None,
        step: int | None,
        actor: str,
        idempotency_key: str | None,
        audit_action: str,
        details: Mapping[str, Any] | None,
        heartbeat_ttl_seconds: int | None = None,
    ) -> int:
        if idempotency_key is not None:
            row = await existing_key(
                conn, idempotency_key, action_prefix="deployment.", entity_type="deployment"
            )
            if row is not None:
                return int(row["entity_id"])
        archived = await conn.fetchval(
            "SELECT archived_at IS NOT NULL FROM pkg_snapshots WHERE id = $1", snapshot_id
        )
        if archived and is_active:
            raise SnapshotArchivedError(
                f"snapshot {snapshot_id} is archived and cannot be deployed: restore it "
                "(restore_snapshot) or deploy another version"
            )
        deployment_id: int = await conn.fetchval(
            "INSERT INTO pkg_deployments AS d (snapshot_id, deployment_name, deployment_uid, "
            "target, region, percent, is_active, step, activated_by, last_idempotency_key, "
            "heartbeat_ttl_seconds) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT ((coalesce(deployment_uid, '')), target, region, snapshot_id) "
            "DO UPDATE SET percent = EXCLUDED.percent, is_active = EXCLUDED.is_active, "
            "step = EXCLUDED.step, activated_by = EXCLUDED.activated_by, "
            "deployment_name = coalesce(EXCLUDED.deployment_name, d.deployment_name), "
            "last_idempotency_key = EXCLUDED.last_idempotency_key, updated_at = now(), "
            "heartbeat_ttl_seconds = EXCLUDED.heartbeat_ttl_seconds "
            "RETURNING id",
            snapshot_id,
            deployment_name,
            deployment_uid,
            target,
            region,
            percent,
            is_active,
            step,
            actor,
            idempotency_key,
            heartbeat_ttl_seconds,
        )
        await append_in(
            conn,
            audit_action,
            actor=actor,
            entity_type="deployment",
            entity_id=deployment_id,
            snapshot_id=snapshot_id,
            idempotency_key=idempotency_key,
            details={
                "deployment_name": deployment_name,
                "deployment_uid": deployment_uid,
                "target": target,
                "region": region,
                "percent": percent,
                "is_active": is_active,
                "step": step,
                **dict(details or {}),
            },
        )
        return deployment_id
