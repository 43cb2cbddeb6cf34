"""Temporal facts: subject-predicate-object statements valid within a time range.

A fact is global or belongs to one snapshot's store; ``create_temporal_fact``
writes it with its ``fact.created`` audit row in one transaction, and
``get_temporal_facts`` returns the facts valid at a moment (by default now:
``valid_from <= t < valid_to``, either bound open). A snapshot's own facts are
stored with it (``snapshot_inserts``) and read with it (``snapshot_reads``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from evaluator_sidecar.store.audit import append_in
from evaluator_sidecar.store.errors import InvalidInputError, db_errors
from evaluator_sidecar.store.models import TemporalFact
from evaluator_sidecar.store.pool import Database, json_dumps
from evaluator_sidecar.store.snapshot_rows import parse_timestamp

__all__ = ["TemporalFacts"]


class TemporalFacts:
    """The temporal-fact methods of ``PKGSnapshotsDAO``."""

    _db: Database

    async def create_temporal_fact(self, fact: TemporalFact) -> int:
        """Store a temporal fact (global, or in ``fact.snapshot_id``'s store); its id."""
        if not fact.subject or not fact.predicate:
            raise InvalidInputError("a fact needs a subject and a predicate (non-empty text)")
        try:
            start, end = parse_timestamp(fact.valid_from), parse_timestamp(fact.valid_to)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"fact {fact.subject} {fact.predicate}: {exc}") from exc
        if start is not None and end is not None and end <= start:
            raise InvalidInputError(
                f"fact {fact.subject} {fact.predicate}: valid_to ({end}) must be later than "
                f"valid_from ({start})"
            )
        with db_errors(f"storing fact {fact.subject} {fact.predicate}"):
            async with self._db.transaction() as conn:
                fact_id: int = await conn.fetchval(
                    "INSERT INTO pkg_facts (snapshot_id, subject, predicate, object, valid_from, "
                    "valid_to, created_by) VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7) "
                    "RETURNING id",
                    fact.snapshot_id,
                    fact.subject,
                    fact.predicate,
                    json_dumps(fact.object),
                    start,
                    end,
                    fact.created_by,
                )
                await append_in(
                    conn,
                    "fact.created",
                    actor=fact.created_by or "pkg-client",
                    entity_type="fact",
                    entity_id=fact_id,
                    snapshot_id=fact.snapshot_id,
                    details={
                        "subject": fact.subject,
                        "predicate": fact.predicate,
                        "valid_from": start.isoformat() if start else None,
                        "valid_to": end.isoformat() if end else None,
                    },
                )
        return fact_id

    async def get_temporal_facts(
        self,
        subject: str | None = None,
        predicate: str | None = None,
        *,
        snapshot_id: int | None = None,
        valid_at: datetime | None = None,
        include_invalid: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Facts valid at ``valid_at`` (default now: valid_from <= t < valid_to, open
        bounds), filtered by subject, predicate and snapshot (None: global facts and
        every snapshot's). ``include_invalid`` also returns expired and future ones."""
        with db_errors("reading temporal facts"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT id, snapshot_id, subject, predicate, object, valid_from, valid_to, "
                    "created_by, created_at FROM pkg_facts "
                    "WHERE ($1::text IS NULL OR subject = $1) "
                    "AND ($2::text IS NULL OR predicate = $2) "
                    "AND ($3::bigint IS NULL OR snapshot_id = $3) "
                    "AND ($4 OR ((valid_from IS NULL OR valid_from <= coalesce($5, now())) "
                    "AND (valid_to IS NULL OR coalesce($5, now()) < valid_to))) "
                    "ORDER BY subject, predicate, id LIMIT $6",
                    subject,
                    predicate,
                    snapshot_id,
                    include_invalid,
                    valid_at,
                    limit,
                )
        return [dict(r) for r in rows]
