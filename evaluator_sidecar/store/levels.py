"""PKGLevelsDAO: what the desired states in Redis are derived from, and their epochs.

PostgreSQL is the source of truth for the levels the operator writes into Redis:
``active_snapshots`` says what each environment's level must name, and
``next_desired_epoch`` hands out the epochs they are stamped with, from the
sequence ``pkg_desired_epoch_seq`` (migration 0005), so epochs keep growing
across a Redis that restarts without persistence. ``PROMOTIONS_CHANNEL`` is the
channel of the NOTIFY that migration's trigger sends on every promotion row.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluator_sidecar.store.errors import db_errors
from evaluator_sidecar.store.pool import Database

__all__ = ["PROMOTIONS_CHANNEL", "ActiveSnapshot", "PKGLevelsDAO"]

PROMOTIONS_CHANNEL = "pkg_promotions"


@dataclass(frozen=True)
class ActiveSnapshot:
    """An environment's active snapshot: what its level in Redis must name."""

    env: str
    snapshot_id: int
    version: str
    checksum: str | None


class PKGLevelsDAO:
    """Active snapshots per environment, and epochs for the desired states."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def next_desired_epoch(self, floor: int = 0) -> int:
        """A new epoch, greater than every epoch handed out before and than ``floor``."""
        with db_errors("allocating a desired-state epoch"):
            async with self._db.connection() as conn:
                value = await conn.fetchval("SELECT pkg_next_desired_epoch($1::bigint)", floor)
        return int(value)

    async def active_snapshots(self) -> dict[str, ActiveSnapshot]:
        """Every environment's active snapshot, by environment (absent: none is active)."""
        with db_errors("reading the active snapshots"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT env::text AS env, id, version, checksum "
                    "FROM pkg_snapshots WHERE is_active ORDER BY env"
                )
        return {
            str(r["env"]): ActiveSnapshot(
                str(r["env"]),
                int(r["id"]),
                str(r["version"]),
                None if r["checksum"] is None else str(r["checksum"]),
            )
            for r in rows
        }
