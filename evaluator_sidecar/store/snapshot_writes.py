"""Storing snapshots: one whole snapshot per transaction, idempotently, owned by one resource.

``store_snapshot`` checks and normalizes the snapshot (``snapshot_prepare``),
verifies its checksum against the one the store computes itself
(``snapshot_verify.verified_content``), then, under an advisory lock on its
version, finds what is already stored under that version or resource uid
(:func:`_find_stored`) and either returns the stored id (identical content:
nothing written; archived: restored; from another resource: taken over only
when the old owner is gone) or inserts the rows (``snapshot_inserts``) with
their ``snapshot.stored`` audit row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.store.audit import append_in
from evaluator_sidecar.store.errors import (
    ConflictError,
    InvalidInputError,
    VersionOwnedError,
    db_errors,
)
from evaluator_sidecar.store.pool import Connection, Database
from evaluator_sidecar.store.snapshot_inserts import SnapshotSource, insert_snapshot
from evaluator_sidecar.store.snapshot_prepare import prepare_snapshot
from evaluator_sidecar.store.snapshot_rows import SnapshotContent
from evaluator_sidecar.store.snapshot_verify import verified_content

__all__ = ["SnapshotWrites"]

log = logging.getLogger(__name__)

#: The keys of ``metadata`` that the ``snapshot.stored`` audit row repeats.
_AUDITED_METADATA = ("signature", "signature_verification")


class SnapshotWrites:
    """The storing methods of ``PKGSnapshotsDAO``."""

    _db: Database

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
        content checksum (``evaluator_sidecar.policy.resource.content_checksum`` of the spec):
        the store computes it from the content, and a given one must equal it
        (ChecksumMismatchError otherwise). Keyed by ``resource_uid`` (the PolicySnapshot's
        ``metadata.uid``) and ``version``: storing identical content again returns the
        stored id and writes nothing; an identical snapshot that was archived is restored.
        A version belongs to one resource: an identical snapshot from another resource uid
        is taken over only when its row was archived (its resource was deleted), stored
        without a uid, or owned by ``reclaim_from`` (a caller that checked that this
        owner no longer exists); otherwise VersionOwnedError names the owner. Raises
        ConflictError when the version holds different content or the uid another
        version, InvalidSnapshotError listing every problem, ChecksumMismatchError when the
        given checksum is not the content's or a wasm checksum is not the artifact's.
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
        content = _verified_prepared(
            version=version,
            env=env,
            engine=engine,
            checksum=checksum,
            rules=rules,
            subtask_types=subtask_types,
            facts=facts,
            fixtures=fixtures,
            data=data,
            wasm_artifact=wasm_artifact,
            entrypoint=entrypoint,
        )
        source = SnapshotSource(resource_uid, resource_namespace, resource_name)
        with db_errors(f"storing snapshot {version!r}"):
            async with self._db.transaction() as conn:
                # Two stores of one version queue here instead of racing on the unique key.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('pkg_store_snapshot'), hashtext($1))",
                    version,
                )
                existing = await _find_stored(conn, content, source, actor, reclaim_from)
                if existing is not None:
                    log.debug("snapshot %s already stored (id %d)", version, existing)
                    return existing
                snapshot_id = await insert_snapshot(conn, content, source, notes, metadata)
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


async def _find_stored(
    conn: Connection,
    content: SnapshotContent,
    source: SnapshotSource,
    actor: str,
    reclaim_from: str | None,
) -> int | None:
    """The id already stored for ``content``, or None when it must be inserted.

    Locks the rows of its version and of its resource uid until commit. Identical
    content returns the stored id, after restoring an archived row and, when it
    came from another resource that is gone (archived, no uid, or ``reclaim_from``),
    taking the row over with a ``snapshot.reclaimed`` audit row. Raises
    ConflictError for different content under the version or another version
    under the uid, VersionOwnedError for a version a live resource owns.
    """
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


def _verified_prepared(
    *,
    version: str,
    env: str,
    engine: str,
    checksum: str | None,
    rules: Sequence[Mapping[str, Any]] | None,
    subtask_types: Sequence[Mapping[str, Any]] | None,
    facts: Sequence[Mapping[str, Any]] | None,
    fixtures: Sequence[Mapping[str, Any]] | None,
    data: Mapping[str, Any] | None,
    wasm_artifact: bytes | None,
    entrypoint: str | None,
) -> SnapshotContent:
    """The content checked and normalized (``prepare_snapshot``), its checksum verified.

    The store computes the content checksum itself; a caller's is compared, never
    trusted (README.md, "Concepts": verification). A content it cannot hash is left to
    ``prepare_snapshot``, which reports every problem at once.
    """
    computed: str | None
    try:
        computed = _content_checksum(
            engine=engine,
            rules=rules,
            subtask_types=subtask_types,
            facts=facts,
            data=data,
            wasm_artifact=wasm_artifact,
        )
    except InvalidInputError:
        computed = None
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
        checksum=checksum if checksum is not None else (computed or ""),
    )
    return verified_content(content, computed)


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
