"""The rollout's effects: perform a Decision's actions, and repair a lost or changed desired state.

Actions are performed in the decision's order: the desired state in Redis
(compare-and-set on the epoch), deployment, promotion and audit rows in
PostgreSQL (each with the decision's idempotency key, so a repeated tick writes
no duplicate), and Kubernetes events. See docs/rollout-state-machine.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from evaluator_sidecar import signals as sig
from pkg_operator.context import OperatorContext
from pkg_operator.levels.effects import publish
from pkg_operator.levels.reconcile import repair_rollout
from pkg_operator.metrics import AUDIT_ROWS, PROMOTIONS, ROLLBACKS
from pkg_operator.rollout.model import (
    Action,
    EmitEvent,
    RecordPromotion,
    RecordStep,
    SetDesiredState,
)

__all__ = ["apply", "repair_level"]

log = logging.getLogger(__name__)


async def _snapshot_id(ctx: OperatorContext, version: str | None) -> int | None:
    if not version:
        return None
    row = await ctx.db.get_snapshot_info(version=version)
    return None if row is None else int(row["id"])


async def apply(
    ctx: OperatorContext, body: kopf.Body, action: Action, *, env: str, target: str, region: str
) -> None:
    """Perform one of a decision's actions for the deployment ``body``."""
    meta = body["metadata"]
    if isinstance(action, SetDesiredState):
        state = await publish(
            ctx,
            sig.DesiredState(
                epoch=0,
                env=env,
                stable=action.stable,
                target=target,
                region=region,
                deployment=str(meta["uid"]),
                canary=action.canary,
                canary_percent=action.canary_percent,
                reason=action.reason,
                shadow=action.shadow,
                prepare=action.prepare,
            ),
        )
        log.info(
            "published %s at epoch %d: %s",
            state.key,
            state.epoch,
            action.reason,
            extra={
                "event": "desired_state_published",
                "key": state.key,
                "epoch": state.epoch,
                "canary_percent": action.canary_percent,
            },
        )
    elif isinstance(action, RecordStep):
        snapshot_id = await _snapshot_id(ctx, action.version)
        if snapshot_id is None:
            log.info(
                "step %s of %s names no stored snapshot; audit only", action.kind, meta["name"]
            )
            AUDIT_ROWS.labels(event="deployment.step").inc()
            await ctx.db.append_audit(
                f"deployment.{action.kind.lower().replace('-', '_')}",
                actor=action.actor,
                entity_type="deployment",
                entity_id=str(meta["uid"]),
                details=_step_details(action),
                idempotency_key=action.key,
            )
            return
        await ctx.db.upsert_deployment(
            snapshot_id=snapshot_id,
            target=target,
            region=region,
            percent=round(action.percent),
            is_active=action.percent > 0 or action.kind == "complete",
            deployment_name=f"{meta['namespace']}/{meta['name']}",
            deployment_uid=str(meta["uid"]),
            step=action.step_index,
            actor=action.actor,
            idempotency_key=action.key,
            details=_step_details(action),
            heartbeat_ttl_seconds=_heartbeat_ttl(body),
        )
        AUDIT_ROWS.labels(event="deployment.step").inc()
    elif isinstance(action, RecordPromotion):
        counter = PROMOTIONS if action.action == "promote" else ROLLBACKS
        try:
            await _record_promotion(ctx, meta, action, target=target, region=region)
        except Exception:
            counter.labels(resource="deployment", outcome="error").inc()
            raise
        counter.labels(resource="deployment", outcome="ok").inc()
    elif isinstance(action, EmitEvent):
        kopf.event(body, type=action.type, reason=action.reason, message=action.message)


def _heartbeat_ttl(body: kopf.Body) -> int | None:
    """spec.coverage.heartbeatTTLSeconds, for pkg_deployment_coverage to count as we do."""
    ttl = ((body.get("spec") or {}).get("coverage") or {}).get("heartbeatTTLSeconds")
    return ttl if isinstance(ttl, int) and ttl > 0 else None


async def _record_promotion(
    ctx: OperatorContext, meta: Any, action: RecordPromotion, *, target: str, region: str
) -> None:
    snapshot_id = await _snapshot_id(ctx, action.to_version)
    if snapshot_id is None:
        log.warning(
            "%s of %s names no stored snapshot (%r); not recorded as a promotion",
            action.action,
            meta["name"],
            action.to_version,
        )
        return
    metrics = {
        **action.metrics,
        "target": target,
        "region": region,
        "deployment": f"{meta['namespace']}/{meta['name']}",
        "from_version": action.from_version,
    }
    await ctx.db.create_promotion(
        snapshot_id,
        action.actor,
        action.action,
        action.reason,
        metrics,
        True,
        idempotency_key=action.key,
    )
    AUDIT_ROWS.labels(event=f"deployment.{action.action}").inc()


def _step_details(action: RecordStep) -> dict[str, Any]:
    return {
        "attempt": action.attempt,
        "step": action.step_index,
        "kind": action.kind,
        "percent": action.percent,
        "version": action.version,
        "detail": action.detail,
    }


async def repair_level(
    ctx: OperatorContext,
    body: kopf.Body,
    status: Mapping[str, Any],
    *,
    env: str,
    target: str,
    region: str,
) -> None:
    """Rewrite this rollout's desired state when Redis lost it or holds another one.

    The machine publishes only when the state changes; without this, sidecars would
    follow a level that Redis lost (a restart without persistence: they would run the
    environment's version) or one written by someone else. The status, which the
    state machine owns, says what is published; ``pkg_operator.levels`` compares.
    """
    await repair_rollout(ctx, body, status, env=env, target=target, region=region)
