"""Remove the rollout levels in Redis that no PolicyDeployment owns.

A level left behind by a deleted PolicyDeployment, or written by hand, would
steer its target's sidecars for ever. Each pass of the level reconciler scans
the rollout keys FIRST and lists the PolicyDeployments (every namespace)
second, so a deployment created in between owns its key by the time it is
judged. For each unowned level: a withdrawal (the same place naming no
snapshot, a new epoch, announced) sends the sidecars back to their
environment's level at once, whatever their version; the key is then deleted
(only if it still holds that withdrawal), and a sidecar that missed the
withdrawal drops the vanished rollout level at its next read of the levels
(``DesiredTracker.merge_levels``). Each removal leaves an audit row
``desired.removed``, a log line, the counter
``pkg_operator_desired_repairs_total{kind="rollout",reason="unowned"}`` and a
Warning event ``DesiredStateRemoved`` on the PolicySnapshot the level named
(else the environment's active one), when there is one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from redis.exceptions import WatchError

from evaluator_sidecar import signals as sig
from pkg_operator import kube
from pkg_operator.context import OperatorContext
from pkg_operator.levels import effects
from pkg_operator.levels.decide import Level
from pkg_operator.levels.owners import owned_key, unowned, withdrawal

__all__ = ["remove_unowned"]

log = logging.getLogger(__name__)

_PATTERN = "pkg:desired:*:*:*"  # a rollout key: env, target (may hold ':') and region


async def _owned_keys(ctx: OperatorContext) -> set[str] | None:
    """The rollout keys the PolicyDeployments own; None when they cannot be listed."""
    del ctx  # the list comes from the API server, not from the context
    try:
        items = await kube.list_objects("policydeployments")
    except Exception as exc:  # noqa: BLE001 - without the list nothing may be removed
        log.warning(
            "cannot list PolicyDeployments (%s); no rollout level is removed this pass",
            str(exc) or type(exc).__name__,
        )
        return None
    keys = {owned_key(item.get("spec") or {}) for item in items}
    return {key for key in keys if key is not None}


async def _delete_if_still(ctx: OperatorContext, key: str, epoch: int) -> bool:
    """Delete ``key`` only while it holds the withdrawal written at ``epoch``."""
    async with ctx.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(key)
            raw = await pipe.get(key)
            if raw is None:
                return True
            with contextlib.suppress(sig.MessageError):
                if sig.DesiredState.from_json(raw, key).epoch != epoch:
                    return False
            pipe.multi()  # type: ignore[no-untyped-call, unused-ignore]
            pipe.delete(key)
            await pipe.execute()
            return True
        except WatchError:
            return False  # written in between: the next pass judges it again


async def _event_body(ctx: OperatorContext, level: Level) -> Any:
    for ref in (level.canary, level.stable):
        if ref is not None:
            with contextlib.suppress(Exception):
                body = await effects.snapshot_body(ctx, ref.version)
                if body is not None:
                    return body
    active = await effects.wanted_env_levels(ctx, [level.env])
    if active and active[0].stable is not None:
        return await effects.snapshot_body(ctx, active[0].stable.version)
    return None


async def _remove(
    ctx: OperatorContext, level: Level, *, trigger: str, post_event: effects.PostEvent | None
) -> bool:
    reason = "no PolicyDeployment owns it"
    state = effects.state_of(withdrawal(level), f"withdrawn: {reason}")
    written = await effects.publish(ctx, state, floor=level.epoch)
    if not await _delete_if_still(ctx, level.key, written.epoch):
        log.info("%s was written again while being removed; left to the next pass", level.key)
        return False
    effects.REPAIRS.labels(kind="rollout", reason="unowned").inc()
    message = (
        f"removed the rollout level {level.key} ({reason}; it named "
        f"{'nothing' if level.stable is None else level.stable.describe()}"
        f"{'' if level.canary is None else f', canary {level.canary.describe()}'}"
        f" at epoch {level.epoch}); its sidecars follow the environment's level"
    )
    log.warning(
        message,
        extra={
            "event": "desired_state_removed",
            "key": level.key,
            "found_epoch": level.epoch,
            "withdrawal_epoch": written.epoch,
            "trigger": trigger,
        },
    )
    await ctx.db.append_audit(
        "desired.removed",
        actor="pkg-operator",
        entity_type="desired_state",
        entity_id=level.key,
        snapshot_id=None if level.stable is None else level.stable.snapshot_id,
        details={
            "key": level.key,
            "reason": "unowned",
            "found": level.to_dict(),
            "withdrawal_epoch": written.epoch,
            "trigger": trigger,
        },
    )
    try:
        body = await _event_body(ctx, level)
        if body is not None:
            (post_event or effects.kopf_event)(body, "Warning", "DesiredStateRemoved", message)
    except Exception:  # an event is a courtesy; the removal is done and audited
        log.exception("posting the DesiredStateRemoved event for %s failed", level.key)
    return True


async def remove_unowned(
    ctx: OperatorContext, *, trigger: str, post_event: effects.PostEvent | None = None
) -> list[str]:
    """Withdraw and delete every rollout level no PolicyDeployment owns; the keys removed."""
    keys = [key async for key in ctx.redis.scan_iter(match=_PATTERN, count=500)]
    found = await effects.found_levels(
        ctx, [k.decode() if isinstance(k, bytes) else k for k in keys]
    )
    if not found:
        return []
    owned = await _owned_keys(ctx)  # after the scan: see the module's docstring
    if owned is None:
        return []
    removed = []
    for level in unowned(found, owned):
        if await _remove(ctx, level, trigger=trigger, post_event=post_event):
            removed.append(level.key)
    return removed
