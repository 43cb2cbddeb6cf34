"""PolicyDeployment: one kopf timer per deployment, the pure state machine, and its effects.

Each tick gathers :class:`~pkg_operator.rollout.model.Observations` (the
referenced snapshot from kopf's in-memory index, the environment's active
snapshot from PostgreSQL, coverage and health folded from the devices' latest
heartbeats, a person's action from the annotation, a newer deployment for the
same env/target/region), calls :func:`pkg_operator.rollout.reconcile`, performs
the decision's actions in order (desired state in Redis; deployment, promotion
and audit rows in PostgreSQL, each with the decision's idempotency key; events),
and only then writes the decision's status. If an action fails, the status is
not written and the next tick repeats the same keys, which the database
recognises.

The timer is the only writer of a deployment's status. kopf's body can lag
behind the operator's own last write; ``status.seq`` tells, and the remembered
status is used instead of a stale one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from evaluator_sidecar import signals as sig
from evaluator_sidecar.db.errors import DatabaseUnavailableError
from pkg_operator import kube
from pkg_operator.actions import DEPLOYMENT_ACTIONS, ActionError, parse_action
from pkg_operator.api import ACTION_ANNOTATION, DEPLOYMENTS, SNAPSHOTS
from pkg_operator.conditions import is_true, parse_time
from pkg_operator.context import OperatorContext
from pkg_operator.rollout import coverage
from pkg_operator.rollout.machine import reconcile
from pkg_operator.rollout.model import (
    Action,
    EmitEvent,
    Observations,
    RecordPromotion,
    RecordStep,
    SetDesiredState,
    SnapshotInfo,
    SnapshotRef,
)

__all__ = ["register"]

log = logging.getLogger(__name__)


def snapshot_info(body: Mapping[str, Any]) -> SnapshotInfo:
    """A PolicySnapshot as the state machine sees it: Ready means stored and validated."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    conditions = status.get("conditions") or []
    ready = is_true(conditions, "Ready") and status.get("snapshotId") is not None
    reason, message = "Pending", "the operator has not reconciled it yet"
    for condition in conditions:
        if condition.get("type") == "Ready":
            reason = str(condition.get("reason") or reason)
            message = str(condition.get("message") or message)
    return SnapshotInfo(
        name=str(body["metadata"]["name"]),
        version=str(spec.get("version", "")),
        checksum=str(status.get("checksum") or ""),
        snapshot_id=status.get("snapshotId"),
        ready=ready,
        reason=reason,
        message=message,
    )


def _newer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether deployment ``a`` was created after ``b`` (name breaks ties)."""
    key_a = (str(a.get("creationTimestamp", "")), str(a.get("name", "")))
    key_b = (str(b.get("creationTimestamp", "")), str(b.get("name", "")))
    return key_a > key_b


async def _baseline(ctx: OperatorContext, env: str) -> SnapshotInfo | None:
    active = await ctx.db.get_active_snapshot(env)
    if active is None:
        return None
    location = await ctx.db.snapshot_resource(active.version)
    return SnapshotInfo(
        name=location[1] if location else active.version,
        version=active.version,
        checksum=active.checksum or "",
        snapshot_id=active.id,
        ready=True,
        reason="Active",
        message=f"the active snapshot of {env}",
    )


def _sig_ref(ref: SnapshotRef | None) -> sig.SnapshotRef | None:
    return None if ref is None else sig.SnapshotRef(ref.version, ref.snapshot_id, ref.checksum)


async def _snapshot_id(ctx: OperatorContext, version: str | None) -> int | None:
    if not version:
        return None
    row = await ctx.db.get_snapshot_info(version=version)
    return None if row is None else int(row["id"])


async def _apply(
    ctx: OperatorContext, body: kopf.Body, action: Action, *, env: str, target: str, region: str
) -> None:
    meta = body["metadata"]
    if isinstance(action, SetDesiredState):
        state = await ctx.signals.publish_new_desired(
            sig.DesiredState(
                epoch=0,
                env=env,
                stable=_sig_ref(action.stable),
                target=target,
                region=region,
                deployment=str(meta["uid"]),
                canary=_sig_ref(action.canary),
                canary_percent=action.canary_percent,
                reason=action.reason,
            )
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
        )
    elif isinstance(action, RecordPromotion):
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
    elif isinstance(action, EmitEvent):
        kopf.event(body, type=action.type, reason=action.reason, message=action.message)


def _step_details(action: RecordStep) -> dict[str, Any]:
    return {
        "attempt": action.attempt,
        "step": action.step_index,
        "kind": action.kind,
        "percent": action.percent,
        "version": action.version,
        "detail": action.detail,
    }


async def _tick(
    ctx: OperatorContext,
    body: kopf.Body,
    memo: Any,
    snapshots_index: kopf.Index[Any, Any],
    deployments_index: kopf.Index[Any, Any],
) -> None:
    meta, spec = body["metadata"], body["spec"]
    status: Mapping[str, Any] = body.get("status") or {}
    remembered: Mapping[str, Any] | None = getattr(memo, "rollout_status", None)
    if remembered is not None and int(remembered.get("seq") or 0) > int(status.get("seq") or 0):
        status = remembered  # kopf has not seen our last write yet
    namespace, uid = meta["namespace"], str(meta["uid"])
    env, target = spec["env"], spec["target"]
    region = spec.get("region") or "global"
    now = dt.datetime.now(dt.UTC)

    ref_name = (spec.get("snapshotRef") or {}).get("name")
    found = list(snapshots_index.get((namespace, ref_name), []))
    snapshot = snapshot_info(found[0]) if found else None

    superseded_by = None
    mine = {"creationTimestamp": meta.get("creationTimestamp"), "name": meta["name"]}
    for other in deployments_index.get((env, target, region), []):
        if other["uid"] != uid and _newer(other, mine):
            superseded_by = f"{other['namespace']}/{other['name']}"

    action = None
    raw = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    if raw:
        try:
            action = parse_action(raw, DEPLOYMENT_ACTIONS)
        except ActionError as exc:
            tokens = {str(a.get("token")) for a in status.get("processedActions") or []}
            if raw not in tokens:
                kopf.warn(body, reason="InvalidAction", message=str(exc))

    stable = status.get("stable") or {}
    canary = status.get("canary") or {}
    weight = float(status.get("weight") or 0.0)
    cover_spec = spec.get("coverage") or {}
    ttl = float(cover_spec.get("heartbeatTTLSeconds") or 30)
    step_started = status.get("stepStartedAt")
    rows = await ctx.db.get_device_versions(
        target=target, seen_within=dt.timedelta(seconds=ttl * 10)
    )
    reports = [
        coverage.DeviceReport(
            device_id=row["device_id"],
            target=row["target"],
            region=row["region"],
            version=row["version"],
            last_seen=row["last_seen"],
            evaluations=row["evaluations"] or 0,
            errors=row["errors"] or 0,
            p99_ms=row["p99_latency_ms"],
            activation_failures=row["activation_failures"] or 0,
        )
        for row in rows
    ]
    covered, health = coverage.fold(
        reports,
        target=target,
        region=region,
        deployment_uid=uid,
        stable_version=stable.get("version"),
        canary_version=canary.get("version"),
        weight=weight,
        ttl_seconds=ttl,
        step_started_at=parse_time(step_started) if step_started else None,
        now=now,
    )
    obs = Observations(
        uid=uid,
        generation=int(meta.get("generation") or 1),
        snapshot=snapshot,
        baseline=await _baseline(ctx, env),
        coverage=covered,
        health=health,
        action=action,
        superseded_by=superseded_by,
    )
    if superseded_by is None:  # a superseded deployment must not write its old state back
        await _repair_level(ctx, body, status, env=env, target=target, region=region)
    decision = reconcile(spec, status, obs, now)
    for effect in decision.actions:
        await _apply(ctx, body, effect, env=env, target=target, region=region)
    if decision.status != dict(status):
        written = await kube.patch_status(
            "policydeployments", namespace, meta["name"], decision.status
        )
        if written is not None:
            memo.rollout_status = written.get("status") or decision.status


async def _repair_level(
    ctx: OperatorContext,
    body: kopf.Body,
    status: Mapping[str, Any],
    *,
    env: str,
    target: str,
    region: str,
) -> None:
    """Rewrite this rollout's desired state if Redis lost it (a restart without persistence).

    The machine publishes only when the state changes; without this, sidecars that
    start after such a restart would run the environment's version, not the rollout's.
    """
    if not status.get("lastPublish"):
        return
    if await ctx.signals.read_state(sig.rollout_key(env, target, region)) is not None:
        return

    def ref(value: Any) -> SnapshotRef | None:
        if not isinstance(value, Mapping) or not value.get("version"):
            return None
        return SnapshotRef(
            str(value.get("name", "")),
            str(value["version"]),
            str(value.get("checksum") or ""),
            value.get("snapshotId"),
        )

    canary = ref(status.get("canary"))
    weight = float(status.get("weight") or 0.0) if canary is not None else 0.0
    await _apply(
        ctx,
        body,
        SetDesiredState(
            stable=ref(status.get("stable")),
            canary=canary,
            canary_percent=weight,
            reason="repair: the desired state was missing (Redis restarted?)",
            key="repair",
        ),
        env=env,
        target=target,
        region=region,
    )
    log.warning(
        "the desired state of %s/%s in %s was missing in Redis; rewrote it", target, region, env
    )


def register(registry: kopf.OperatorRegistry, *, interval: float) -> None:
    """The indexes and the rollout timer."""

    # Explicit ids: kopf passes an index to handlers under its id, and the id of a
    # nested function would otherwise be its qualified name.
    @kopf.index(*SNAPSHOTS, registry=registry, id="snapshots_index")
    def snapshots_index(
        *, body: kopf.Body, namespace: str | None, name: str, **_: Any
    ) -> dict[Any, Any]:
        return {(namespace, name): body}

    @kopf.index(*DEPLOYMENTS, registry=registry, id="deployments_index")
    def deployments_index(
        *, spec: kopf.Spec, meta: kopf.Meta, namespace: str | None, name: str, **_: Any
    ) -> dict[Any, Any]:
        key = (spec.get("env"), spec.get("target"), spec.get("region") or "global")
        return {
            key: {
                "uid": meta.get("uid"),
                "namespace": namespace,
                "name": name,
                "creationTimestamp": meta.get("creationTimestamp"),
            }
        }

    @kopf.timer(
        *DEPLOYMENTS, interval=interval, backoff=max(interval, 2.0), registry=registry, id="rollout"
    )
    async def rollout_tick(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
        # kopf passes each index as a keyword argument named after its function.
        snapshots, deployments = kwargs["snapshots_index"], kwargs["deployments_index"]
        try:
            await _tick(memo.ctx, body, memo, snapshots, deployments)
        except DatabaseUnavailableError as exc:
            raise kopf.TemporaryError(f"PostgreSQL is unavailable: {exc}", delay=interval) from exc
