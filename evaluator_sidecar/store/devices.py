"""PKGDevicesDAO: device heartbeats into pkg_device_versions, singly or in batches.

The operator folds sidecar heartbeats from Redis into PostgreSQL in batches:
``update_device_heartbeats`` writes any number of them with one INSERT ...
SELECT FROM unnest(...) statement (one round trip). Within a batch the newest
report per device wins, and a report older than the stored one never
overwrites it, so batches may arrive out of order. A heartbeat naming only a
version gets that version's snapshot id; an unknown snapshot leaves it NULL
rather than failing the batch. Devices are keyed by environment and device id:
two environments may use the same device names. The latest report's activation
error, staleness and prepared version ride along (migration 0010), so a rollout
tick reads everything about a device from one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from evaluator_sidecar.store.errors import InvalidInputError, db_errors
from evaluator_sidecar.store.models import DeviceHeartbeat
from evaluator_sidecar.store.pool import Database

__all__ = ["PKGDevicesDAO"]

_UPSERT_HEARTBEATS = """
INSERT INTO pkg_device_versions AS dv (environment, device_id, device_type, region, target,
                                       snapshot_id, version, evaluations, errors,
                                       p99_latency_ms, activation_failures, last_seen,
                                       last_error, policy_stale, prepared_version)
SELECT DISTINCT ON (h.env, h.device_id)
       h.env, h.device_id, h.device_type, coalesce(h.region, 'global'),
       coalesce(h.target, h.device_type),
       coalesce(h.by_id_id, h.by_version_id), coalesce(h.version, h.by_id_version),
       h.evaluations, h.errors, h.p99_latency_ms, h.activation_failures,
       coalesce(h.seen_at, now()), h.last_error, h.policy_stale, h.prepared_version
  FROM (SELECT u.*,
               coalesce(u.environment, by_id.env::text, by_version.env::text, 'unknown') AS env,
               by_id.id AS by_id_id, by_id.version AS by_id_version,
               by_version.id AS by_version_id
          FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                      $7::bigint[], $8::bigint[], $9::float8[], $10::bigint[],
                      $11::timestamptz[], $12::text[], $13::text[], $14::bool[], $15::text[])
               WITH ORDINALITY
               AS u(device_id, device_type, region, target, snapshot_id, version, evaluations,
                    errors, p99_latency_ms, activation_failures, seen_at, environment,
                    last_error, policy_stale, prepared_version, ord)
          LEFT JOIN pkg_snapshots by_id ON by_id.id = u.snapshot_id
          LEFT JOIN pkg_snapshots by_version ON by_version.version = u.version) AS h
 ORDER BY h.env, h.device_id, coalesce(h.seen_at, now()) DESC, h.ord DESC
ON CONFLICT (environment, device_id) DO UPDATE SET
       device_type = EXCLUDED.device_type,
       region = EXCLUDED.region,
       target = EXCLUDED.target,
       snapshot_id = EXCLUDED.snapshot_id,
       version = EXCLUDED.version,
       evaluations = coalesce(EXCLUDED.evaluations, dv.evaluations),
       errors = coalesce(EXCLUDED.errors, dv.errors),
       p99_latency_ms = coalesce(EXCLUDED.p99_latency_ms, dv.p99_latency_ms),
       activation_failures = coalesce(EXCLUDED.activation_failures, dv.activation_failures),
       last_seen = EXCLUDED.last_seen,
       last_error = EXCLUDED.last_error,
       policy_stale = EXCLUDED.policy_stale,
       prepared_version = EXCLUDED.prepared_version
 WHERE dv.last_seen <= EXCLUDED.last_seen
"""


def _columns(heartbeats: Sequence[DeviceHeartbeat]) -> list[list[Any]]:
    for h in heartbeats:
        if not h.device_id or not h.device_type:
            raise InvalidInputError(
                f"heartbeat {h!r} needs a device_id and a device_type (non-empty text)"
            )
    return [
        [h.device_id for h in heartbeats],
        [h.device_type for h in heartbeats],
        [h.region for h in heartbeats],
        [h.target for h in heartbeats],
        [h.snapshot_id for h in heartbeats],
        [h.version for h in heartbeats],
        [h.evaluations for h in heartbeats],
        [h.errors for h in heartbeats],
        [h.p99_latency_ms for h in heartbeats],
        [h.activation_failures for h in heartbeats],
        [h.seen_at for h in heartbeats],
        [h.environment for h in heartbeats],
        [h.last_error for h in heartbeats],
        [h.policy_stale for h in heartbeats],
        [h.prepared_version for h in heartbeats],
    ]


class PKGDevicesDAO:
    """Edge telemetry: which device runs which snapshot, and how it fares."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_device_versions(
        self,
        device_type: str | None = None,
        region: str | None = None,
        snapshot_id: int | None = None,
        *,
        target: str | None = None,
        seen_within: timedelta | None = None,
        environment: str | None = None,
    ) -> list[dict[str, Any]]:
        """Device rows, filtered; ``seen_within`` keeps devices heard from recently."""
        with db_errors("reading device versions"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT environment, device_id, device_type, region, target, snapshot_id, "
                    "version, "
                    "evaluations, errors, p99_latency_ms, activation_failures, last_seen, "
                    "last_error, policy_stale, prepared_version "
                    "FROM pkg_device_versions "
                    "WHERE ($1::text IS NULL OR device_type = $1) "
                    "AND ($2::text IS NULL OR region = $2) "
                    "AND ($3::bigint IS NULL OR snapshot_id = $3) "
                    "AND ($4::text IS NULL OR target = $4) "
                    "AND ($5::interval IS NULL OR last_seen >= now() - $5::interval) "
                    "AND ($6::text IS NULL OR environment = $6) "
                    "ORDER BY device_id, environment",
                    device_type,
                    region,
                    snapshot_id,
                    target,
                    seen_within,
                    environment,
                )
        return [dict(r) for r in rows]

    async def update_device_heartbeat(
        self,
        device_id: str,
        device_type: str,
        snapshot_id: int | None = None,
        version: str | None = None,
        region: str = "global",
        *,
        target: str | None = None,
        evaluations: int | None = None,
        errors: int | None = None,
        p99_latency_ms: float | None = None,
        activation_failures: int | None = None,
        seen_at: datetime | None = None,
        environment: str | None = None,
    ) -> None:
        """Record one device's heartbeat: what it runs (positional, as callers pass it),
        then its metrics (keywords). ``update_device_heartbeats`` records many at once."""
        await self.update_device_heartbeats(
            [
                DeviceHeartbeat(
                    device_id=device_id,
                    device_type=device_type,
                    snapshot_id=snapshot_id,
                    version=version,
                    region=region,
                    target=target,
                    evaluations=evaluations,
                    errors=errors,
                    p99_latency_ms=p99_latency_ms,
                    activation_failures=activation_failures,
                    seen_at=seen_at,
                    environment=environment,
                )
            ]
        )

    async def update_device_heartbeats(self, heartbeats: Sequence[DeviceHeartbeat]) -> int:
        """Record many heartbeats in one statement; the number of device rows written
        (a report older than the stored one is not written)."""
        if not heartbeats:
            return 0
        columns = _columns(heartbeats)
        with db_errors(f"recording {len(heartbeats)} device heartbeat(s)"):
            async with self._db.connection() as conn:
                status: str = await conn.execute(_UPSERT_HEARTBEATS, *columns)
        return int(status.rsplit(" ", 1)[-1])
