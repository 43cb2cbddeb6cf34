"""PKGClient: the one entry point to the PKG tables, a facade over the DAOs on one pool.

Every method of the seed's API reference is here with the same name and
parameters, plus the write paths the operator needs (``store_snapshot``,
``upsert_deployment``, ``archive_snapshot``, ``update_device_heartbeats``,
``append_audit``, ``verify_audit_chain``). The DAOs are reachable directly,
as in the seed: ``client.snapshots.get_active_snapshot()``.

The pool is created on first use, so ``PKGClient()`` (DSN from
``$PKG_DATABASE_URL``) can be built anywhere; ``await PKGClient.connect(dsn)``
connects at once (and fails at once, naming host:port). ``async with
PKGClient(...)`` or ``await client.close()`` releases the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import asyncpg

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.store.audit import PKGAuditDAO
from evaluator_sidecar.store.audit_chain import AuditChainReport
from evaluator_sidecar.store.deployments import PKGDeploymentsDAO
from evaluator_sidecar.store.devices import PKGDevicesDAO
from evaluator_sidecar.store.errors import NotFoundError
from evaluator_sidecar.store.models import DeviceHeartbeat, TemporalFact, ValidationOutcome
from evaluator_sidecar.store.pool import Database
from evaluator_sidecar.store.promotions import PKGPromotionsDAO
from evaluator_sidecar.store.snapshots import PKGSnapshotsDAO
from evaluator_sidecar.store.validation import PKGValidationDAO

__all__ = ["FixtureRunner", "PKGClient"]

log = logging.getLogger(__name__)

#: Runs a snapshot's fixtures: returns ``(success, report)``. The default loads the
#: snapshot into ``PKGEvaluator`` and runs ``evaluator_sidecar.policy.fixtures.run_fixtures``.
FixtureRunner = Callable[[PKGSnapshotData], tuple[bool, dict[str, Any]]]


def run_snapshot_fixtures(snapshot: PKGSnapshotData) -> tuple[bool, dict[str, Any]]:
    """The default fixture runner: the engine the sidecars run, on the snapshot's fixtures.

    A snapshot that does not load fails validation with the load problems as its report.
    """
    from evaluator_sidecar.policy.errors import EvaluatorError  # noqa: PLC0415 - keep imports lazy
    from evaluator_sidecar.policy.evaluator import PKGEvaluator  # noqa: PLC0415
    from evaluator_sidecar.policy.fixtures import run_fixtures  # noqa: PLC0415

    try:
        evaluator = PKGEvaluator(snapshot)
    except EvaluatorError as exc:
        log.warning("snapshot %s does not load: %s", snapshot.version, exc)
        return False, {"passed": 0, "failed": len(snapshot.fixtures), "load_error": str(exc)}
    report = run_fixtures(evaluator.evaluate, snapshot.fixtures)
    return report.success, report.to_dict()


class PKGClient:
    """Async access to PKG snapshots, validation, promotions, deployments, devices and audit."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        env: str = "prod",
        pool: asyncpg.Pool | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float | None = 60.0,
    ) -> None:
        """``dsn`` defaults to ``$PKG_DATABASE_URL``; ``env`` is the environment whose
        active snapshot ``get_active_snapshot`` returns. Pass ``pool`` to share one."""
        self.env = env
        self.db = Database(
            dsn, pool=pool, min_size=min_size, max_size=max_size, command_timeout=command_timeout
        )
        self.snapshots = PKGSnapshotsDAO(self.db, env)
        self.deployments = PKGDeploymentsDAO(self.db)
        self.validation = PKGValidationDAO(self.db)
        self.promotions = PKGPromotionsDAO(self.db, env)
        self.devices = PKGDevicesDAO(self.db)
        self.audit = PKGAuditDAO(self.db)

    @classmethod
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        env: str = "prod",
        pool: asyncpg.Pool | None = None,
        min_size: int = 1,
        max_size: int = 10,
        command_timeout: float | None = 60.0,
    ) -> PKGClient:
        """A client with its pool created now: ``client = await PKGClient.connect(dsn)``.

        Raises DatabaseUnavailableError naming host:port when PostgreSQL cannot be reached.
        """
        client = cls(
            dsn,
            env=env,
            pool=pool,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout,
        )
        return await client.open()

    async def open(self) -> PKGClient:
        """Create this client's pool now (else it is created on first use)."""
        await self.db.pool()
        return self

    async def close(self) -> None:
        """Close the pool (if the client created it)."""
        await self.db.close()

    async def __aenter__(self) -> PKGClient:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- snapshots --------------------------------------------------------------------------

    async def get_active_snapshot(self, env: str | None = None) -> PKGSnapshotData | None:
        """The active snapshot of ``env`` (default: the client's environment), or None."""
        return await self.snapshots.get_active_snapshot(env)

    async def get_snapshot_by_version(
        self, version: str, *, include_archived: bool = False
    ) -> PKGSnapshotData | None:
        """The snapshot stored as ``version``, or None (archived ones only when asked)."""
        return await self.snapshots.get_snapshot_by_version(
            version, include_archived=include_archived
        )

    async def get_snapshot_by_id(
        self, snapshot_id: int, *, include_archived: bool = False
    ) -> PKGSnapshotData | None:
        """The snapshot with this id, or None."""
        return await self.snapshots.get_snapshot_by_id(
            snapshot_id, include_archived=include_archived
        )

    async def get_snapshot_info(
        self,
        *,
        snapshot_id: int | None = None,
        version: str | None = None,
        resource_uid: str | None = None,
        include_archived: bool = True,
    ) -> dict[str, Any] | None:
        """A snapshot's row without content, by id, version or resource uid."""
        return await self.snapshots.get_snapshot_info(
            snapshot_id=snapshot_id,
            version=version,
            resource_uid=resource_uid,
            include_archived=include_archived,
        )

    async def list_snapshots(
        self, env: str | None = None, *, include_archived: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Snapshot rows, newest first."""
        return await self.snapshots.list_snapshots(
            env, include_archived=include_archived, limit=limit
        )

    async def get_active_artifact(self, env: str = "prod") -> dict[str, Any] | None:
        """The active snapshot's artifact of ``env`` (metadata and bytes), or None."""
        return await self.snapshots.get_active_artifact(env)

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
        """Store a whole snapshot (a PKGSnapshotData, or its parts) in one transaction,
        idempotently; its id (see PKGSnapshotsDAO.store_snapshot)."""
        return await self.snapshots.store_snapshot(
            snapshot,
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
            resource_uid=resource_uid,
            resource_namespace=resource_namespace,
            resource_name=resource_name,
            notes=notes,
            metadata=metadata,
            actor=actor,
            reclaim_from=reclaim_from,
        )

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
        """``store_snapshot`` for a PolicySnapshot spec as written (camelCase keys); its id."""
        return await self.snapshots.store_snapshot_spec(
            spec,
            resource_uid=resource_uid,
            resource_namespace=resource_namespace,
            resource_name=resource_name,
            wasm_artifact=wasm_artifact,
            notes=notes,
            metadata=metadata,
            actor=actor,
            reclaim_from=reclaim_from,
        )

    async def snapshot_resource(self, version: str) -> tuple[str, str] | None:
        """(namespace, name) of the PolicySnapshot resource that stored ``version``, or None."""
        return await self.snapshots.snapshot_resource(version)

    async def was_ever_active(self, snapshot_id: int) -> bool:
        """Whether the snapshot was ever active in its environment."""
        return await self.snapshots.was_ever_active(snapshot_id)

    async def newer_snapshot_promoted(self, snapshot_id: int, env: str | None = None) -> bool:
        """Whether a snapshot stored after this one in ``env`` has ever been active."""
        return await self.snapshots.newer_snapshot_promoted(snapshot_id, env)

    async def archive_snapshot(
        self, snapshot_id: int, *, actor: str = "pkg-client", reason: str | None = None
    ) -> bool:
        """Soft-delete a snapshot (never the active one); False when already archived."""
        return await self.snapshots.archive_snapshot(snapshot_id, actor=actor, reason=reason)

    async def restore_snapshot(
        self, snapshot_id: int, *, actor: str = "pkg-client", reason: str | None = None
    ) -> bool:
        """Undo an archive; False when the snapshot was not archived."""
        return await self.snapshots.restore_snapshot(snapshot_id, actor=actor, reason=reason)

    # -- temporal facts ---------------------------------------------------------------------

    async def create_temporal_fact(self, fact: TemporalFact) -> int:
        """Store a temporal fact; its id."""
        return await self.snapshots.create_temporal_fact(fact)

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
        """Facts valid now (or at ``valid_at``), filtered."""
        return await self.snapshots.get_temporal_facts(
            subject,
            predicate,
            snapshot_id=snapshot_id,
            valid_at=valid_at,
            include_invalid=include_invalid,
            limit=limit,
        )

    # -- deployments ------------------------------------------------------------------------

    async def get_deployments(
        self,
        snapshot_id: int | None = None,
        target: str | None = None,
        region: str | None = None,
        active_only: bool = True,
    ) -> list[dict[str, Any]]:
        """Deployment rows, filtered."""
        return await self.deployments.get_deployments(snapshot_id, target, region, active_only)

    async def get_deployment_coverage(
        self,
        target: str | None = None,
        region: str | None = None,
        *,
        ttl: timedelta | None = None,
    ) -> list[dict[str, Any]]:
        """devices_on_snapshot / devices_total per active deployment (devices seen within
        ``ttl`` when given)."""
        return await self.deployments.get_deployment_coverage(target, region, ttl=ttl)

    async def upsert_deployment(
        self,
        *,
        snapshot_id: int,
        target: str,
        region: str = "global",
        percent: int,
        is_active: bool = True,
        deployment_name: str | None = None,
        deployment_uid: str | None = None,
        step: int | None = None,
        actor: str = "pkg-operator",
        idempotency_key: str | None = None,
        audit_action: str = "deployment.step",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Record a rollout step on the (deployment, target, region, snapshot) row; its id."""
        return await self.deployments.upsert_deployment(
            snapshot_id=snapshot_id,
            target=target,
            region=region,
            percent=percent,
            is_active=is_active,
            deployment_name=deployment_name,
            deployment_uid=deployment_uid,
            step=step,
            actor=actor,
            idempotency_key=idempotency_key,
            audit_action=audit_action,
            details=details,
        )

    # -- validation -------------------------------------------------------------------------

    async def get_validation_fixtures(self, snapshot_id: int) -> list[dict[str, Any]]:
        """The snapshot's fixtures."""
        return await self.validation.get_validation_fixtures(snapshot_id)

    async def create_validation_run(
        self, snapshot_id: int, started_at: datetime | None = None, *, actor: str = "pkg-client"
    ) -> int:
        """Open a validation run; its id."""
        return await self.validation.create_validation_run(snapshot_id, started_at, actor=actor)

    async def finish_validation_run(
        self, run_id: int, success: bool, report: Mapping[str, Any] | None = None
    ) -> None:
        """Close a validation run with its outcome and report."""
        await self.validation.finish_validation_run(run_id, success, report)

    async def get_validation_runs(
        self, snapshot_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Validation runs, newest first."""
        return await self.validation.get_validation_runs(snapshot_id, limit)

    async def validate_snapshot(
        self,
        snapshot_id: int,
        *,
        actor: str = "pkg-client",
        runner: FixtureRunner | None = None,
    ) -> ValidationOutcome:
        """Run the snapshot's fixtures and record the run (start and finish, audited).

        The evaluation happens between two short transactions, never inside one.
        NotFoundError for an unknown (or archived) snapshot.
        """
        snapshot = await self.snapshots.get_snapshot_by_id(snapshot_id)
        if snapshot is None:
            raise NotFoundError(
                f"snapshot {snapshot_id} does not exist or is archived: store (or restore) it first"
            )
        run_id = await self.validation.create_validation_run(snapshot_id, actor=actor)
        try:
            success, report = (runner or run_snapshot_fixtures)(snapshot)
        except Exception as exc:
            log.exception("validating snapshot %s failed", snapshot.version)
            await self.validation.finish_validation_run(
                run_id, False, {"error": f"{type(exc).__name__}: {exc}"}, actor=actor
            )
            raise
        await self.validation.finish_validation_run(run_id, success, report, actor=actor)
        return ValidationOutcome(
            run_id=run_id, snapshot_id=snapshot_id, success=success, report=report
        )

    # -- promotions -------------------------------------------------------------------------

    async def get_promotions(
        self, snapshot_id: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Promotion rows, newest first."""
        return await self.promotions.get_promotions(snapshot_id, limit)

    async def create_promotion(  # noqa: PLR0917 - the seed's signature
        self,
        snapshot_id: int,
        actor: str,
        action: str = "promote",
        reason: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        success: bool = True,
        *,
        idempotency_key: str | None = None,
    ) -> int:
        """Record a promotion outcome without activating anything; its id."""
        return await self.promotions.create_promotion(
            snapshot_id, actor, action, reason, metrics, success, idempotency_key=idempotency_key
        )

    async def promote_snapshot(
        self,
        snapshot_id: int,
        actor: str = "pkg-client",
        reason: str | None = None,
        *,
        env: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Activate a validated snapshot in its environment; the promotion id."""
        return await self.promotions.promote_snapshot(
            snapshot_id, actor, reason, env=env, metrics=metrics, idempotency_key=idempotency_key
        )

    async def rollback_snapshot(
        self,
        env: str | None = None,
        *,
        actor: str = "pkg-client",
        reason: str | None = None,
        to_snapshot_id: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Reactivate the previous (or the named) snapshot; the promotion id."""
        return await self.promotions.rollback_snapshot(
            env,
            actor=actor,
            reason=reason,
            to_snapshot_id=to_snapshot_id,
            metrics=metrics,
            idempotency_key=idempotency_key,
        )

    # -- devices ----------------------------------------------------------------------------

    async def get_device_versions(
        self,
        device_type: str | None = None,
        region: str | None = None,
        snapshot_id: int | None = None,
        *,
        target: str | None = None,
        seen_within: timedelta | None = None,
    ) -> list[dict[str, Any]]:
        """Device rows, filtered."""
        return await self.devices.get_device_versions(
            device_type, region, snapshot_id, target=target, seen_within=seen_within
        )

    async def update_device_heartbeat(
        self,
        device_id: str,
        device_type: str,
        snapshot_id: int | None = None,
        version: str | None = None,
        region: str = "global",
        *,
        target: str | None = None,
        evaluations: int | None = None,
        errors: int | None = None,
        p99_latency_ms: float | None = None,
        activation_failures: int | None = None,
        seen_at: datetime | None = None,
    ) -> None:
        """Record one heartbeat."""
        await self.devices.update_device_heartbeat(
            device_id,
            device_type,
            snapshot_id,
            version,
            region,
            target=target,
            evaluations=evaluations,
            errors=errors,
            p99_latency_ms=p99_latency_ms,
            activation_failures=activation_failures,
            seen_at=seen_at,
        )

    async def update_device_heartbeats(self, heartbeats: Sequence[DeviceHeartbeat]) -> int:
        """Record many heartbeats in one statement; the rows written."""
        return await self.devices.update_device_heartbeats(heartbeats)

    # -- audit and integrity ----------------------------------------------------------------

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
        """Append an operator event to the audit chain; its row id."""
        return await self.audit.append_audit(
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
        """Audit rows, oldest first."""
        return await self.audit.get_audit_log(
            entity_type=entity_type,
            entity_id=entity_id,
            snapshot_id=snapshot_id,
            action=action,
            after_id=after_id,
            limit=limit,
        )

    async def verify_audit_chain(self) -> AuditChainReport:
        """Recompute the audit chain; ``report.ok`` or ``report.first_break``."""
        return await self.audit.verify_audit_chain()

    async def check_integrity(self) -> dict[str, Any]:
        """``{"ok", "issues"}`` from pkg_check_integrity()."""
        return await self.snapshots.check_integrity()
