"""PKGAuditDAO: the tamper-evident audit log (append, read, verify).

Every write the client makes that changes governance state appends its audit
row in the same transaction, through :func:`append_in`, always as the last
statement, because the chain's head row stays locked until commit. The
operator appends its own events with ``append_audit`` (action names:
``evaluator_sidecar.store.models.AUDIT_ACTIONS`` lists the client's own).
``verify_audit_chain`` recomputes every hash in Python (it does not trust
the database's functions) and reports the first broken link.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import asyncpg

from evaluator_sidecar.store.audit_chain import (
    ACTION_PATTERN,
    AuditChainReport,
    AuditRow,
    ChainWalker,
)
from evaluator_sidecar.store.errors import IdempotencyConflictError, InvalidInputError, db_errors
from evaluator_sidecar.store.idempotency import write_keyed
from evaluator_sidecar.store.pool import Connection, Database

__all__ = ["PKGAuditDAO", "append_in", "check_action", "existing_key"]


def check_action(action: str) -> str:
    """``action`` if it is a dotted lowercase name, else InvalidInputError saying the form."""
    if not isinstance(action, str) or not ACTION_PATTERN.match(action):
        raise InvalidInputError(
            f"audit action {action!r} is not a dotted lowercase name: use e.g. 'rollout.paused' "
            "(letters, digits, underscores; at least two parts)"
        )
    return action


async def append_in(
    conn: Connection,
    action: str,
    *,
    actor: str,
    entity_type: str,
    entity_id: str | int,
    details: Mapping[str, Any] | None = None,
    snapshot_id: int | None = None,
    idempotency_key: str | None = None,
) -> int:
    """Append one audit row inside the caller's transaction; its id."""
    row_id: int = await conn.fetchval(
        "SELECT pkg_audit_append($1, $2, $3, $4, $5, $6, $7)",
        check_action(action),
        actor,
        entity_type,
        str(entity_id),
        dict(details or {}),
        snapshot_id,
        idempotency_key,
    )
    return row_id


async def existing_key(
    conn: Connection, idempotency_key: str, *, action_prefix: str, entity_type: str
) -> asyncpg.Record | None:
    """The audit row that already used ``idempotency_key``, checked to be the same kind of request.

    Raises IdempotencyConflictError when the key was used for something else.
    """
    row = await conn.fetchrow(
        "SELECT id, action, entity_type, entity_id, details FROM pkg_audit_log "
        "WHERE idempotency_key = $1",
        idempotency_key,
    )
    if row is not None and (
        row["entity_type"] != entity_type or not row["action"].startswith(action_prefix)
    ):
        raise IdempotencyConflictError(
            f"idempotency key {idempotency_key!r} was already used for {row['action']} of "
            f"{row['entity_type']} {row['entity_id']} (audit row {row['id']}): use a new key "
            "for a different request"
        )
    return row


class PKGAuditDAO:
    """The audit log: operator events in, history out, chain verification."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append_audit(
        self,
        action: str,
        *,
        actor: str,
        entity_type: str,
        entity_id: str | int,
        details: Mapping[str, Any] | None = None,
        snapshot_id: int | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Append an event (e.g. ``rollout.step_started``); the row's id.

        With ``idempotency_key``, a retry returns the first row's id and writes
        nothing; the same key for another action or entity raises
        IdempotencyConflictError.
        """
        check_action(action)
        with db_errors(f"appending audit event {action}"):
            return await write_keyed(
                self._db,
                partial(
                    self._append_once,
                    action=action,
                    actor=actor,
                    entity_type=entity_type,
                    entity_id=str(entity_id),
                    details=details,
                    snapshot_id=snapshot_id,
                    idempotency_key=idempotency_key,
                ),
                idempotency_key=idempotency_key,
            )

    async def _append_once(
        self,
        conn: Connection,
        action: str,
        *,
        actor: str,
        entity_type: str,
        entity_id: str,
        details: Mapping[str, Any] | None,
        snapshot_id: int | None,
        idempotency_key: str | None,
    ) -> int:
        if idempotency_key is not None:
            row = await existing_key(
                conn, idempotency_key, action_prefix=action, entity_type=entity_type
            )
            if row is not None:
                if row["entity_id"] != entity_id:
                    raise IdempotencyConflictError(
                        f"idempotency key {idempotency_key!r} was used for {entity_type} "
                        f"{row['entity_id']}, not {entity_id}: use a new key for a "
                        "different request"
                    )
                return int(row["id"])
        return await append_in(
            conn,
            action,
            actor=actor,
            entity_type=entity_type,
            entity_id=entity_id,
            details=details,
            snapshot_id=snapshot_id,
            idempotency_key=idempotency_key,
        )

    async def get_audit_log(
        self,
        *,
        entity_type: str | None = None,
        entity_id: str | int | None = None,
        snapshot_id: int | None = None,
        action: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit rows in chain order (oldest first) after ``after_id``, filtered."""
        with db_errors("reading the audit log"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT id, created_at, action, actor, entity_type, entity_id, snapshot_id, "
                    "details, idempotency_key, prev_hash, hash FROM pkg_audit_log "
                    "WHERE id > $1 AND ($2::text IS NULL OR entity_type = $2) "
                    "AND ($3::text IS NULL OR entity_id = $3) "
                    "AND ($4::bigint IS NULL OR snapshot_id = $4) "
                    "AND ($5::text IS NULL OR action = $5) ORDER BY id LIMIT $6",
                    after_id,
                    entity_type,
                    None if entity_id is None else str(entity_id),
                    snapshot_id,
                    action,
                    limit,
                )
        return [dict(r) for r in rows]

    async def verify_audit_chain(self, *, page_size: int = 5000) -> AuditChainReport:
        """Recompute the chain up to its head; report the first broken link, if any.

        Reads in pages (keyset on id), each page its own short query. Rows
        appended while it runs are beyond the head it read and not checked.
        """
        walker = ChainWalker()
        with db_errors("verifying the audit chain"):
            async with self._db.connection() as conn:
                head = await conn.fetchrow(
                    "SELECT last_id, last_hash FROM pkg_audit_head WHERE singleton"
                )
                if head is None:
                    return walker.finish(0, "<no head row>")
                last_id = 0
                while True:
                    rows = await conn.fetch(
                        "SELECT id, created_at, action, actor, entity_type, entity_id, "
                        "snapshot_id, details::text AS details_text, idempotency_key, prev_hash, "
                        "hash FROM pkg_audit_log WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
                        last_id,
                        head["last_id"],
                        page_size,
                    )
                    if not rows:
                        break
                    if not walker.feed(AuditRow(**dict(r)) for r in rows):
                        break
                    last_id = rows[-1]["id"]
        return walker.finish(head["last_id"], head["last_hash"])
