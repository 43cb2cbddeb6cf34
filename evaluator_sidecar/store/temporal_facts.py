"""Temporal facts: each environment's versioned fact set (migration 0007).

A fact is a subject-predicate-object statement valid in ``[valid_from,
valid_to)`` (either bound open). Facts that change at run time are *environment
facts*: ``create_temporal_fact`` writes one into an environment's set (the
client's environment unless the fact names another) with its ``fact.created``
audit row, in one transaction; ``expire_temporal_fact`` ends one early and
``delete_temporal_fact`` removes one. Every such change gives the environment a
new facts version (``pkg_facts_versions``, from one sequence, so it only grows)
and sends ``NOTIFY pkg_facts`` with the environment; the operator publishes the
version to Redis and the sidecars load the set (``environment_facts``).

A snapshot's own facts (``spec.facts``) are part of its immutable, checksummed
content: they are written with it (``snapshot_inserts``) and read with it
(``snapshot_reads``). ``create_temporal_fact`` refuses a ``snapshot_id``, and the
database refuses any later change to them (trigger ``pkg_snapshot_facts_frozen``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from evaluator_sidecar.store.audit import append_in
from evaluator_sidecar.store.errors import InvalidInputError, NotFoundError, db_errors
from evaluator_sidecar.store.models import TemporalFact
from evaluator_sidecar.store.pool import Database, json_dumps
from evaluator_sidecar.store.snapshot_rows import check_env, parse_timestamp

__all__ = ["FACTS_CHANNEL", "TemporalFacts"]

#: The NOTIFY channel of migration 0007's trigger; the payload is the environment.
FACTS_CHANNEL = "pkg_facts"

_FACT_COLUMNS = (
    "id, env::text AS env, snapshot_id, subject, predicate, object, valid_from, valid_to, "
    "created_by, created_at"
)


def _window(fact: TemporalFact) -> tuple[datetime | None, datetime | None]:
    try:
        start, end = parse_timestamp(fact.valid_from), parse_timestamp(fact.valid_to)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"fact {fact.subject} {fact.predicate}: {exc}") from exc
    if start is not None and end is not None and end <= start:
        raise InvalidInputError(
            f"fact {fact.subject} {fact.predicate}: valid_to ({end}) must be later than "
            f"valid_from ({start})"
        )
    return start, end


class TemporalFacts:
    """The temporal-fact methods of ``PKGSnapshotsDAO``."""

    _db: Database
    _env: str

    async def create_temporal_fact(self, fact: TemporalFact) -> int:
        """Add ``fact`` to its environment's fact set (``fact.env``, else the client's);
        its id. The environment's facts version grows and its sidecars load the set."""
        if not fact.subject or not fact.predicate:
            raise InvalidInputError("a fact needs a subject and a predicate (non-empty text)")
        if fact.snapshot_id is not None:
            raise InvalidInputError(
                f"fact {fact.subject} {fact.predicate}: snapshot {fact.snapshot_id} is immutable "
                "and its facts are part of its content; leave snapshot_id unset to add an "
                "environment fact, or store a new snapshot version with the fact in spec.facts"
            )
        env = check_env(fact.env or self._env)
        start, end = _window(fact)
        with db_errors(f"storing fact {fact.subject} {fact.predicate}"):
            async with self._db.transaction() as conn:
                fact_id: int = await conn.fetchval(
                    "INSERT INTO pkg_facts (env, subject, predicate, object, valid_from, "
                    "valid_to, created_by) VALUES ($1::pkg_env, $2, $3, $4::text::jsonb, $5, $6, "
                    "$7) RETURNING id",
                    env,
                    fact.subject,
                    fact.predicate,
                    json_dumps(fact.object),
                    start,
                    end,
                    fact.created_by,
                )
                version = await conn.fetchval("SELECT pkg_facts_version($1::pkg_env)", env)
                await append_in(
                    conn,
                    "fact.created",
                    actor=fact.created_by or "pkg-client",
                    entity_type="fact",
                    entity_id=fact_id,
                    details={
                        "env": env,
                        "facts_version": version,
                        "subject": fact.subject,
                        "predicate": fact.predicate,
                        "valid_from": start.isoformat() if start else None,
                        "valid_to": end.isoformat() if end else None,
                    },
                )
        return fact_id

    async def expire_temporal_fact(
        self, fact_id: int, *, at: datetime | None = None, actor: str = "pkg-client"
    ) -> int:
        """End environment fact ``fact_id`` at ``at`` (default now); the new facts version."""
        return await self._change_fact(fact_id, "fact.expired", actor, expire_at=at)

    async def delete_temporal_fact(self, fact_id: int, *, actor: str = "pkg-client") -> int:
        """Remove environment fact ``fact_id``; the new facts version."""
        return await self._change_fact(fact_id, "fact.deleted", actor)

    async def _change_fact(
        self, fact_id: int, action: str, actor: str, *, expire_at: datetime | None = None
    ) -> int:
        with db_errors(f"changing fact {fact_id}"):
            async with self._db.transaction() as conn:
                row = await conn.fetchrow(
                    "SELECT env::text AS env, snapshot_id, valid_from FROM pkg_facts "
                    "WHERE id = $1 FOR UPDATE",
                    fact_id,
                )
                if row is None:
                    raise NotFoundError(f"no fact with id {fact_id}")
                if row["snapshot_id"] is not None:
                    raise InvalidInputError(
                        f"fact {fact_id} belongs to snapshot {row['snapshot_id']}, which is "
                        "immutable; store a new snapshot version without it"
                    )
                if action == "fact.deleted":
                    await conn.execute("DELETE FROM pkg_facts WHERE id = $1", fact_id)
                else:
                    # An end before the start would leave an empty window: end it at its start.
                    await conn.execute(
                        "UPDATE pkg_facts SET valid_to = greatest(coalesce($2, now()), "
                        "valid_from + interval '1 microsecond') WHERE id = $1",
                        fact_id,
                        expire_at,
                    )
                env = row["env"] or self._env
                version = int(await conn.fetchval("SELECT pkg_facts_version($1::pkg_env)", env))
                await append_in(
                    conn,
                    action,
                    actor=actor,
                    entity_type="fact",
                    entity_id=fact_id,
                    details={"env": row["env"], "facts_version": version},
                )
        return version

    async def facts_version(self, env: str | None = None) -> int:
        """The version of ``env``'s fact set (default the client's; 0 before any change)."""
        with db_errors("reading the facts version"):
            async with self._db.connection() as conn:
                value = await conn.fetchval(
                    "SELECT pkg_facts_version($1::pkg_env)", check_env(env or self._env)
                )
        return int(value)

    async def facts_versions(self) -> dict[str, int]:
        """Every environment's facts version, by environment."""
        with db_errors("reading the facts versions"):
            async with self._db.connection() as conn:
                rows = await conn.fetch("SELECT env::text AS env, version FROM pkg_facts_versions")
        return {str(r["env"]): int(r["version"]) for r in rows}

    async def environment_facts(self, env: str | None = None) -> dict[str, Any]:
        """``{"env", "version", "facts"}``: ``env``'s whole fact set and its version, read in
        one consistent snapshot. Expired and future facts are included: sidecars judge
        validity at evaluation time, so a fact that expires needs no new version."""
        env = check_env(env or self._env)
        with db_errors(f"reading the facts of {env}"):
            async with self._db.transaction(readonly=True, isolation="repeatable_read") as conn:
                version = await conn.fetchval("SELECT pkg_facts_version($1::pkg_env)", env)
                rows = await conn.fetch(
                    "SELECT id, subject, predicate, object, valid_from, valid_to FROM pkg_facts "
                    "WHERE snapshot_id IS NULL AND (env = $1::pkg_env OR env IS NULL) "
                    "AND (valid_to IS NULL OR valid_to > now()) ORDER BY id",
                    env,
                )
        return {"env": env, "version": int(version), "facts": [dict(r) for r in rows]}

    async def get_temporal_facts(
        self,
        subject: str | None = None,
        predicate: str | None = None,
        *,
        snapshot_id: int | None = None,
        env: str | None = None,
        valid_at: datetime | None = None,
        include_invalid: bool = False,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Facts valid at ``valid_at`` (default now: valid_from <= t < valid_to, open
        bounds), filtered by subject, predicate, snapshot and environment (None: any;
        an environment also matches facts for every environment). ``include_invalid``
        also returns expired and future ones."""
        with db_errors("reading temporal facts"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    f"SELECT {_FACT_COLUMNS} FROM pkg_facts "
                    "WHERE ($1::text IS NULL OR subject = $1) "
                    "AND ($2::text IS NULL OR predicate = $2) "
                    "AND ($3::bigint IS NULL OR snapshot_id = $3) "
                    "AND ($7::text IS NULL OR (snapshot_id IS NULL "
                    "AND (env IS NULL OR env::text = $7))) "
                    "AND ($4 OR ((valid_from IS NULL OR valid_from <= coalesce($5, now())) "
                    "AND (valid_to IS NULL OR coalesce($5, now()) < valid_to))) "
                    "ORDER BY subject, predicate, id LIMIT $6",
                    subject,
                    predicate,
                    snapshot_id,
                    include_invalid,
                    valid_at,
                    limit,
                    env,
                )
        return [dict(r) for r in rows]
