"""A stored snapshot's life: was it ever active, has a newer one been, archive and restore.

``archive_snapshot`` is a soft delete (``pkg_archive_snapshot``): the snapshot's
rows, promotions, validation runs and audit history stay, and
``restore_snapshot`` undoes it. The history questions are what the operator asks
before promoting (never backwards) or deleting (never the active one).
``check_integrity`` runs the database's cross-table checks.
"""

from __future__ import annotations

import logging
from typing import Any

from evaluator_sidecar.store.errors import db_errors
from evaluator_sidecar.store.pool import Database
from evaluator_sidecar.store.snapshot_rows import check_env

__all__ = ["SnapshotLifecycle"]

log = logging.getLogger(__name__)


class SnapshotLifecycle:
    """The history, archive/restore and integrity methods of ``PKGSnapshotsDAO``."""

    _db: Database
    #: The environment ``newer_snapshot_promoted`` looks in by default.
    _env: str

    async def was_ever_active(self, snapshot_id: int) -> bool:
        """Whether the snapshot was ever the active one of its environment."""
        with db_errors(f"reading the history of snapshot {snapshot_id}"):
            async with self._db.connection() as conn:
                found: bool = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pkg_snapshots WHERE id = $1 "
                    "AND activated_at IS NOT NULL)",
                    snapshot_id,
                )
        return found

    async def newer_snapshot_promoted(self, snapshot_id: int, env: str | None = None) -> bool:
        """Whether a snapshot stored after ``snapshot_id`` in ``env`` (default: the client's)
        has ever been active: promoting this one then would be going backwards."""
        target = check_env(env or self._env)
        with db_errors(f"comparing snapshot {snapshot_id} with newer ones"):
            async with self._db.connection() as conn:
                found: bool = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pkg_snapshots WHERE env = $2::pkg_env "
                    "AND id > $1 AND activated_at IS NOT NULL)",
                    snapshot_id,
                    target,
                )
        return found

    async def archive_snapshot(
        self, snapshot_id: int, *, actor: str = "pkg-client", reason: str | None = None
    ) -> bool:
        """Archive (soft delete) a snapshot; False when it already was.

        Its rows, promotions, validation runs and audit history stay. Raises
        SnapshotInUseError for the active snapshot of its environment or one with
        active deployments, NotFoundError for an unknown id.
        """
        with db_errors(f"archiving snapshot {snapshot_id}"):
            async with self._db.transaction() as conn:
                done: bool = await conn.fetchval(
                    "SELECT pkg_archive_snapshot($1, $2, $3)", snapshot_id, actor, reason
                )
        return done

    async def restore_snapshot(
        self, snapshot_id: int, *, actor: str = "pkg-client", reason: str | None = None
    ) -> bool:
        """Undo ``archive_snapshot``; False when the snapshot was not archived."""
        with db_errors(f"restoring snapshot {snapshot_id}"):
            async with self._db.transaction() as conn:
                done: bool = await conn.fetchval(
                    "SELECT pkg_restore_snapshot($1, $2, $3)", snapshot_id, actor, reason
                )
        return done

    async def check_integrity(self) -> dict[str, Any]:
        """``{"ok": bool, "issues": [{check_name, snapshot_id, object_id, detail}]}`` from
        pkg_check_integrity(): cross-snapshot emissions, wasm snapshots without (or with a
        mismatching) artifact, several active snapshots, deployments of archived ones."""
        with db_errors("checking PKG integrity"):
            async with self._db.connection() as conn:
                rows = await conn.fetch("SELECT * FROM pkg_check_integrity()")
        issues = [dict(r) for r in rows]
        for issue in issues:
            log.warning("PKG integrity: %s: %s", issue["check_name"], issue["detail"])
        return {"ok": not issues, "issues": issues}
