"""PKGValidationDAO: a snapshot's fixtures and its validation runs.

A run is opened (``create_validation_run``), the fixtures are evaluated
outside any transaction, and the run is closed (``finish_validation_run``)
with its report. Both ends append an audit row; the finishing row carries the
sha256 of the stored report, so a report edited afterwards no longer matches
its audit trail. Promotion requires the latest run of a snapshot to have
succeeded (checked by ``pkg_promote_snapshot``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from evaluator_sidecar.store.audit import append_in
from evaluator_sidecar.store.errors import ConflictError, NotFoundError, db_errors
from evaluator_sidecar.store.pool import Database, json_dumps

__all__ = ["PKGValidationDAO"]


class PKGValidationDAO:
    """Fixtures and validation runs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_validation_fixtures(self, snapshot_id: int) -> list[dict[str, Any]]:
        """``[{"id", "name", "input", "expect"}]`` in the snapshot's order."""
        with db_errors(f"reading the fixtures of snapshot {snapshot_id}"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT id, name, input, expect FROM pkg_validation_fixtures "
                    "WHERE snapshot_id = $1 ORDER BY position, id",
                    snapshot_id,
                )
        return [dict(r) for r in rows]

    async def create_validation_run(
        self,
        snapshot_id: int,
        started_at: datetime | None = None,
        *,
        actor: str = "pkg-client",
    ) -> int:
        """Open a run for ``snapshot_id``; its id. NotFoundError for an unknown snapshot."""
        with db_errors(f"starting a validation run of snapshot {snapshot_id}"):
            async with self._db.transaction() as conn:
                run_id: int = await conn.fetchval(
                    "INSERT INTO pkg_validation_runs (snapshot_id, started_at, actor) "
                    "VALUES ($1, coalesce($2, now()), $3) RETURNING id",
                    snapshot_id,
                    started_at,
                    actor,
                )
                await append_in(
                    conn,
                    "validation.started",
                    actor=actor,
                    entity_type="validation_run",
                    entity_id=run_id,
                    snapshot_id=snapshot_id,
                    details={"run_id": run_id},
                )
        return run_id

    async def finish_validation_run(
        self,
        run_id: int,
        success: bool,
        report: Mapping[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> None:
        """Close a run with its outcome and report.

        Finishing a finished run again with the same outcome does nothing (a
        retry); with another outcome it raises ConflictError.
        """
        with db_errors(f"finishing validation run {run_id}"):
            async with self._db.transaction() as conn:
                run = await conn.fetchrow(
                    "SELECT snapshot_id, success, actor FROM pkg_validation_runs "
                    "WHERE id = $1 FOR UPDATE",
                    run_id,
                )
                if run is None:
                    raise NotFoundError(
                        f"validation run {run_id} does not exist: open one with "
                        "create_validation_run first"
                    )
                if run["success"] is not None:
                    if run["success"] == success:
                        return
                    raise ConflictError(
                        f"validation run {run_id} already finished with success={run['success']}; "
                        "a finished run is final: open a new run to validate again"
                    )
                stored_report = dict(report or {})
                report_text: str = await conn.fetchval(
                    "UPDATE pkg_validation_runs SET finished_at = greatest(now(), started_at), "
                    "success = $2, report = $3::text::jsonb WHERE id = $1 RETURNING report::text",
                    run_id,
                    success,
                    json_dumps(stored_report),
                )
                await append_in(
                    conn,
                    "validation.finished",
                    actor=actor or run["actor"] or "pkg-client",
                    entity_type="validation_run",
                    entity_id=run_id,
                    snapshot_id=run["snapshot_id"],
                    details={
                        "run_id": run_id,
                        "success": success,
                        "passed": stored_report.get("passed"),
                        "failed": stored_report.get("failed"),
                        # Of PostgreSQL's rendering of the stored jsonb, so anyone can recheck it.
                        "report_sha256": hashlib.sha256(report_text.encode("utf-8")).hexdigest(),
                    },
                )

    async def get_validation_runs(
        self, snapshot_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Runs, newest first: id, snapshot_id, version, started_at, finished_at, success,
        report, actor."""
        with db_errors("reading validation runs"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT r.id, r.snapshot_id, s.version, r.started_at, r.finished_at, "
                    "r.success, r.report, r.actor FROM pkg_validation_runs r "
                    "JOIN pkg_snapshots s ON s.id = r.snapshot_id "
                    "WHERE ($1::bigint IS NULL OR r.snapshot_id = $1) "
                    "ORDER BY r.started_at DESC, r.id DESC LIMIT $2",
                    snapshot_id,
                    limit,
                )
        return [dict(r) for r in rows]
