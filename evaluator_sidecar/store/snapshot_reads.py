"""Reading snapshots: whole ones assembled for the evaluator, their rows, their artifacts.

A whole snapshot comes back as a ``PKGSnapshotData`` in the evaluator's rule form
(rules -> conditions -> emissions, each emission with its subtask type's
``default_params``), with the WASM bytes, static data, entrypoint, the snapshot's
own facts and its fixtures, all from one read-only repeatable-read transaction,
so its parts cannot come from two states of the database. Before it is returned,
its rows are verified against the ``content_sha256`` recorded when it was stored
(``snapshot_verify.verify_stored_rows``): rows changed in PostgreSQL since raise
ChecksumMismatchError instead of reaching an evaluator. The other reads return
a snapshot's row without its content, or the active artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.store.errors import InvalidInputError, db_errors
from evaluator_sidecar.store.models import SnapshotSummary
from evaluator_sidecar.store.pool import Connection, Database
from evaluator_sidecar.store.snapshot_assembly import assemble_rules, fact_to_dict
from evaluator_sidecar.store.snapshot_rows import check_env
from evaluator_sidecar.store.snapshot_verify import verify_stored_rows


def _signature_of(metadata: Any) -> dict[str, Any] | None:
    """The snapshot's ``spec.signature``, kept in ``pkg_snapshots.metadata.signature``."""
    signature = metadata.get("signature") if isinstance(metadata, Mapping) else None
    return dict(signature) if isinstance(signature, Mapping) else None


__all__ = ["SnapshotReads"]

_SNAPSHOT_BY_ID = """
SELECT s.*, a.artifact_bytes
  FROM pkg_snapshots s
  LEFT JOIN pkg_snapshot_artifacts a ON a.snapshot_id = s.id AND a.artifact_type = 'wasm_pack'
 WHERE s.id = $1 AND ($2 OR s.archived_at IS NULL)
"""
_SNAPSHOT_BY_VERSION = """
SELECT s.*, a.artifact_bytes
  FROM pkg_snapshots s
  LEFT JOIN pkg_snapshot_artifacts a ON a.snapshot_id = s.id AND a.artifact_type = 'wasm_pack'
 WHERE s.version = $1 AND ($2 OR s.archived_at IS NULL)
"""
_ACTIVE_SNAPSHOT = """
SELECT s.*, a.artifact_bytes
  FROM pkg_snapshots s
  LEFT JOIN pkg_snapshot_artifacts a ON a.snapshot_id = s.id AND a.artifact_type = 'wasm_pack'
 WHERE s.env = $1::pkg_env AND s.is_active
"""
_RULES = """
SELECT id, rule_id, rule_name, priority, disabled, rule_source
  FROM pkg_policy_rules WHERE snapshot_id = $1 ORDER BY position, rule_id
"""
_CONDITIONS = """
SELECT c.id, c.rule_id AS rule, c.condition_type::text AS condition_type, c.condition_key,
       c.operator::text AS operator, c.value, c.position
  FROM pkg_rule_conditions c JOIN pkg_policy_rules r ON r.id = c.rule_id
 WHERE r.snapshot_id = $1 ORDER BY c.rule_id, c.position, c.id
"""
_EMISSIONS = """
SELECT e.id, e.rule_id AS rule, st.name AS subtask_type, e.subtask_name,
       e.relationship_type::text AS relationship_type, e.params, e.default_params, e.position
  FROM pkg_rule_emissions e
  JOIN pkg_policy_rules r ON r.id = e.rule_id
  JOIN pkg_subtask_types st ON st.id = e.subtask_type_id
 WHERE r.snapshot_id = $1 ORDER BY e.rule_id, e.position, e.id
"""
_SUBTASK_TYPES = """
SELECT name, default_params, declared FROM pkg_subtask_types
 WHERE snapshot_id = $1 ORDER BY position, name
"""
_FACTS = """
SELECT subject, predicate, object, valid_from, valid_to, created_at FROM pkg_facts
 WHERE snapshot_id = $1 ORDER BY position, id
"""
_FIXTURES = """
SELECT name, input, expect FROM pkg_validation_fixtures
 WHERE snapshot_id = $1 ORDER BY position, id
"""
_INFO_COLUMNS = """
s.id, s.version, s.env::text AS env, s.engine::text AS engine, s.checksum, s.content_sha256,
s.is_active, s.uid, s.resource_namespace, s.resource_name, s.entrypoint, s.notes, s.metadata,
s.created_at, s.activated_at, s.archived_at
"""


class SnapshotReads:
    """The reads of ``PKGSnapshotsDAO``: whole snapshots, snapshot rows, the active artifact."""

    _db: Database
    #: The environment whose active snapshot ``get_active_snapshot`` returns by default.
    _env: str

    async def _assemble(self, conn: Connection, row: asyncpg.Record) -> PKGSnapshotData:
        snapshot_id = row["id"]
        rules = await conn.fetch(_RULES, snapshot_id)
        conditions = await conn.fetch(_CONDITIONS, snapshot_id) if rules else []
        emissions = await conn.fetch(_EMISSIONS, snapshot_id) if rules else []
        types = await conn.fetch(_SUBTASK_TYPES, snapshot_id)
        facts = await conn.fetch(_FACTS, snapshot_id)
        fixtures = await conn.fetch(_FIXTURES, snapshot_id)
        artifact = bytes(row["artifact_bytes"]) if row["artifact_bytes"] is not None else None
        # Before anyone compiles it: the rows must be what was stored.
        verify_stored_rows(
            row,
            rules=rules,
            conditions=conditions,
            emissions=emissions,
            subtask_types=types,
            facts=facts,
            fixtures=fixtures,
            artifact=artifact,
        )
        return PKGSnapshotData(
            id=snapshot_id,
            version=row["version"],
            engine=row["engine"],
            wasm_artifact=artifact,
            checksum=row["checksum"],
            rules=assemble_rules(rules, conditions, emissions, types),
            env=row["env"],
            subtask_types=[
                {"name": t["name"], "default_params": t["default_params"]}
                for t in types
                if t["declared"]
            ],
            data=dict(row["data"]),
            facts=[fact_to_dict(f) for f in facts],
            fixtures=[
                {"name": f["name"], "input": f["input"], "expect": f["expect"]} for f in fixtures
            ],
            entrypoint=row["entrypoint"],
            signature=_signature_of(row["metadata"]),
        )

    async def _load(self, query: str, *args: Any) -> PKGSnapshotData | None:
        # One read-only snapshot of the database: the parts cannot come from two states.
        async with self._db.transaction(readonly=True, isolation="repeatable_read") as conn:
            row = await conn.fetchrow(query, *args)
            if row is None:
                return None
            return await self._assemble(conn, row)

    async def get_active_snapshot(self, env: str | None = None) -> PKGSnapshotData | None:
        """The active snapshot of ``env`` (default: the client's), or None when there is none."""
        target = check_env(env or self._env)
        with db_errors(f"reading the active snapshot of {target}"):
            return await self._load(_ACTIVE_SNAPSHOT, target)

    async def get_active_snapshot_summary(self, env: str | None = None) -> SnapshotSummary | None:
        """Id, version and checksum of ``env``'s active snapshot (default: the client's),
        without reading its content; None when there is none."""
        target = check_env(env or self._env)
        with db_errors(f"reading the active snapshot of {target}"):
            async with self._db.connection() as conn:
                row = await conn.fetchrow(
                    "SELECT id, version, env::text AS env, checksum FROM pkg_snapshots "
                    "WHERE env = $1::pkg_env AND is_active",
                    target,
                )
        return None if row is None else SnapshotSummary(**dict(row))

    async def get_snapshot_by_version(
        self, version: str, *, include_archived: bool = False
    ) -> PKGSnapshotData | None:
        """The snapshot stored as ``version`` (``rules@1.4.0``), or None."""
        with db_errors(f"reading snapshot {version!r}"):
            return await self._load(_SNAPSHOT_BY_VERSION, version, include_archived)

    async def get_snapshot_by_id(
        self, snapshot_id: int, *, include_archived: bool = False
    ) -> PKGSnapshotData | None:
        """The snapshot with id ``snapshot_id``, or None."""
        with db_errors(f"reading snapshot {snapshot_id}"):
            return await self._load(_SNAPSHOT_BY_ID, snapshot_id, include_archived)

    async def get_snapshot_info(
        self,
        *,
        snapshot_id: int | None = None,
        version: str | None = None,
        resource_uid: str | None = None,
        include_archived: bool = True,
    ) -> dict[str, Any] | None:
        """The snapshot's row without its content (id, version, env, engine, checksum,
        is_active, uid, resource_namespace, resource_name, created/activated/archived_at),
        found by id, version or resource uid."""
        if snapshot_id is None and version is None and resource_uid is None:
            raise InvalidInputError("name the snapshot: give snapshot_id, version or resource_uid")
        with db_errors("reading snapshot metadata"):
            async with self._db.connection() as conn:
                row = await conn.fetchrow(
                    f"SELECT {_INFO_COLUMNS} FROM pkg_snapshots s "
                    "WHERE ($1::bigint IS NULL OR s.id = $1) "
                    "AND ($2::text IS NULL OR s.version = $2) "
                    "AND ($3::text IS NULL OR s.uid = $3) "
                    "AND ($4 OR s.archived_at IS NULL)",
                    snapshot_id,
                    version,
                    resource_uid,
                    include_archived,
                )
        return dict(row) if row is not None else None

    async def snapshot_resource(self, version: str) -> tuple[str, str] | None:
        """(namespace, name) of the PolicySnapshot that stored ``version``, or None."""
        info = await self.get_snapshot_info(version=version)
        if info is None or info["resource_name"] is None:
            return None
        return (info["resource_namespace"] or "", info["resource_name"])

    async def list_snapshots(
        self, env: str | None = None, *, include_archived: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Snapshots' rows (newest first), of one environment or all."""
        with db_errors("listing snapshots"):
            async with self._db.connection() as conn:
                rows = await conn.fetch(
                    f"SELECT {_INFO_COLUMNS} FROM pkg_snapshots s "
                    "WHERE ($1::pkg_env IS NULL OR s.env = $1::pkg_env) "
                    "AND ($2 OR s.archived_at IS NULL) "
                    "ORDER BY s.created_at DESC, s.id DESC LIMIT $3",
                    None if env is None else check_env(env),
                    include_archived,
                    limit,
                )
        return [dict(r) for r in rows]

    async def get_active_artifact(self, env: str = "prod") -> dict[str, Any] | None:
        """The active snapshot's artifact in ``env``: the pkg_active_artifact view's columns
        (env, snapshot_id, version, engine, checksum, artifact_type, size_bytes, sha256,
        created_at) plus ``artifact_bytes``; None when the active snapshot has none."""
        check_env(env)
        with db_errors(f"reading the active artifact of {env}"):
            async with self._db.connection() as conn:
                row = await conn.fetchrow(
                    "SELECT v.env::text AS env, v.snapshot_id, v.version, "
                    "v.engine::text AS engine, v.checksum, v.artifact_type::text AS artifact_type, "
                    "v.size_bytes, v.sha256, v.created_at, a.artifact_bytes "
                    "FROM pkg_active_artifact v JOIN pkg_snapshot_artifacts a "
                    "ON a.snapshot_id = v.snapshot_id AND a.artifact_type = v.artifact_type "
                    "WHERE v.env = $1::pkg_env "
                    "ORDER BY v.artifact_type = 'wasm_pack' DESC LIMIT 1",
                    env,
                )
        return dict(row) if row is not None else None
