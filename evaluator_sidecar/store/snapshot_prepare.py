"""Checking and normalizing a snapshot for storing: ``prepare_snapshot``.

It takes a snapshot in the evaluator's rule form (the shape of a PolicySnapshot
spec's ``rules``, ``subtaskTypes``, ``facts`` and ``fixtures``: docs/crd-reference.md,
section "PolicySnapshot spec"), reports every problem at once with its path
(``InvalidSnapshotError``), fills the defaults (positions from list order,
``subtask_name`` from ``subtask_type``, ``relationship_type`` EMITS, empty
params) and computes ``content_sha256``, the hash of everything stored, which
makes storing idempotent and lets a read verify its rows (``content_hash``,
``snapshot_verify``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from evaluator_sidecar.policy.model import normalize_checksum, sha256_hex
from evaluator_sidecar.store.errors import ChecksumMismatchError
from evaluator_sidecar.store.snapshot_assembly import fact_to_dict, rule_to_dict
from evaluator_sidecar.store.snapshot_checks import (
    check_fact,
    check_fixture,
    check_jsonable,
    check_rule,
    check_subtask_type,
    check_unique,
    list_items,
)
from evaluator_sidecar.store.snapshot_rows import (
    ENGINES,
    ENVS,
    InvalidSnapshotError,
    SnapshotContent,
    SubtaskTypeRow,
    canonical_json,
)

__all__ = ["content_hash", "prepare_snapshot"]


def prepare_snapshot(
    *,
    version: str,
    env: str,
    engine: str,
    rules: Sequence[Mapping[str, Any]] | None = None,
    subtask_types: Sequence[Mapping[str, Any]] | None = None,
    facts: Sequence[Mapping[str, Any]] | None = None,
    fixtures: Sequence[Mapping[str, Any]] | None = None,
    data: Mapping[str, Any] | None = None,
    wasm_artifact: bytes | None = None,
    entrypoint: str | None = None,
    checksum: str,
) -> SnapshotContent:
    """Check and normalize a snapshot for storing.

    ``checksum`` is the content checksum (any form ``normalize_checksum``
    accepts); for a wasm snapshot it must be the artifact's sha256. Raises
    InvalidSnapshotError listing every problem, or ChecksumMismatchError.
    """
    out: list[str] = []
    if not isinstance(version, str) or not version:
        out.append("version: is required (non-empty text, e.g. 'rules@1.4.0')")
    if env not in ENVS:
        out.append(f"env: must be one of {', '.join(ENVS)}; got {env!r}")
    if engine not in ENGINES:
        out.append(f"engine: must be one of {', '.join(ENGINES)}; got {engine!r}")
    try:
        normalized_checksum = normalize_checksum(checksum)
    except (ValueError, AttributeError) as exc:
        out.append(f"checksum: {exc}")
        normalized_checksum = "0" * 64

    rule_rows = tuple(
        check_rule(w, r, i, out) for i, (w, r) in enumerate(list_items(rules, "rules", out))
    )
    check_unique(
        ((f"rules[{i}].rule_id", r.rule_id) for i, r in enumerate(rule_rows)), "rule_id", out
    )

    declared = [
        check_subtask_type(w, t, i, out)
        for i, (w, t) in enumerate(list_items(subtask_types, "subtask_types", out))
    ]
    check_unique(((f"subtask_types[{t.position}].name", t.name) for t in declared), "name", out)
    known = {t.name for t in declared}
    implicit: list[SubtaskTypeRow] = []
    for rule in rule_rows:
        for emission in rule.emissions:
            if emission.subtask_type and emission.subtask_type not in known:
                known.add(emission.subtask_type)
                implicit.append(
                    SubtaskTypeRow(emission.subtask_type, {}, False, len(declared) + len(implicit))
                )

    fact_rows = tuple(
        check_fact(w, f, i, out) for i, (w, f) in enumerate(list_items(facts, "facts", out))
    )
    fixture_rows = tuple(
        check_fixture(w, f, i, out)
        for i, (w, f) in enumerate(list_items(fixtures, "fixtures", out))
    )
    check_unique(((f"fixtures[{f.position}].name", f.name) for f in fixture_rows), "name", out)

    data_dict: dict[str, Any] = {}
    if data is not None:
        if isinstance(data, Mapping):
            data_dict = dict(data)
            check_jsonable(data_dict, "data", out)
        else:
            out.append(f"data: must be a mapping; got {type(data).__name__}")
    if entrypoint is not None and (not isinstance(entrypoint, str) or not entrypoint):
        out.append("entrypoint: must be non-empty text when given")

    artifact_sha256: str | None = None
    if wasm_artifact is not None:
        if not isinstance(wasm_artifact, bytes | bytearray) or not wasm_artifact:
            out.append("wasm_artifact: must be the module's bytes (non-empty)")
        else:
            artifact_sha256 = sha256_hex(bytes(wasm_artifact))
    if engine == "wasm":
        if wasm_artifact is None:
            out.append("wasm_artifact: a wasm snapshot needs its compiled module's bytes")
        if rule_rows or declared:
            out.append("rules/subtask_types: are for native snapshots; a wasm snapshot has none")
    elif engine == "native" and wasm_artifact is not None:
        out.append("wasm_artifact: a native snapshot has rules, not a wasm module")

    if out:
        raise InvalidSnapshotError(str(version), out)
    if engine == "wasm" and artifact_sha256 is not None and normalized_checksum != artifact_sha256:
        raise ChecksumMismatchError(
            f"snapshot {version!r}: checksum {normalized_checksum} is not the sha256 of its wasm "
            f"artifact ({artifact_sha256}); the module changed or the checksum is stale: "
            "rebuild or re-upload, or correct spec.checksum"
        )

    content = SnapshotContent(
        version=version,
        env=env,
        engine=engine,
        checksum=normalized_checksum,
        content_sha256="",
        rules=rule_rows,
        subtask_types=tuple(declared + implicit),
        facts=fact_rows,
        fixtures=fixture_rows,
        data=data_dict,
        entrypoint=entrypoint,
        wasm_artifact=bytes(wasm_artifact) if wasm_artifact is not None else None,
        artifact_sha256=artifact_sha256,
    )
    return _with_content_hash(content)


def content_hash(content: SnapshotContent) -> str:
    """The ``content_sha256`` of ``content`` (its own field is ignored)."""
    return _with_content_hash(content).content_sha256


def _with_content_hash(content: SnapshotContent) -> SnapshotContent:
    payload = {
        "version": content.version,
        "env": content.env,
        "engine": content.engine,
        "checksum": content.checksum,
        "rules": [rule_to_dict(r, None) for r in content.rules],
        "subtask_types": [
            {"name": t.name, "default_params": t.default_params, "declared": t.declared}
            for t in content.subtask_types
        ],
        "facts": [fact_to_dict(f) for f in content.facts],
        "fixtures": [
            {"name": f.name, "input": f.input, "expect": f.expect} for f in content.fixtures
        ],
        "data": content.data,
        "entrypoint": content.entrypoint,
        "artifact_sha256": content.artifact_sha256,
    }
    return replace(content, content_sha256=hashlib.sha256(canonical_json(payload)).hexdigest())
