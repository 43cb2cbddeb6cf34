"""Promote a snapshot in its environment, or roll the environment back, and tell the sidecars.

Order matters and is the same for both: PostgreSQL first (the source of truth:
``pkg_promote_snapshot`` deactivates the old snapshot, activates the new one
and writes the promotion and audit rows in one transaction, keyed by an
idempotency key), then the environment's desired state in Redis with a fresh
epoch from PostgreSQL (the level the sidecars converge on, announced on
``pkg_updates``). If Redis fails in between, the handler is retried: the
database step is a no-op the second time, and the signal goes out; the level
reconciler (``pkg_operator.levels``) also rewrites it within
``PKG_LEVEL_RESYNC_SECONDS`` of Redis answering again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from evaluator_sidecar.signals import DesiredState, SnapshotRef
from pkg_operator.context import OperatorContext
from pkg_operator.levels.effects import publish
from pkg_operator.metrics import AUDIT_ROWS, PROMOTIONS, ROLLBACKS

__all__ = [
    "Promotion",
    "promote",
    "publish_environment",
    "roll_back",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    promotion_id: int
    env: str
    from_version: str | None
    to_version: str
    epoch: int


async def publish_environment(ctx: OperatorContext, env: str, reason: str) -> int:
    """Write the environment's desired state from PostgreSQL's active snapshot; the new epoch."""
    active = await ctx.db.get_active_snapshot_summary(env)
    stable = None if active is None else SnapshotRef(active.version, active.id, active.checksum)
    state = await publish(ctx, DesiredState(epoch=0, env=env, stable=stable, reason=reason))
    return state.epoch


async def promote(
    ctx: OperatorContext,
    *,
    snapshot_id: int,
    env: str,
    actor: str,
    reason: str,
    idempotency_key: str,
) -> Promotion:
    previous = await ctx.db.get_active_snapshot_summary(env)
    try:
        promotion_id = await ctx.db.promote_snapshot(
            snapshot_id, env=env, actor=actor, reason=reason, idempotency_key=idempotency_key
        )
    except Exception:
        PROMOTIONS.labels(resource="snapshot", outcome="error").inc()
        raise
    PROMOTIONS.labels(resource="snapshot", outcome="ok").inc()
    AUDIT_ROWS.labels(event="snapshot.promote").inc()
    current = await ctx.db.get_active_snapshot_summary(env)
    if current is None or current.id != snapshot_id:
        raise RuntimeError(f"promoting snapshot {snapshot_id} in {env} left {current} active")
    epoch = await publish_environment(ctx, env, f"promote {current.version}: {reason}")
    # From the promotion row, not from `previous`: on a retry (Redis failed after the
    # database step) the snapshot is already active and `previous` is itself.
    from_version = await _from_version(ctx, snapshot_id, promotion_id)
    if from_version is None and previous is not None and previous.id != snapshot_id:
        from_version = previous.version
    log.info(
        "promoted %s in %s",
        current.version,
        env,
        extra={
            "event": "snapshot_promoted",
            "version": current.version,
            "env": env,
            "from_version": from_version,
            "actor": actor,
            "epoch": epoch,
        },
    )
    return Promotion(promotion_id, env, from_version, current.version, epoch)


async def _from_version(ctx: OperatorContext, snapshot_id: int, promotion_id: int) -> str | None:
    for row in await ctx.db.get_promotions(snapshot_id=snapshot_id, limit=20):
        if int(row["id"]) == promotion_id:
            version = row.get("from_version")
            return str(version) if version else None
    return None


async def roll_back(
    ctx: OperatorContext, *, env: str, actor: str, reason: str, idempotency_key: str
) -> Promotion:
    previous = await ctx.db.get_active_snapshot_summary(env)
    try:
        promotion_id = await ctx.db.rollback_snapshot(
            env=env, actor=actor, reason=reason, idempotency_key=idempotency_key
        )
    except Exception:
        ROLLBACKS.labels(resource="snapshot", outcome="error").inc()
        raise
    ROLLBACKS.labels(resource="snapshot", outcome="ok").inc()
    AUDIT_ROWS.labels(event="snapshot.rollback").inc()
    current = await ctx.db.get_active_snapshot_summary(env)
    assert current is not None, "a rollback always leaves a snapshot active"
    epoch = await publish_environment(ctx, env, f"rollback to {current.version}: {reason}")
    log.info(
        "rolled %s back to %s",
        env,
        current.version,
        extra={
            "event": "snapshot_rolled_back",
            "version": current.version,
            "env": env,
            "from_version": previous.version if previous else None,
            "actor": actor,
            "epoch": epoch,
        },
    )
    return Promotion(
        promotion_id, env, previous.version if previous else None, current.version, epoch
    )
