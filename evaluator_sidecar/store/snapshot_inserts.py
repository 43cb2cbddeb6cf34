"""The rows of one new snapshot, inserted in the caller's transaction.

``insert_snapshot`` writes a checked ``SnapshotContent`` (see
``snapshot_prepare``): the snapshot row, then its subtask types, rules,
conditions, emissions, facts, fixtures and artifact, each kind in one
``INSERT ... SELECT FROM unnest(...)`` statement (one round trip however many
rows). Rule and subtask type ids are made here (uuid4), so that conditions and
emissions can point at them without reading anything back.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.store.pool import Connection, json_dumps
from evaluator_sidecar.store.snapshot_rows import SnapshotContent

__all__ = ["SnapshotSource", "insert_snapshot"]


@dataclass(frozen=True)
class SnapshotSource:
    """The PolicySnapshot resource a snapshot came from (all None when it came otherwise)."""

    uid: str | None
    namespace: str | None
    name: str | None


async def insert_snapshot(
    conn: Connection,
    content: SnapshotContent,
    source: SnapshotSource,
    notes: str | None,
    metadata: Mapping[str, Any] | None,
) -> int:
    """Insert ``content`` as a new snapshot (no audit row: the caller appends it); its id."""
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
        await _insert_rules(conn, snapshot_id, content, type_ids)
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
