"""The kopf handlers: thin glue from Kubernetes to the operator's logic and clients.

Each handler reads the object, calls the logic (pure functions for what the
status should say and what a rollout does next; idempotent steps for storing,
validating and promoting), and applies the result: a status patch, events,
rows in PostgreSQL, a desired state in Redis.

kopf's own bookkeeping lives under this project's names: progress and the diff
base in ``kopf.pkg.seedcore.io/*`` annotations, the finalizer
``pkg.seedcore.io/finalizer``. Handlers return nothing, so kopf writes nothing
under ``status`` on its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from redis.exceptions import RedisError

from evaluator_sidecar.db.errors import DatabaseUnavailableError, PKGError, SnapshotInUseError
from pkg_operator import heartbeats, promotions, snapshots
from pkg_operator.actions import SNAPSHOT_ACTIONS, ActionError, ActionRequest, parse_action
from pkg_operator.api import ACTION_ANNOTATION, DEPLOYMENTS, FINALIZER, KOPF_PREFIX, SNAPSHOTS
from pkg_operator.conditions import set_condition
from pkg_operator.context import OperatorContext, open_context
from pkg_operator.rollout import reconcile as rollout
from pkg_operator.settings import OperatorSettings
from pkg_operator.snapshot_status import Outcome, snapshot_status

__all__ = ["build_registry"]

#: How long to wait before retrying after PostgreSQL or Redis failed.
RETRY_DELAY = 10.0

log = logging.getLogger(__name__)


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings: our annotation prefix and finalizer, peering, event posting."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # The diff base leaves out spec: a PolicySnapshot's spec is immutable (so its diff is
    # never needed) and can hold thousands of rules or an inline WASM module, far more
    # than the API server's 256 KiB limit for all of an object's annotations.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration", ignored_fields=["spec"]
    )
    settings.peering.clusterwide = True
    settings.peering.mandatory = not ours.standalone
    settings.peering.standalone = ours.standalone
    settings.peering.lifetime = ours.peering_lifetime_seconds
    # Only the operator's explicit events and warnings reach `kubectl describe`.
    settings.posting.level = logging.WARNING


def _normal(body: kopf.Body, *, reason: str, message: str) -> None:
    """A Normal event. kopf.info() would be dropped: posting.level keeps kopf's own
    per-handler log lines out of events, and kopf.info() obeys the same level."""
    kopf.event(body, type="Normal", reason=reason, message=message)


def _ctx(memo: Any) -> OperatorContext:
    ctx: OperatorContext = memo.ctx
    return ctx


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pending_action(meta: Mapping[str, Any], status: Mapping[str, Any]) -> ActionRequest | None:
    """The person's action in the annotation, unless it was already carried out (same token)."""
    raw = (meta.get("annotations") or {}).get(ACTION_ANNOTATION)
    if not raw:
        return None
    request = parse_action(raw, SNAPSHOT_ACTIONS)
    done = (status.get("lastAction") or {}).get("token")
    return None if request.token == done else request


async def _reconcile_snapshot(
    *,
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: Any,
    logger: kopf.Logger,
) -> None:
    ctx = _ctx(memo)
    generation = int(meta.get("generation") or 1)
    loaded = await snapshots.load(body)
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
        if reason == "ArtifactUnavailable":
            # The ConfigMap may appear later; every other rejection is final (spec is immutable).
            raise kopf.TemporaryError(message, delay=30)
        return
    try:
        outcome = await snapshots.store_and_validate(ctx, body, loaded)
        last_action: dict[str, Any] | None = None
        try:
            request = _pending_action(meta, status)
        except ActionError as exc:
            kopf.warn(body, reason="InvalidAction", message=str(exc))
            request = None
        if outcome.rejected is not None:
            pass  # reported below; no action applies to a snapshot that was not stored
        elif request is not None:
            outcome, last_action = await _snapshot_action(ctx, body, outcome, request)
        elif spec.get("autoPromote") and _auto_promotable(outcome):
            outcome, last_action = await _auto_promote(ctx, body, outcome)
    except DatabaseUnavailableError as exc:
        message = f"PostgreSQL is unavailable ({exc}); retrying every {RETRY_DELAY:.0f}s"
        _not_synced(patch, status, generation, "DatabaseUnavailable", message)
        raise kopf.TemporaryError(message, delay=RETRY_DELAY) from exc
    except RedisError as exc:
        message = f"Redis is unavailable ({exc}); retrying every {RETRY_DELAY:.0f}s"
        _not_synced(patch, status, generation, "RedisUnavailable", message)
        raise kopf.TemporaryError(message, delay=RETRY_DELAY) from exc
    new_status = snapshot_status(outcome, previous=status, generation=generation, now=_now())
    if last_action is not None:
        new_status["lastAction"] = last_action
    patch.status.update(new_status)
    if outcome.rejected is not None:
        reason, message = outcome.rejected
        kopf.warn(body, reason=reason, message=message)
    validation = outcome.validation
    if validation is not None and not validation.success:
        kopf.warn(body, reason="FixturesFailed", message=validation.message)


def _not_synced(
    patch: kopf.Patch, status: kopf.Status, generation: int, reason: str, message: str
) -> None:
    """Say in the status why reconciliation is stuck (kopf applies the patch, then retries)."""
    patch.status["conditions"] = set_condition(
        list(status.get("conditions") or []), "Synced", "False", reason, message, generation, _now()
    )


def _auto_promotable(outcome: Outcome) -> bool:
    return (
        outcome.active_in is None
        and outcome.superseded_by is None
        and outcome.validation is not None
        and outcome.validation.success
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
        return outcome, _action_record(
            "promote", "auto", "operator", "skipped: a newer one is promoted"
        )
    done = await promotions.promote(
        ctx,
        snapshot_id=outcome.snapshot_id,
        env=spec["env"],
        actor="pkg-operator (autoPromote)",
        reason="spec.autoPromote: promoted once Ready",
        idempotency_key=f"{meta['uid']}:auto",
    )
    _normal(body, reason="Promoted", message=_promotion_message(done))
    await _mark_superseded(ctx, body, done)
    return (
        Outcome(**{**outcome.__dict__, "active_in": done.env, "superseded_by": None}),
        _action_record("promote", "auto", "pkg-operator", _promotion_message(done)),
    )


async def _snapshot_action(
    ctx: OperatorContext, body: kopf.Body, outcome: Outcome, request: ActionRequest
) -> tuple[Outcome, dict[str, Any]]:
    spec, meta = body["spec"], body["metadata"]
    env = spec["env"]
    key = f"{meta['uid']}:{request.token}"
    if request.action not in ("promote", "rollback"):
        message = (
            f"a PolicySnapshot accepts the actions promote and rollback, not {request.action!r}"
        )
        kopf.warn(body, reason="InvalidAction", message=message)
        return outcome, _action_record(
            request.action, request.token, request.actor, f"refused: {message}"
        )
    if request.action == "promote":
        if outcome.validation is None or not outcome.validation.success:
            message = "refused: only a Ready snapshot (stored and validated) can be promoted"
            kopf.warn(body, reason="PromotionRefused", message=message)
            return outcome, _action_record("promote", request.token, request.actor, message)
        assert outcome.snapshot_id is not None
        done = await promotions.promote(
            ctx,
            snapshot_id=outcome.snapshot_id,
            env=env,
            actor=request.actor,
            reason=request.reason,
            idempotency_key=key,
        )
        await _mark_superseded(ctx, body, done)
        _normal(body, reason="Promoted", message=_promotion_message(done))
        new = Outcome(**{**outcome.__dict__, "active_in": env, "superseded_by": None})
        return new, _action_record(
            "promote", request.token, request.actor, _promotion_message(done)
        )
    if outcome.active_in is None:
        message = (
            "refused: only the active snapshot can be rolled back; to activate another "
            "version, promote it"
        )
        kopf.warn(body, reason="RollbackRefused", message=message)
        return outcome, _action_record("rollback", request.token, request.actor, message)
    try:
        done = await promotions.roll_back(
            ctx, env=env, actor=request.actor, reason=request.reason, idempotency_key=key
        )
    except PKGError as exc:
        kopf.warn(body, reason="RollbackRefused", message=str(exc))
        return outcome, _action_record("rollback", request.token, request.actor, f"refused: {exc}")
    _normal(body, reason="RolledBack", message=f"rolled {env} back to {done.to_version}")
    await snapshots.refresh_active(ctx, done.to_version)
    new = Outcome(**{**outcome.__dict__, "active_in": None, "superseded_by": done.to_version})
    return new, _action_record(
        "rollback",
        request.token,
        request.actor,
        f"rolled {env} back to {done.to_version} (epoch {done.epoch})",
    )


def _promotion_message(done: promotions.Promotion) -> str:
    previous = f" (replacing {done.from_version})" if done.from_version else ""
    return f"active in {done.env}{previous}; sidecars signalled at epoch {done.epoch}"


def _action_record(action: str, token: str, actor: str, outcome: str) -> dict[str, Any]:
    return {
        "action": action,
        "token": token,
        "actor": actor,
        "outcome": outcome,
        "at": _now().isoformat().replace("+00:00", "Z"),
    }


async def _mark_superseded(
    ctx: OperatorContext, body: kopf.Body, done: promotions.Promotion
) -> None:
    if done.from_version:
        await snapshots.refresh_active(ctx, done.from_version)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """A fresh registry with every handler (a fresh one per operator run, and per test)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(*, settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        ours: OperatorSettings = memo.settings
        configure_kopf(settings, ours)
        memo.ctx = await open_context(ours)
        memo.ctx.tasks.append(heartbeats.start_folder(memo.ctx))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(*, memo: kopf.Memo, **_: Any) -> None:
        if "ctx" in memo:
            await _ctx(memo).close()

    @kopf.on.resume(*SNAPSHOTS, registry=registry)
    @kopf.on.create(*SNAPSHOTS, registry=registry)
    @kopf.on.update(*SNAPSHOTS, registry=registry)
    async def snapshot_changed(
        *,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        await _reconcile_snapshot(
            body=body, meta=meta, spec=spec, status=status, patch=patch, memo=memo, logger=logger
        )

    @kopf.on.delete(*SNAPSHOTS, registry=registry)
    async def snapshot_deleted(
        *,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        ctx = _ctx(memo)
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
            # The row this resource owns, found by its uid, never by what its status
            # says: a resource refused for a version another one owns has no row, and
            # deleting it must not touch the owner's.
            owned = await ctx.db.get_snapshot_info(resource_uid=meta["uid"])
            if owned is None or owned.get("archived_at") is not None:
                return  # never stored, or already archived: nothing to keep
            snapshot_id = int(owned["id"])
            active = await ctx.db.get_active_snapshot(env) if env else None
            if active is not None and active.id == snapshot_id:
                raise hold(
                    "ActiveSnapshot",
                    f"{spec['version']} is the active snapshot of {env}: promote another "
                    "snapshot or roll back first; the finalizer holds it until then",
                )
            try:
                await ctx.db.archive_snapshot(
                    snapshot_id,
                    actor="pkg-operator",
                    reason=f"PolicySnapshot {meta['name']} deleted",
                )
            except SnapshotInUseError as exc:
                raise hold("StillDeployed", f"{exc}; the finalizer holds it until then") from exc
        except DatabaseUnavailableError as exc:
            raise kopf.TemporaryError(
                f"PostgreSQL is unavailable: {exc}", delay=RETRY_DELAY
            ) from exc
        _normal(
            body,
            reason="Archived",
            message=f"{spec['version']} archived in PostgreSQL; its audit history is kept",
        )

    # The PolicyDeployment rollout (pkg_operator.rollout, docs/rollout-state-machine.md):
    # one timer per deployment, the only writer of its status, and the two indexes it reads.
    interval = settings.rollout_interval_seconds

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
            await rollout.tick(memo.ctx, body, memo, snapshots, deployments)
        except DatabaseUnavailableError as exc:
            raise kopf.TemporaryError(f"PostgreSQL is unavailable: {exc}", delay=interval) from exc

    return registry
