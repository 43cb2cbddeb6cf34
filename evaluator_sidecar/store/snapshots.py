"""PKGSnapshotsDAO: snapshots in and out, their artifacts, temporal facts, soft delete, integrity.

Reading assembles a ``PKGSnapshotData`` in the evaluator's rule form (rules ->
conditions -> emissions, each emission with its subtask type's
``default_params``), with the WASM bytes, static data, entrypoint, the
snapshot's own facts and its fixtures, from one consistent read-only
transaction. Writing stores a whole snapshot in one transaction, idempotently:
the same content under the same version (or resource uid) returns the stored
id and writes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.store.audit import append_in
from evaluator_sidecar.store.errors import (
    ConflictError,
    InvalidInputError,
    VersionOwnedError,
    db_errors,
)
from evaluator_sidecar.store.models import TemporalFact
from evaluator_sidecar.store.pool import Connection, Database, json_dumps
from evaluator_sidecar.store.snapshot_rows import (
    ENVS,
    SnapshotContent,
    assemble_rules,
    fact_to_dict,
    parse_timestamp,
    prepare_snapshot,
)

__all__ = ["PKGSnapshotsDAO"]

log = logging.getLogger(__name__)

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
SELECT c.rule_id AS rule, c.condition_type::text AS condition_type, c.condition_key,
       c.operator::text AS operator, c.value, c.position
  FROM pkg_rule_conditions c JOIN pkg_policy_rules r ON r.id = c.rule_id
 WHERE r.snapshot_id = $1 ORDER BY c.rule_id, c.position, c.id
"""
_EMISSIONS = """
SELECT e.rule_id AS rule, st.name AS subtask_type, e.subtask_name,
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
SELECT subject, predicate, object, valid_from, valid_to FROM pkg_facts
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


@dataclass(frozen=True)
class _Source:
    """The PolicySnapshot resource a snapshot came from (all None when it came otherwise)."""

    uid: str | None
    namespace: str | None
    name: str | None


def _check_env(env: str) -> str:
    if env not in ENVS:
        raise InvalidInputError(f"environment {env!r} is not one of {', '.join(ENVS)}")
    return env


def _signature_of(metadata: Any) -> dict[str, Any] | None:
    """The snapshot's ``spec.signature``, kept in ``pkg_snapshots.metadata.signature``."""
    signature = metadata.get("signature") if isinstance(metadata, Mapping) else None
    return dict(signature) if isinstance(signature, Mapping) else None


#: The keys of ``metadata`` that the ``snapshot.stored`` audit row repeats.
_AUDITED_METADATA = ("signature", "signature_verification")


class PKGSnapshotsDAO:
    """Snapshots, their content and artifacts, temporal facts, archive and integrity checks."""

    def __init__(self, db: Database, env: str = "prod") -> None:
        self._db = db
        self._env = _check_env(env)

    # -- reading ----------------------------------------------------------------------------

    async def _assemble(self, conn: Connection, row: asyncpg.Record) -> PKGSnapshotData:
        snapshot_id = row["id"]
        rules = await conn.fetch(_RULES, snapshot_id)
        conditions = await conn.fetch(_CONDITIONS, snapshot_id) if rules else []
        emissions = await conn.fetch(_EMISSIONS, snapshot_id) if rules else []
        types = await conn.fetch(_SUBTASK_TYPES, snapshot_id)
        facts = await conn.fetch(_FACTS, snapshot_id)
        fixtures = await conn.fetch(_FIXTURES, snapshot_id)
        return PKGSnapshotData(
            id=snapshot_id,
            version=row["version"],
            engine=row["engine"],
            wasm_artifact=bytes(row["artifact_bytes"])
            if row["artifact_bytes"] is not None
            else None,
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
        target = _check_env(env or self._env)
        with db_errors(f"reading the active snapshot of {target}"):
            return await self._load(_ACTIVE_SNAPSHOT, target)

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
        target = _check_env(env or self._env)
        with db_errors(f"comparing snapshot {snapshot_id} with newer ones"):
            async with self._db.connection() as conn:
                found: bool = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pkg_snapshots WHERE env = $2::pkg_env "
                    "AND id > $1 AND activated_at IS NOT NULL)",
                    snapshot_id,
                    target,
                )
        return found

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
                    None if env is None else _check_env(env),
                    include_archived,
                    limit,
                )
        return [dict(r) for r in rows]

    async def get_active_artifact(self, env: str = "prod") -> dict[str, Any] | None:
        """The active snapshot's artifact in ``env``: the pkg_active_artifact view's columns
        (env, snapshot_id, version, engine, checksum, artifact_type, size_bytes, sha256,
        created_at) plus ``artifact_bytes``; None when the active snapshot has none."""
        _check_env(env)
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

    # -- storing ----------------------------------------------------------------------------

    async def store_snapshot(
        self,
        snapshot: PKGSnapshotData | None = None,
        *,
        version: str | None = None,
        env: str | None = None,
        engine: str | None = None,
        checksum: str | None = None,
        rules: Sequence[Mapping[str, Any]] | None = None,
        subtask_types: Sequence[Mapping[str, Any]] | None = None,
        facts: Sequence[Mapping[str, Any]] | None = None,
        fixtures: Sequence[Mapping[str, Any]] | None = None,
        data: Mapping[str, Any] | None = None,
        wasm_artifact: bytes | None = None,
        entrypoint: str | None = None,
        resource_uid: str | None = None,
        resource_namespace: str | None = None,
        resource_name: str | None = None,
        notes: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: str = "pkg-client",
        reclaim_from: str | None = None,
    ) -> int:
        """Store a snapshot with its rules, conditions, emissions, subtask types, facts,
        fixtures and artifact in one transaction; its id. Idempotent.

        Give either ``snapshot`` (a ``PKGSnapshotData``, e.g. from
        ``resource.snapshot_from_resource``) or the parts as keywords. ``checksum`` is the
        content checksum (``evaluator_sidecar.policy.resource.content_checksum`` of the spec),
        computed when omitted. Keyed by ``resource_uid`` (the PolicySnapshot's
        ``metadata.uid``) and ``version``: storing identical content again returns the
        stored id and writes nothing; an identical snapshot that was archived is restored.
        A version belongs to one resource: an identical snapshot from another resource uid
        is taken over only when its row was archived (its resource was deleted), stored
        without a uid, or owned by ``reclaim_from`` (a caller that checked that this
        owner no longer exists); otherwise VersionOwnedError names the owner. Raises
        ConflictError when the version holds different content or the uid another
        version, InvalidSnapshotError listing every problem, ChecksumMismatchError when a
        wasm checksum is not the artifact's.
        """
        if snapshot is not None:
            given = [
                name
                for name, value in (
                    ("version", version), ("env", env), ("engine", engine),
                    ("checksum", checksum), ("rules", rules), ("subtask_types", subtask_types),
                    ("facts", facts), ("fixtures", fixtures), ("data", data),
                    ("wasm_artifact", wasm_artifact), ("entrypoint", entrypoint),
                )
                if value is not None
            ]  # fmt: skip
            if given:
                raise InvalidInputError(
                    f"store_snapshot: give a snapshot or its parts, not both (also got "
                    f"{', '.join(given)})"
                )
            version, env, engine = snapshot.version, snapshot.env, snapshot.engine
            checksum, rules, subtask_types = (
                snapshot.checksum,
                snapshot.rules,
                snapshot.subtask_types,
            )
            facts, fixtures, data = snapshot.facts, snapshot.fixtures, snapshot.data
            wasm_artifact, entrypoint = snapshot.wasm_artifact, snapshot.entrypoint
            if snapshot.signature is not None and "signature" not in (metadata or {}):
                metadata = {**(metadata or {}), "signature": snapshot.signature}
        if version is None or env is None or engine is None:
            raise InvalidInputError("store_snapshot needs version, env and engine (or a snapshot)")
        if checksum is None:
            checksum = _content_checksum(
                engine=engine,
                rules=rules,
                subtask_types=subtask_types,
                facts=facts,
                data=data,
                wasm_artifact=wasm_artifact,
            )
        content = prepare_snapshot(
            version=version,
            env=env,
            engine=engine,
            rules=rules,
            subtask_types=subtask_types,
            facts=facts,
            fixtures=fixtures,
            data=data,
            wasm_artifact=wasm_artifact,
            entrypoint=entrypoint,
            checksum=checksum,
        )
        source = _Source(resource_uid, resource_namespace, resource_name)
        with db_errors(f"storing snapshot {version!r}"):
            async with self._db.transaction() as conn:
                # Two stores of one version queue here instead of racing on the unique key.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('pkg_store_snapshot'), hashtext($1))",
                    version,
                )
                existing = await self._existing(conn, content, source, actor, reclaim_from)
                if existing is not None:
                    log.debug("snapshot %s already stored (id %d)", version, existing)
                    return existing
                snapshot_id = await self._insert(conn, content, source, notes, metadata)
                await append_in(
                    conn,
                    "snapshot.stored",
                    actor=actor,
                    entity_type="snapshot",
                    entity_id=snapshot_id,
                    snapshot_id=snapshot_id,
                    details={
                        "version": content.version,
                        "env": content.env,
                        "engine": content.engine,
                        "checksum": content.checksum,
                        "content_sha256": content.content_sha256,
                        "resource_uid": resource_uid,
                        "resource": f"{resource_namespace}/{resource_name}"
                        if resource_name
                        else None,
                        "rules": len(content.rules),
                        "fixtures": len(content.fixtures),
                        **{k: v for k, v in (metadata or {}).items() if k in _AUDITED_METADATA},
                    },
                )
        log.info("stored snapshot %s (id %d, %d rules)", version, snapshot_id, len(content.rules))
        return snapshot_id

    async def store_snapshot_spec(
        self,
        spec: Mapping[str, Any],
        *,
        resource_uid: str | None = None,
        resource_namespace: str | None = None,
        resource_name: str | None = None,
        wasm_artifact: bytes | None = None,
        notes: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: str = "pkg-operator",
        reclaim_from: str | None = None,
    ) -> int:
        """``store_snapshot`` for a PolicySnapshot ``spec`` as written (camelCase keys).

        For engine wasm, ``wasm_artifact`` is the module's bytes (resolved from
        ``spec.wasm.inline`` when omitted). The checksum is ``spec.checksum`` when
        given, else computed.
        """
        from evaluator_sidecar.policy import resource  # noqa: PLC0415 - only this path needs YAML

        engine = spec.get("engine")
        if engine == "wasm" and wasm_artifact is None:
            try:
                wasm_artifact = resource.wasm_artifact(spec)
            except ValueError as exc:
                raise InvalidInputError(f"snapshot {spec.get('version')!r}: {exc}") from exc
        wasm = spec.get("wasm")
        checksum = spec.get("checksum")
        return await self.store_snapshot(
            version=str(spec.get("version") or ""),
            env=str(spec.get("env") or ""),
            engine=str(engine or ""),
            checksum=str(checksum) if checksum is not None else None,
            rules=spec.get("rules"),
            subtask_types=spec.get("subtaskTypes"),
            facts=spec.get("facts"),
            fixtures=spec.get("fixtures"),
            data=spec.get("data"),
            wasm_artifact=wasm_artifact,
            entrypoint=wasm.get("entrypoint") if isinstance(wasm, Mapping) else None,
            resource_uid=resource_uid,
            resource_namespace=resource_namespace,
            resource_name=resource_name,
            notes=notes,
            metadata=metadata,
            actor=actor,
            reclaim_from=reclaim_from,
        )

    async def _existing(
        self,
        conn: Connection,
        content: SnapshotContent,
        source: _Source,
        actor: str,
        reclaim_from: str | None,
    ) -> int | None:
        uid = source.uid
        rows = await conn.fetch(
            "SELECT id, version, uid, content_sha256, archived_at, resource_namespace, "
            "resource_name FROM pkg_snapshots "
            "WHERE version = $1 OR ($2::text IS NOT NULL AND uid = $2) FOR UPDATE",
            content.version,
            uid,
        )
        for row in rows:
            if row["version"] != content.version:
                raise ConflictError(
                    f"resource uid {uid} already stored version {row['version']!r} (snapshot "
                    f"{row['id']}); a PolicySnapshot is immutable: create a new resource for "
                    f"version {content.version!r}"
                )
        if not rows:
            return None
        row = rows[0]
        if row["content_sha256"] != content.content_sha256:
            raise ConflictError(
                f"version {content.version!r} is already stored (snapshot {row['id']}) with "
                f"different content (content sha256 {row['content_sha256']}, this one "
                f"{content.content_sha256}); stored versions are immutable: give the changed "
                "snapshot a new version"
            )
        if uid is not None and row["uid"] != uid:
            owned = row["uid"] is not None and row["archived_at"] is None
            if owned and row["uid"] != reclaim_from:
                where = (
                    f"PolicySnapshot {row['resource_namespace']}/{row['resource_name']}"
                    if row["resource_name"]
                    else "another resource"
                )
                raise VersionOwnedError(
                    f"version {content.version!r} already belongs to {where} (uid "
                    f"{row['uid']}, snapshot {row['id']}); a version belongs to one resource: "
                    "give this snapshot a new version, or delete the other resource first",
                    owner_uid=row["uid"],
                    owner_namespace=row["resource_namespace"],
                    owner_name=row["resource_name"],
                )
            await conn.execute(
                "UPDATE pkg_snapshots SET uid = $2, resource_namespace = $3, resource_name = $4 "
                "WHERE id = $1",
                row["id"],
                uid,
                source.namespace,
                source.name,
            )
            await append_in(
                conn,
                "snapshot.reclaimed",
                actor=actor,
                entity_type="snapshot",
                entity_id=row["id"],
                snapshot_id=row["id"],
                details={"version": content.version, "old_uid": row["uid"], "new_uid": uid},
            )
        if row["archived_at"] is not None:
            await conn.execute(
                "SELECT pkg_restore_snapshot($1, $2, $3)",
                row["id"],
                actor,
                "stored again with identical content",
            )
        existing: int = row["id"]
        return existing

    async def _insert(
        self,
        conn: Connection,
        content: SnapshotContent,
        source: _Source,
        notes: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> int:
        snapshot_id: int = await conn.fetchval(
            "INSERT INTO pkg_snapshots (version, env, engine, checksum, content_sha256, uid, "
            "resource_namespace, resource_name, entrypoint, data, notes, metadata) "
            "VALUES ($1, $2::pkg_env, $3::pkg_engine, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "RETURNING id",
            content.version,
            content.env,
            content.engine,
            content.checksum,
            content.content_sha256,
            source.uid,
            source.namespace,
            source.name,
            content.entrypoint,
            content.data,
            notes,
            dict(metadata or {}),
        )
        type_ids = {t.name: uuid.uuid4() for t in content.subtask_types}
        if content.subtask_types:
            types = content.subtask_types
            await conn.execute(
                "INSERT INTO pkg_subtask_types (id, snapshot_id, name, default_params, declared, "
                "position) SELECT t.id, $1, t.name, t.default_params::jsonb, t.declared, "
                "t.position "
                "FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bool[], $6::int[]) "
                "AS t(id, name, default_params, declared, position)",
                snapshot_id,
                [type_ids[t.name] for t in types],
                [t.name for t in types],
                [json_dumps(t.default_params) for t in types],
                [t.declared for t in types],
                [t.position for t in types],
            )
        if content.rules:
            await self._insert_rules(conn, snapshot_id, content, type_ids)
        if content.facts:
            facts = content.facts
            await conn.execute(
                "INSERT INTO pkg_facts (snapshot_id, subject, predicate, object, valid_from, "
                "valid_to, position) SELECT $1, f.subject, f.predicate, f.object::jsonb, "
                "f.valid_from, f.valid_to, f.position FROM unnest($2::text[], $3::text[], "
                "$4::text[], $5::timestamptz[], $6::timestamptz[], $7::int[]) "
                "AS f(subject, predicate, object, valid_from, valid_to, position)",
                snapshot_id,
                [f.subject for f in facts],
                [f.predicate for f in facts],
                [json_dumps(f.object) for f in facts],
                [f.valid_from for f in facts],
                [f.valid_to for f in facts],
                [f.position for f in facts],
            )
        if content.fixtures:
            fixtures = content.fixtures
            await conn.execute(
                "INSERT INTO pkg_validation_fixtures (snapshot_id, name, input, expect, position) "
                "SELECT $1, f.name, f.input::jsonb, f.expect::jsonb, f.position "
                "FROM unnest($2::text[], $3::text[], $4::text[], $5::int[]) "
                "AS f(name, input, expect, position)",
                snapshot_id,
                [f.name for f in fixtures],
                [json_dumps(f.input) for f in fixtures],
                [json_dumps(f.expect) for f in fixtures],
                [f.position for f in fixtures],
            )
        if content.wasm_artifact is not None:
            await conn.execute(
                "INSERT INTO pkg_snapshot_artifacts (snapshot_id, artifact_type, artifact_bytes, "
                "sha256) VALUES ($1, 'wasm_pack', $2, $3)",
                snapshot_id,
                content.wasm_artifact,
                content.artifact_sha256,
            )
        return snapshot_id

    async def _insert_rules(
        self,
        conn: Connection,
        snapshot_id: int,
        content: SnapshotContent,
        type_ids: Mapping[str, uuid.UUID],
    ) -> None:
        rule_ids = [uuid.uuid4() for _ in content.rules]
        await conn.execute(
            "INSERT INTO pkg_policy_rules (id, snapshot_id, rule_id, rule_name, priority, "
            "rule_source, disabled, position) SELECT r.id, $1, r.rule_id, r.rule_name, r.priority, "
            "r.rule_source, r.disabled, r.position FROM unnest($2::uuid[], $3::text[], $4::text[], "
            "$5::int[], $6::text[], $7::bool[], $8::int[]) "
            "AS r(id, rule_id, rule_name, priority, rule_source, disabled, position)",
            snapshot_id,
            rule_ids,
            [r.rule_id for r in content.rules],
            [r.rule_name for r in content.rules],
            [r.priority for r in content.rules],
            [r.rule_source for r in content.rules],
            [r.disabled for r in content.rules],
            [r.position for r in content.rules],
        )
        conditions = [
            (rid, c) for rid, r in zip(rule_ids, content.rules, strict=True) for c in r.conditions
        ]
        if conditions:
            await conn.execute(
                "INSERT INTO pkg_rule_conditions (rule_id, condition_type, condition_key, "
                "operator, value, position) SELECT c.rule_id, "
                "c.condition_type::pkg_condition_type, c.condition_key, "
                "c.operator::pkg_operator, c.value, c.position "
                "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], "
                "$6::int[]) "
                "AS c(rule_id, condition_type, condition_key, operator, value, position)",
                [rid for rid, _ in conditions],
                [c.condition_type for _, c in conditions],
                [c.condition_key for _, c in conditions],
                [c.operator for _, c in conditions],
                [c.value for _, c in conditions],
                [c.position for _, c in conditions],
            )
        emissions = [
            (rid, e) for rid, r in zip(rule_ids, content.rules, strict=True) for e in r.emissions
        ]
        if emissions:
            await conn.execute(
                "INSERT INTO pkg_rule_emissions (rule_id, snapshot_id, subtask_type_id, "
                "subtask_name, relationship_type, params, default_params, position) "
                "SELECT e.rule_id, $1, e.type_id, e.name, e.relationship::pkg_relation, "
                "e.params::jsonb, e.default_params::jsonb, e.position "
                "FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], "
                "$7::text[], $8::int[]) "
                "AS e(rule_id, type_id, name, relationship, params, default_params, position)",
                snapshot_id,
                [rid for rid, _ in emissions],
                [type_ids[e.subtask_type] for _, e in emissions],
                [e.subtask_name for _, e in emissions],
                [e.relationship_type for _, e in emissions],
                [json_dumps(e.params) for _, e in emissions],
                [
                    None if e.default_params is None else json_dumps(e.default_params)
                    for _, e in emissions
                ],
                [e.position for _, e in emissions],
            )

    # -- soft delete ------------------------------------------------------------------------

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

    # -- temporal facts ---------------------------------------------------------------------

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

    # -- integrity --------------------------------------------------------------------------

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


def _content_checksum(
    *,
    engine: str,
    rules: Sequence[Mapping[str, Any]] | None,
    subtask_types: Sequence[Mapping[str, Any]] | None,
    facts: Sequence[Mapping[str, Any]] | None,
    data: Mapping[str, Any] | None,
    wasm_artifact: bytes | None,
) -> str:
    # The project's one definition of the checksum lives with the resource.
    from evaluator_sidecar.policy.resource import content_checksum  # noqa: PLC0415

    spec = {
        "engine": engine,
        "rules": list(rules or []),
        "subtaskTypes": list(subtask_types or []),
        "facts": list(facts or []),
        "data": dict(data or {}),
    }
    try:
        return content_checksum(spec, wasm_artifact)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"cannot compute the snapshot's checksum: {exc}") from exc
