"""A PolicySnapshot's I/O steps: load and compile, store, validate once, refresh ``Active``.

Each is idempotent, so that a resumed or restarted operator repeats none of its
effects:

- storing is keyed by the resource's uid (the database returns the same id);
- a snapshot is validated once: a finished validation run is reused, an
  unfinished one (a crash mid-run) is finished, never duplicated;
- a promotion is keyed by the snapshot's uid and the request's one-time token.

What the status says is decided by :mod:`pkg_operator.snapshot.status` (pure).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.policy import signing
from evaluator_sidecar.policy.errors import SnapshotLoadError
from evaluator_sidecar.policy.evaluator import PKGEvaluator
from evaluator_sidecar.policy.fixtures import run_fixtures
from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.policy.resource import ChecksumMismatchError, snapshot_from_resource
from evaluator_sidecar.store.errors import ConflictError, VersionOwnedError
from pkg_operator import kube
from pkg_operator.context import OperatorContext
from pkg_operator.snapshot import trust
from pkg_operator.snapshot.status import Outcome, ValidationSummary, active_status

__all__ = ["RETRIED_REJECTIONS", "Loaded", "load", "refresh_active", "store_and_validate", "verify"]

#: Rejections that can heal without a new spec (a ConfigMap or a trusted key added later):
#: the handler retries them.
RETRIED_REJECTIONS = frozenset(
    {"ArtifactUnavailable", "UnknownSigningKey", "TrustedKeysUnavailable"}
)

log = logging.getLogger(__name__)

#: Who the audit log names for what the operator stores and validates.
ACTOR = "pkg-operator"
#: Reads and conditional writes of a status before giving up to the next pass.
REFRESH_ATTEMPTS = 5


@dataclass(frozen=True)
class Loaded:
    """A snapshot that compiled, or the reason it was rejected."""

    snapshot: PKGSnapshotData | None
    evaluator: PKGEvaluator | None
    rejected: tuple[str, str] | None = None
    #: What verifying ``spec.signature`` found (None: unsigned where none is required).
    verification: signing.Verification | None = None


async def verify(ctx: OperatorContext, loaded: Loaded) -> Loaded:
    """Check the snapshot's signature; a refusal becomes the rejection.

    A signed snapshot is verified in every environment and a bad signature is always
    refused; where ``PKG_REQUIRE_SIGNATURES`` names the environment, an unsigned one
    and one signed by a key that is not trusted are refused too.
    """
    snapshot = loaded.snapshot
    if snapshot is None or loaded.rejected is not None:
        return loaded
    required = ctx.settings.signatures_required_in(snapshot.env)
    if snapshot.signature is None:
        if not required:
            return loaded
        # No key can make an unsigned snapshot acceptable: say so without reading keys.
        result = signing.verify(
            None, signing.TrustStore(), version=snapshot.version, env=snapshot.env, checksum=""
        )
        refused = signing.refusal(result, required=True)
        assert refused is not None
        return Loaded(None, None, (refused.reason, refused.message), result)
    try:
        keys = await trust.trusted_keys(ctx.settings.trusted_keys_ref)
    except trust.KubeError as exc:
        message = f"the trusted keys cannot be read: {exc}"
        return Loaded(snapshot, None, ("TrustedKeysUnavailable", message))
    result = signing.verify(
        snapshot.signature,
        keys,
        version=snapshot.version,
        env=snapshot.env,
        checksum=str(snapshot.checksum),
    )
    refused = signing.refusal(result, required=required)
    if refused is not None:
        if not len(keys) and result.outcome is signing.Outcome.UNKNOWN_KEY:
            message = f"{refused.message} (no trusted keys: set PKG_TRUSTED_KEYS on the operator)"
            refused = signing.Refusal(refused.reason, message)
        return Loaded(None, None, (refused.reason, refused.message), result)
    return Loaded(loaded.snapshot, loaded.evaluator, None, result)


def signature_metadata(loaded: Loaded) -> dict[str, Any]:
    """What goes with the snapshot into PostgreSQL (``pkg_snapshots.metadata``) and its
    ``snapshot.stored`` audit row: the signature and what verifying it found."""
    snapshot, result = loaded.snapshot, loaded.verification
    if snapshot is None or snapshot.signature is None:
        return {}
    metadata: dict[str, Any] = {"signature": dict(snapshot.signature)}
    if result is not None:
        metadata["signature_verification"] = {
            "outcome": result.outcome.value,
            "keyId": result.key_id,
            "by": ACTOR,
        }
    return metadata


async def load(body: Mapping[str, Any]) -> Loaded:
    """Read the artifact, check the shape and checksum, and compile with the sidecars' engine."""
    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}
    wasm_bytes: bytes | None = None
    ref = (spec.get("wasm") or {}).get("configMapRef")
    if spec.get("engine") == "wasm" and ref:
        try:
            wasm_bytes = await kube.read_configmap_binary(
                meta["namespace"], ref["name"], ref["key"]
            )
        except kube.KubeError as exc:
            return Loaded(None, None, ("ArtifactUnavailable", str(exc)))
    try:
        snapshot = snapshot_from_resource(body, wasm_bytes=wasm_bytes)
    except ChecksumMismatchError as exc:
        return Loaded(None, None, ("ChecksumMismatch", _one_line(exc)))
    except SnapshotLoadError as exc:
        return Loaded(None, None, ("InvalidSnapshot", _one_line(exc)))
    try:
        # Compiling a large snapshot takes milliseconds to seconds: keep the loop free.
        evaluator = await asyncio.to_thread(PKGEvaluator, snapshot)
    except SnapshotLoadError as exc:
        return Loaded(snapshot, None, ("InvalidSnapshot", _one_line(exc)))
    return Loaded(snapshot, evaluator)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


async def store_and_validate(
    ctx: OperatorContext, body: Mapping[str, Any], loaded: Loaded
) -> Outcome:
    """Store the compiled snapshot and run its fixtures once; the outcome for the status."""
    if loaded.snapshot is None or loaded.evaluator is None:
        raise ValueError("store_and_validate needs a snapshot that loaded and compiled")
    meta = body["metadata"]
    snapshot = loaded.snapshot
    rule_count = len(snapshot.rules)
    try:
        snapshot_id = await _store(ctx, meta, snapshot, signature_metadata(loaded))
    except VersionOwnedError as exc:
        # Final: another live resource owns the version; retrying cannot change that.
        return Outcome(
            checksum=snapshot.checksum, rule_count=rule_count, rejected=("VersionInUse", str(exc))
        )
    except ConflictError as exc:
        # Final too: the stored version holds other content, and stored versions never change.
        return Outcome(
            checksum=snapshot.checksum,
            rule_count=rule_count,
            rejected=("VersionConflict", str(exc)),
        )
    validation = await _validate_once(ctx, snapshot_id, snapshot, loaded.evaluator)
    active = await ctx.db.get_active_snapshot_summary(snapshot.env)
    active_in = snapshot.env if active is not None and active.id == snapshot_id else None
    superseded_by = None
    if active_in is None and active is not None and await ctx.db.was_ever_active(snapshot_id):
        superseded_by = active.version
    return Outcome(
        checksum=snapshot.checksum,
        rule_count=rule_count,
        snapshot_id=snapshot_id,
        validation=validation,
        active_in=active_in,
        superseded_by=superseded_by,
    )


async def _store(
    ctx: OperatorContext,
    meta: Mapping[str, Any],
    snapshot: PKGSnapshotData,
    metadata: Mapping[str, Any],
) -> int:
    """Store the snapshot for this resource; reclaim its version from an owner that is gone.

    A version belongs to one PolicySnapshot. Its owner's row is archived when that
    resource is deleted, but not when someone stripped the finalizer by hand: then
    the owner named by the database no longer exists, and this resource may take the
    version over.
    """

    async def store(reclaim_from: str | None = None) -> int:
        return await ctx.db.store_snapshot(
            snapshot,
            resource_uid=meta["uid"],
            resource_namespace=meta.get("namespace"),
            resource_name=meta["name"],
            actor=ACTOR,
            reclaim_from=reclaim_from,
            metadata=metadata or None,
        )

    try:
        return await store()
    except VersionOwnedError as exc:
        if exc.owner_name is None or exc.owner_namespace is None:
            raise  # stored by other means than a PolicySnapshot: nothing to look up
        owner = await kube.get_object("policysnapshots", exc.owner_namespace, exc.owner_name)
        if owner is not None and owner["metadata"].get("uid") == exc.owner_uid:
            raise
        log.warning(
            "version %s belonged to PolicySnapshot %s/%s (uid %s), which no longer exists; "
            "%s/%s takes it over",
            snapshot.version,
            exc.owner_namespace,
            exc.owner_name,
            exc.owner_uid,
            meta.get("namespace"),
            meta["name"],
        )
        return await store(reclaim_from=exc.owner_uid)


async def _validate_once(
    ctx: OperatorContext, snapshot_id: int, snapshot: PKGSnapshotData, evaluator: PKGEvaluator
) -> ValidationSummary:
    runs = await ctx.db.get_validation_runs(snapshot_id=snapshot_id, limit=10)
    for run in runs:
        if run.get("finished_at") is not None:
            return _summary(run)
    unfinished = next((run for run in runs if run.get("finished_at") is None), None)
    run_id = (
        int(unfinished["id"])
        if unfinished
        else await ctx.db.create_validation_run(snapshot_id, actor=ACTOR)
    )
    report = await asyncio.to_thread(run_fixtures, evaluator.evaluate, snapshot.fixtures)
    failures = [result for result in report.results if not result.passed]
    message = f"{report.passed}/{report.total} fixtures passed"
    if failures:
        shown = report.format().splitlines()
        message = (
            f"{report.failed} of {report.total} fixtures failed: "
            + "; ".join(
                line.strip() for line in shown if line.strip() and not line.startswith("PASS")
            )[:2000]
        )
        log.warning("snapshot %s failed validation: %s", snapshot.version, message)
    details = report.to_dict()
    details["message"] = message
    await ctx.db.finish_validation_run(run_id, success=report.success, report=details)
    return ValidationSummary(
        run_id=run_id,
        passed=report.passed,
        failed=report.failed,
        total=report.total,
        finished_at=dt.datetime.now(dt.UTC),
        message=message,
    )


def _summary(run: Mapping[str, Any]) -> ValidationSummary:
    report = run.get("report") or {}
    finished = run["finished_at"]
    return ValidationSummary(
        run_id=int(run["id"]),
        passed=int(report.get("passed", 0)),
        failed=int(report.get("failed", 0)),
        total=int(report.get("total", 0)),
        finished_at=finished if isinstance(finished, dt.datetime) else dt.datetime.now(dt.UTC),
        message=str(
            report.get("message")
            or f"{report.get('passed', 0)}/{report.get('total', 0)} fixtures passed"
        ),
    )


async def refresh_active(ctx: OperatorContext, version: str) -> None:
    """Set another snapshot's Active condition from PostgreSQL (after a promotion moved it).

    The status is read, changed and written back with the version read, and read again
    when another writer came first: a blind write of ``conditions`` would replace the
    whole list, undoing, say, the Ready its own handler had just written.
    """
    location = await ctx.db.snapshot_resource(version)
    if location is None:
        return  # stored by other means than a PolicySnapshot
    namespace, name = location
    for _ in range(REFRESH_ATTEMPTS):
        body = await kube.get_object("policysnapshots", namespace, name)
        if body is None:
            return
        env = body["spec"]["env"]
        active = await ctx.db.get_active_snapshot_summary(env)
        change = active_status(
            body.get("status") or {},
            version=version,
            env=env,
            active_version=None if active is None else active.version,
            generation=int(body["metadata"].get("generation") or 1),
            now=dt.datetime.now(dt.UTC),
        )
        if change is None:
            return
        try:
            await kube.patch_status(
                "policysnapshots",
                namespace,
                name,
                change,
                resource_version=body["metadata"]["resourceVersion"],
            )
        except kube.Conflict:
            continue
        return
    log.warning(
        "PolicySnapshot %s/%s kept changing while its Active condition was refreshed "
        "(%d attempts); its own handler or the next level pass will set it",
        namespace,
        name,
        REFRESH_ATTEMPTS,
    )
