"""PKGClient: the one entry point to the PKG tables, a facade over the DAOs on one pool.

The client owns the pool and one DAO of each kind (``snapshots``, ``deployments``,
``validation``, ``promotions``, ``devices``, ``audit``). Every public method of a
DAO that callers use is also a method of the client, under the same name and with
the same parameters: ``client.get_active_snapshot()`` and
``client.snapshots.get_active_snapshot()`` are one call. The client declares them
with ``Part.forward`` (``evaluator_sidecar.store.forwarding``), which takes each
signature and docstring from the DAO method, so a signature is written only once.
``validate_snapshot`` is the client's own: it spans two DAOs and the engine.

The pool is created on first use, so ``PKGClient()`` (DSN from
``$PKG_DATABASE_URL``) can be built anywhere; ``await PKGClient.connect(dsn)``
connects at once (and fails at once, naming host:port). ``async with
PKGClient(...)`` or ``await client.close()`` releases the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

import asyncpg

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.store.audit import PKGAuditDAO
from evaluator_sidecar.store.counters import PKGCountersDAO
from evaluator_sidecar.store.deployments import PKGDeploymentsDAO
from evaluator_sidecar.store.devices import PKGDevicesDAO
from evaluator_sidecar.store.errors import NotFoundError
from evaluator_sidecar.store.forwarding import Part
from evaluator_sidecar.store.models import ValidationOutcome
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

    # The DAOs, one each per client (set in __init__), all on the client's one pool.
    snapshots = Part(PKGSnapshotsDAO)
    deployments = Part(PKGDeploymentsDAO)
    validation = Part(PKGValidationDAO)
    promotions = Part(PKGPromotionsDAO)
    devices = Part(PKGDevicesDAO)
    counters = Part(PKGCountersDAO)
    audit = Part(PKGAuditDAO)

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
        self.counters = PKGCountersDAO(self.db)
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

    # -- the DAOs' methods, under the same names ------------------------------------------
    # Each forwarder takes its signature and docstring from the DAO method it names.

    get_active_snapshot = snapshots.forward(PKGSnapshotsDAO.get_active_snapshot)
    get_active_snapshot_summary = snapshots.forward(PKGSnapshotsDAO.get_active_snapshot_summary)
    get_snapshot_by_version = snapshots.forward(PKGSnapshotsDAO.get_snapshot_by_version)
    get_snapshot_by_id = snapshots.forward(PKGSnapshotsDAO.get_snapshot_by_id)
    get_snapshot_info = snapshots.forward(PKGSnapshotsDAO.get_snapshot_info)
    list_snapshots = snapshots.forward(PKGSnapshotsDAO.list_snapshots)
    get_active_artifact = snapshots.forward(PKGSnapshotsDAO.get_active_artifact)
    store_snapshot = snapshots.forward(PKGSnapshotsDAO.store_snapshot)
    store_snapshot_spec = snapshots.forward(PKGSnapshotsDAO.store_snapshot_spec)
    snapshot_resource = snapshots.forward(PKGSnapshotsDAO.snapshot_resource)
    was_ever_active = snapshots.forward(PKGSnapshotsDAO.was_ever_active)
    newer_snapshot_promoted = snapshots.forward(PKGSnapshotsDAO.newer_snapshot_promoted)
    archive_snapshot = snapshots.forward(PKGSnapshotsDAO.archive_snapshot)
    restore_snapshot = snapshots.forward(PKGSnapshotsDAO.restore_snapshot)
    create_temporal_fact = snapshots.forward(PKGSnapshotsDAO.create_temporal_fact)
    get_temporal_facts = snapshots.forward(PKGSnapshotsDAO.get_temporal_facts)
    expire_temporal_fact = snapshots.forward(PKGSnapshotsDAO.expire_temporal_fact)
    delete_temporal_fact = snapshots.forward(PKGSnapshotsDAO.delete_temporal_fact)
    environment_facts = snapshots.forward(PKGSnapshotsDAO.environment_facts)
    facts_version = snapshots.forward(PKGSnapshotsDAO.facts_version)
    facts_versions = snapshots.forward(PKGSnapshotsDAO.facts_versions)
    check_integrity = snapshots.forward(PKGSnapshotsDAO.check_integrity)

    get_deployments = deployments.forward(PKGDeploymentsDAO.get_deployments)
    get_deployment_coverage = deployments.forward(PKGDeploymentsDAO.get_deployment_coverage)
    upsert_deployment = deployments.forward(PKGDeploymentsDAO.upsert_deployment)

    get_validation_fixtures = validation.forward(PKGValidationDAO.get_validation_fixtures)
    create_validation_run = validation.forward(PKGValidationDAO.create_validation_run)
    finish_validation_run = validation.forward(PKGValidationDAO.finish_validation_run)
    get_validation_runs = validation.forward(PKGValidationDAO.get_validation_runs)

    get_promotions = promotions.forward(PKGPromotionsDAO.get_promotions)
    create_promotion = promotions.forward(PKGPromotionsDAO.create_promotion)
    promote_snapshot = promotions.forward(PKGPromotionsDAO.promote_snapshot)
    rollback_snapshot = promotions.forward(PKGPromotionsDAO.rollback_snapshot)

    get_device_versions = devices.forward(PKGDevicesDAO.get_device_versions)
    update_device_heartbeat = devices.forward(PKGDevicesDAO.update_device_heartbeat)
    update_device_heartbeats = devices.forward(PKGDevicesDAO.update_device_heartbeats)

    update_device_counters = counters.forward(PKGCountersDAO.update_device_counters)
    capture_step_baseline = counters.forward(PKGCountersDAO.capture_step_baseline)
    step_counters = counters.forward(PKGCountersDAO.step_counters)
    record_shadow_diffs = counters.forward(PKGCountersDAO.record_shadow_diffs)
    get_shadow_diffs = counters.forward(PKGCountersDAO.get_shadow_diffs)

    append_audit = audit.forward(PKGAuditDAO.append_audit)
    get_audit_log = audit.forward(PKGAuditDAO.get_audit_log)
    verify_audit_chain = audit.forward(PKGAuditDAO.verify_audit_chain)

    # -- the client's own: validation spans the snapshots and the validation runs ----------

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
