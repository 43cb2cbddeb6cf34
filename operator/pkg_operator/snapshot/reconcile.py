"""The PolicySnapshot handlers' bodies: read the object, decide, apply, report.

``changed`` runs on create, update and resume; ``deleted`` holds or archives. Each
reads the object, calls the pure decisions (:mod:`.decide`, :mod:`.status`), applies
their effects (:mod:`.effects`, :mod:`pkg_operator.promotions`) and writes what
happened into the status and events. Failures a user can cause end in the status;
PostgreSQL or Redis being away is retried by kopf with the reason in ``Synced``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from redis.exceptions import RedisError

from evaluator_sidecar.store.errors import DatabaseUnavailableError, PKGError, SnapshotInUseError
from pkg_operator import crashpoints, promotions
from pkg_operator.actions import ActionError, ActionRequest
from pkg_operator.conditions import set_condition
from pkg_operator.context import OperatorContext
from pkg_operator.metrics import ACTIONS_REFUSED, backend_error
from pkg_operator.snapshot import decide, effects
from pkg_operator.snapshot.status import Outcome, snapshot_status

__all__ = ["RETRY_DELAY", "changed", "deleted"]

#: How long to wait before retrying after PostgreSQL or Redis failed. Short: a snapshot
#: applied during an outage waits this long after its end (10 s made it 8.9 s in chaos
#: scenario outage/postgres-down-13s/snapshot-applied), and a retry costs one connection
#: attempt and one status patch.
RETRY_DELAY = 3.0
#: Who the audit log names for what the operator decides on its own.
OPERATOR = "pkg-operator"

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _normal(body: kopf.Body, *, reason: str, message: str) -> None:
    """A Normal event. kopf.info() would be dropped: posting.level keeps kopf's own
    per-handler log lines out of events, and kopf.info() obeys the same level."""
    kopf.event(body, type="Normal", reason=reason, message=message)


async def changed(
    ctx: OperatorContext,
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
) -> None:
    """Load, store and validate the snapshot, carry out a pending action, write the status."""
    generation = int(meta.get("generation") or 1)
    loaded = await effects.verify(ctx, await effects.load(body))
    if loaded.rejected is not None:
        reason, message = loaded.rejected
        patch.status.update(
            snapshot_status(
                Outcome(rejected=loaded.rejected),
                previous=status,
                generation=generation,
                now=_now(),
            )
        )
        kopf.warn(body, reason=reason, message=message)
        if reason in effects.RETRIED_REJECTIONS:
            # The ConfigMap or the trusted key may appear later; every other rejection is
            # final (spec is immutable).
            raise kopf.TemporaryError(message, delay=30)
        return
    try:
        outcome = await effects.store_and_validate(ctx, body, loaded)
        last_action: dict[str, Any] | None = None
        try:
            request = decide.pending_action(meta, status)
        except ActionError as exc:
            kopf.warn(body, reason="InvalidAction", message=str(exc))
            ACTIONS_REFUSED.labels(kind="PolicySnapshot", action="invalid").inc()
            request = None
        if outcome.rejected is not None:
            pass  # reported below; no action applies to a snapshot that was not stored
        elif request is not None:
            outcome, last_action = await _act(ctx, body, outcome, request)
        elif spec.get("autoPromote") and decide.auto_promotable(outcome):
            outcome, last_action = await _auto_promote(ctx, body, outcome)
    except DatabaseUnavailableError as exc:
        backend_error(exc, where="PolicySnapshot")
        message = f"PostgreSQL is unavailable ({exc}); retrying every {RETRY_DELAY:.0f}s"
        _not_synced(patch, status, generation, "DatabaseUnavailable", message)
        raise kopf.TemporaryError(message, delay=RETRY_DELAY) from exc
    except RedisError as exc:
        backend_error(exc, where="PolicySnapshot")
        message = f"Redis is unavailable ({exc}); retrying every {RETRY_DELAY:.0f}s"
        _not_synced(patch, status, generation, "RedisUnavailable", message)
        raise kopf.TemporaryError(message, delay=RETRY_DELAY) from exc
    new_status = snapshot_status(outcome, previous=status, generation=generation, now=_now())
    if last_action is not None:
        new_status["lastAction"] = last_action
    patch.status.update(new_status)
    # kopf writes this patch once the handler returns: dying here loses it, after every
    # other write of this run.
    crashpoints.hit("kube:kopf_status:policysnapshots")
    if outcome.rejected is not None:
        reason, message = outcome.rejected
        kopf.warn(body, reason=reason, message=message)
    validation = outcome.validation
    if validation is not None and not validation.success:
        kopf.warn(body, reason="FixturesFailed", message=validation.message)


def _not_synced(
    patch: kopf.Patch, status: Mapping[str, Any], generation: int, reason: str, message: str
) -> None:
    """Say in the status why reconciliation is stuck (kopf applies the patch, then retries)."""
    patch.status["conditions"] = set_condition(
        list(status.get("conditions") or []), "Synced", "False", reason, message, generation, _now()
    )


async def _auto_promote(
    ctx: OperatorContext, body: kopf.Body, outcome: Outcome
) -> tuple[Outcome, dict[str, Any]]:
    spec, meta = body["spec"], body["metadata"]
    assert outcome.snapshot_id is not None
    if await ctx.db.newer_snapshot_promoted(outcome.snapshot_id, spec["env"]):
        _normal(
            body,
            reason="AutoPromoteSkipped",
            message="a snapshot created after this one is already promoted; not promoting",
        )
        return outcome, decide.action_record(
            "promote", "auto", "operator", "skipped: a newer one is promoted", _now()
        )
    done = await promotions.promote(
        ctx,
        snapshot_id=outcome.snapshot_id,
        env=spec["env"],
        actor=f"{OPERATOR} (autoPromote)",
        reason="spec.autoPromote: promoted once Ready",
        idempotency_key=decide.action_key(meta["uid"], "auto"),
    )
    return await _promoted(ctx, body, outcome, done, token="auto", actor=OPERATOR)


async def _promoted(
    ctx: OperatorContext,
    body: kopf.Body,
    outcome: Outcome,
    done: promotions.Promotion,
    *,
    token: str,
    actor: str,
) -> tuple[Outcome, dict[str, Any]]:
    message = decide.promotion_message(done.env, done.from_version, done.epoch)
    _normal(body, reason="Promoted", message=message)
    if done.from_version:
        await effects.refresh_active(ctx, done.from_version)
    new = Outcome(**{**outcome.__dict__, "active_in": done.env, "superseded_by": None})
    return new, decide.action_record("promote", token, actor, message, _now())


async def _act(
    ctx: OperatorContext, body: kopf.Body, outcome: Outcome, request: ActionRequest
) -> tuple[Outcome, dict[str, Any]]:
    """Carry out a person's promote or rollback, or record why not."""
    refused = decide.refusal(outcome, request)
    if refused is not None:
        kopf.warn(body, reason=refused.reason, message=refused.message)
        ACTIONS_REFUSED.labels(kind="PolicySnapshot", action=request.action).inc()
        return outcome, decide.action_record(
            request.action, request.token, request.actor, refused.outcome, _now()
        )
    env = body["spec"]["env"]
    key = decide.action_key(body["metadata"]["uid"], request.token)
    if request.action == "promote":
        assert outcome.snapshot_id is not None
        done = await promotions.promote(
            ctx,
            snapshot_id=outcome.snapshot_id,
            env=env,
            actor=request.actor,
            reason=request.reason,
            idempotency_key=key,
        )
        return await _promoted(ctx, body, outcome, done, token=request.token, actor=request.actor)
    try:
        back = await promotions.roll_back(
            ctx, env=env, actor=request.actor, reason=request.reason, idempotency_key=key
        )
    except PKGError as exc:
        kopf.warn(body, reason="RollbackRefused", message=str(exc))
        ACTIONS_REFUSED.labels(kind="PolicySnapshot", action="rollback").inc()
        return outcome, decide.action_record(
            "rollback", request.token, request.actor, f"refused: {exc}", _now()
        )
    _normal(body, reason="RolledBack", message=f"rolled {env} back to {back.to_version}")
    await effects.refresh_active(ctx, back.to_version)
    new = Outcome(**{**outcome.__dict__, "active_in": None, "superseded_by": back.to_version})
    return new, decide.action_record(
        "rollback",
        request.token,
        request.actor,
        f"rolled {env} back to {back.to_version} (epoch {back.epoch})",
        _now(),
    )


async def deleted(
    ctx: OperatorContext,
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
) -> None:
    """Archive the snapshot's row, or hold the deletion (finalizer) while it is in use."""
    env = spec.get("env")

    def hold(reason: str, message: str) -> kopf.TemporaryError:
        patch.status["conditions"] = set_condition(
            list(status.get("conditions") or []),
            "DeletionHeld",
            "True",
            reason,
            message,
            int(meta.get("generation") or 1),
            _now(),
        )
        kopf.warn(body, reason="DeletionHeld", message=message)
        return kopf.TemporaryError(message, delay=30)

    try:
        # The row this resource owns, found by its uid, never by what its status says:
        # a resource refused for a version another one owns has no row, and deleting it
        # must not touch the owner's.
        owned = await ctx.db.get_snapshot_info(resource_uid=meta["uid"])
        if owned is None or owned.get("archived_at") is not None:
            return  # never stored, or already archived: nothing to keep
        snapshot_id = int(owned["id"])
        active = await ctx.db.get_active_snapshot_summary(env) if env else None
        if active is not None and active.id == snapshot_id:
            raise hold(
                "ActiveSnapshot",
                f"{spec['version']} is the active snapshot of {env}: promote another "
                "snapshot or roll back first; the finalizer holds it until then",
            )
        try:
            await ctx.db.archive_snapshot(
                snapshot_id, actor=OPERATOR, reason=f"PolicySnapshot {meta['name']} deleted"
            )
        except SnapshotInUseError as exc:
            raise hold("StillDeployed", f"{exc}; the finalizer holds it until then") from exc
    except DatabaseUnavailableError as exc:
        raise kopf.TemporaryError(f"PostgreSQL is unavailable: {exc}", delay=RETRY_DELAY) from exc
    _normal(
        body,
        reason="Archived",
        message=f"{spec['version']} archived in PostgreSQL; its audit history is kept",
    )
