"""PKGPromotionsDAO: promotion and rollback, and the promotion history.

``promote_snapshot`` and ``rollback_snapshot`` call the SQL functions
``pkg_promote_snapshot`` / ``pkg_rollback_snapshot``, which switch the active
snapshot of an environment, write the promotion row (from/to version) and the
audit row in one transaction. ``create_promotion`` is the record-only call:
it writes a promotion row (e.g. a failed canary, ``success=False``) and
its audit row without activating anything. An ``idempotency_key`` makes each
of them safe to retry after a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from evaluator_sidecar.store.audit import append_in
from evaluator_sidecar.store.errors import (
    IdempotencyConflictError,
    InvalidInputError,
    NotFoundError,
    db_errors,
)
from evaluator_sidecar.store.idempotency import write_keyed
from evaluator_sidecar.store.pool import Connection, Database

__all__ = ["PKGPromotionsDAO"]

_ACTIONS = ("promote", "rollback")


class PKGPromotionsDAO:
    """Promotions and rollbacks."""

    def __init__(self, db: Database, env: str = "prod") -> None:
        self._db = db
        self._env = env

    async def get_promotions(
        self, snapshot_id: int | None = None, limit: int = 100, *, env: str | None = None
    ) -> list[dict[str, Any]]:
        """Promotion rows, newest first: id, snapshot_id, env, from_version, to_version, actor,
        action, reason, metrics, success, idempotency_key, created_at."""
        with db_errors("reading promotions"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT id, snapshot_id, env::text AS env, from_version, to_version, actor, "
                    "action, reason, metrics, success, idempotency_key, created_at "
                    "FROM pkg_promotions WHERE ($1::bigint IS NULL OR snapshot_id = $1) "
                    "AND ($2::pkg_env IS NULL OR env = $2::pkg_env) "
                    "ORDER BY id DESC LIMIT $3",
                    snapshot_id,
                    env,
                    limit,
                )
        return [dict(r) for r in rows]

    async def create_promotion(  # noqa: PLR0917 - callers pass these positionally
        self,
        snapshot_id: int,
        actor: str,
        action: str = "promote",
        reason: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        success: bool = True,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Record a promotion or rollback outcome without activating anything; its id.

        ``from_version`` is the environment's active version at the time. A
        repeated ``idempotency_key`` returns the first row's id.
        """
        if action not in _ACTIONS:
            raise InvalidInputError(f"action {action!r} is not one of {', '.join(_ACTIONS)}")
        with db_errors(f"recording a {action} of snapshot {snapshot_id}"):
            return await write_keyed(
                self._db,
                partial(
                    self._record,
                    snapshot_id=snapshot_id,
                    actor=actor,
                    action=action,
                    reason=reason,
                    metrics=metrics,
                    success=success,
                    idempotency_key=idempotency_key,
                ),
                idempotency_key=idempotency_key,
            )

    async def _record(
        self,
        conn: Connection,
        *,
        snapshot_id: int,
        actor: str,
        action: str,
        reason: str | None,
        metrics: Mapping[str, Any] | None,
        success: bool,
        idempotency_key: str | None,
    ) -> int:
        if idempotency_key is not None:
            row = await conn.fetchrow(
                "SELECT id, snapshot_id, action FROM pkg_promotions WHERE idempotency_key = $1",
                idempotency_key,
            )
            if row is not None:
                if row["snapshot_id"] != snapshot_id or row["action"] != action:
                    raise IdempotencyConflictError(
                        f"idempotency key {idempotency_key!r} was used for promotion {row['id']} "
                        f"({row['action']} of snapshot {row['snapshot_id']}): use a new key for "
                        "a different request"
                    )
                return int(row["id"])
        snapshot = await conn.fetchrow(
            "SELECT s.version, s.env::text AS env, "
            "(SELECT a.version FROM pkg_snapshots a WHERE a.env = s.env AND a.is_active) AS active "
            "FROM pkg_snapshots s WHERE s.id = $1",
            snapshot_id,
        )
        if snapshot is None:
            raise NotFoundError(f"snapshot {snapshot_id} does not exist: store it first")
        promotion_id: int = await conn.fetchval(
            "INSERT INTO pkg_promotions (snapshot_id, env, from_version, to_version, actor, "
            "action, reason, metrics, success, idempotency_key) "
            "VALUES ($1, $2::pkg_env, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            snapshot_id,
            snapshot["env"],
            snapshot["active"],
            snapshot["version"],
            actor,
            action,
            reason,
            dict(metrics or {}),
            success,
            idempotency_key,
        )
        await append_in(
            conn,
            "promotion.recorded",
            actor=actor,
            entity_type="promotion",
            entity_id=promotion_id,
            snapshot_id=snapshot_id,
            details={
                "action": action,
                "env": snapshot["env"],
                "from_version": snapshot["active"],
                "to_version": snapshot["version"],
                "reason": reason,
                "success": success,
                "metrics": dict(metrics or {}),
            },
        )
        return promotion_id

    async def promote_snapshot(
        self,
        snapshot_id: int,
        actor: str = "pkg-client",
        reason: str | None = None,
        *,
        env: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Make ``snapshot_id`` the active snapshot of ``env`` (default: the client's); the
        promotion id.

        Raises ValidationRequiredError unless its latest validation run succeeded,
        SnapshotArchivedError, EnvironmentMismatchError, NotFoundError.
        """
        target = env or self._env
        with db_errors(f"promoting snapshot {snapshot_id} in {target}"):
            async with self._db.transaction() as conn:
                promotion_id: int = await conn.fetchval(
                    "SELECT pkg_promote_snapshot($1, $2::pkg_env, $3, $4, 'promote', $5, $6)",
                    snapshot_id,
                    target,
                    actor,
                    reason,
                    dict(metrics or {}),
                    idempotency_key,
                )
        return promotion_id

    async def rollback_snapshot(
        self,
        env: str | None = None,
        *,
        actor: str = "pkg-client",
        reason: str | None = None,
        to_snapshot_id: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Roll ``env`` back to ``to_snapshot_id``, or to the version the active snapshot
        replaced; the promotion id (action ``rollback``).

        Raises NothingToRollBackError when there is no earlier version.
        """
        target = env or self._env
        with db_errors(f"rolling back {target}"):
            async with self._db.transaction() as conn:
                promotion_id: int = await conn.fetchval(
                    "SELECT pkg_rollback_snapshot($1::pkg_env, $2, $3, $4, $5, $6)",
                    target,
                    actor,
                    reason,
                    to_snapshot_id,
                    dict(metrics or {}),
                    idempotency_key,
                )
        return promotion_id
