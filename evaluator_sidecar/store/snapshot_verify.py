"""Verifying snapshot content: the checksum on store, the stored rows on every read.

Pure: no I/O. Two checks, both raising :class:`ChecksumMismatchError`:

* :func:`verified_content` (on store): the content checksum the store computed
  itself (``evaluator_sidecar.policy.resource_checksum.content_checksum``) must
  equal the one the caller gave. The caller's value is never stored unchecked.
* :func:`verify_stored_rows` (on read): the rows read back must hash to the
  ``content_sha256`` recorded when they were stored (the hash of everything
  stored, ``snapshot_prepare.prepare_snapshot``). A rule, condition, emission,
  subtask type, fact, fixture, the data, the entrypoint, the artifact or the
  checksum column changed in PostgreSQL after the store fails it, so neither
  the operator nor a sidecar compiles what was not stored.

The rows are rebuilt exactly as ``prepare_snapshot`` built them: conditions and
emissions in the order they were inserted (their identity column), emissions
with their own ``default_params`` (None when they inherit their type's), and
only the facts written with the snapshot (``created_at`` equal to the
snapshot's: one transaction). No fact can be added to a stored snapshot later:
``create_temporal_fact`` refuses a ``snapshot_id`` and migration 0007's trigger
refuses the rows; facts that change at run time are environment facts.
"""

from __future__ import annotations

from collections.abc import Iterable

from evaluator_sidecar.policy.model import sha256_hex
from evaluator_sidecar.store.errors import ChecksumMismatchError
from evaluator_sidecar.store.snapshot_prepare import content_hash
from evaluator_sidecar.store.snapshot_rows import (
    ConditionRow,
    EmissionRow,
    FactRow,
    FixtureRow,
    Row,
    RuleRow,
    SnapshotContent,
    SubtaskTypeRow,
)

__all__ = ["stored_content_sha256", "verified_content", "verify_stored_rows"]


def verified_content(content: SnapshotContent, computed: str | None) -> SnapshotContent:
    """``content`` when its checksum is the one the store computed; raises otherwise.

    ``computed`` is None only when the content could not be hashed, which
    ``prepare_snapshot`` has already refused; it is then a programming error.
    """
    if computed is None:
        raise ChecksumMismatchError(
            f"snapshot {content.version!r}: the store could not compute its content checksum",
            version=content.version,
            declared=content.checksum,
        )
    if content.checksum != computed:
        raise ChecksumMismatchError(
            f"snapshot {content.version!r}: the given checksum {content.checksum} is not the "
            f"content's ({computed}); the store computes it itself and refuses a different one: "
            "put the output of `pkg checksum FILE` in spec.checksum, or give none",
            version=content.version,
            declared=content.checksum,
            actual=computed,
        )
    return content


def stored_content_sha256(
    snapshot: Row,
    *,
    rules: Iterable[Row],
    conditions: Iterable[Row],
    emissions: Iterable[Row],
    subtask_types: Iterable[Row],
    facts: Iterable[Row],
    fixtures: Iterable[Row],
    artifact: bytes | None,
) -> str:
    """The ``content_sha256`` of a snapshot rebuilt from its rows as read.

    ``snapshot`` has the pkg_snapshots columns; ``conditions`` and ``emissions``
    carry ``rule`` (the rule's uuid) and ``id`` (their identity); ``facts`` carry
    ``created_at``; ``subtask_types`` carry ``declared``.
    """
    by_rule_c: dict[object, list[tuple[int, ConditionRow]]] = {}
    for c in conditions:
        by_rule_c.setdefault(c["rule"], []).append(
            (
                c["id"],
                ConditionRow(
                    c["condition_type"],
                    c["condition_key"],
                    c["operator"],
                    c["value"],
                    c["position"],
                ),
            )
        )
    by_rule_e: dict[object, list[tuple[int, EmissionRow]]] = {}
    for e in emissions:
        by_rule_e.setdefault(e["rule"], []).append(
            (
                e["id"],
                EmissionRow(
                    e["subtask_type"],
                    e["subtask_name"],
                    e["relationship_type"],
                    dict(e["params"] or {}),
                    e["position"],
                    dict(e["default_params"]) if e["default_params"] is not None else None,
                ),
            )
        )
    rule_rows = tuple(
        RuleRow(
            rule_id=r["rule_id"],
            rule_name=r["rule_name"],
            priority=r["priority"],
            disabled=r["disabled"],
            rule_source=r["rule_source"],
            position=index,
            conditions=tuple(row for _, row in sorted(by_rule_c.get(r["id"], []), key=_first)),
            emissions=tuple(row for _, row in sorted(by_rule_e.get(r["id"], []), key=_first)),
        )
        for index, r in enumerate(rules)
    )
    created = snapshot["created_at"]
    content = SnapshotContent(
        version=snapshot["version"],
        env=snapshot["env"],
        engine=snapshot["engine"],
        checksum=snapshot["checksum"],
        content_sha256="",
        rules=rule_rows,
        subtask_types=tuple(
            SubtaskTypeRow(t["name"], dict(t["default_params"] or {}), t["declared"], 0)
            for t in subtask_types
        ),
        facts=tuple(
            FactRow(f["subject"], f["predicate"], f["object"], f["valid_from"], f["valid_to"], 0)
            for f in facts
            if f["created_at"] == created
        ),
        fixtures=tuple(
            FixtureRow(f["name"], dict(f["input"]), dict(f["expect"]), 0) for f in fixtures
        ),
        data=dict(snapshot["data"] or {}),
        entrypoint=snapshot["entrypoint"],
        wasm_artifact=artifact,
        artifact_sha256=None if artifact is None else sha256_hex(artifact),
    )
    return content_hash(content)


def _first(item: tuple[int, object]) -> int:
    return item[0]


def verify_stored_rows(
    snapshot: Row,
    *,
    rules: Iterable[Row],
    conditions: Iterable[Row],
    emissions: Iterable[Row],
    subtask_types: Iterable[Row],
    facts: Iterable[Row],
    fixtures: Iterable[Row],
    artifact: bytes | None,
) -> None:
    """Raise ChecksumMismatchError when the rows do not hash to the stored content_sha256."""
    recorded = snapshot["content_sha256"]
    actual = stored_content_sha256(
        snapshot,
        rules=rules,
        conditions=conditions,
        emissions=emissions,
        subtask_types=subtask_types,
        facts=facts,
        fixtures=fixtures,
        artifact=artifact,
    )
    if actual != recorded:
        version = snapshot["version"]
        raise ChecksumMismatchError(
            f"snapshot {version!r} (id {snapshot['id']}) was changed in PostgreSQL after it was "
            f"stored: its rows hash to {actual}, the hash recorded at store time is {recorded}; "
            "refusing to load it. Compare it with its PolicySnapshot, and store the content "
            "again as a new version",
            version=version,
            declared=recorded,
            actual=actual,
        )
