"""One pass of the level reconciler, and the repair of one rollout's level.

An environment's level must name its active snapshot in PostgreSQL; a
rollout's level must be what its PolicyDeployment's status says was published
(the rollout state machine owns that status; ``rollout.reconcile`` calls
:func:`repair_rollout` at every tick, before deciding). A level that is missing
or different is rewritten: see :mod:`pkg_operator.levels.effects`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from evaluator_sidecar import signals as sig
from pkg_operator import kube
from pkg_operator.context import OperatorContext
from pkg_operator.levels import effects
from pkg_operator.levels.decide import Level, Ref, Repair, decide
from pkg_operator.snapshot.effects import refresh_active

__all__ = ["reconcile_environments", "repair_rollout", "rollout_level"]

log = logging.getLogger(__name__)


async def _rewrite(
    ctx: OperatorContext,
    repair: Repair,
    *,
    trigger: str,
    owner: Mapping[str, Any] | None = None,
    post_event: effects.PostEvent | None = None,
) -> None:
    state = effects.state_of(repair.wanted, f"repair: {repair.reason}: {repair.detail}")
    written = await effects.publish(ctx, state, floor=repair.floor)
    await effects.record_repair(
        ctx, repair, written, trigger=trigger, owner=owner, post_event=post_event
    )


async def _was_active(version: str, ctx: OperatorContext) -> bool:
    place = await ctx.db.snapshot_resource(version)
    if place is None or not place[0]:
        return False
    obj = await kube.get_object("policysnapshots", place[0], place[1])
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Active" and c.get("status") == "True" for c in conditions)


async def _refresh_snapshots(ctx: OperatorContext, repair: Repair) -> None:
    """A level that named another snapshot may mean a promotion made without the operator
    (SQL, PKGClient): set the PolicySnapshots' Active conditions from PostgreSQL too."""
    try:
        if repair.wanted.stable is not None:
            await refresh_active(ctx, repair.wanted.stable.version)
        old = None if repair.found is None else repair.found.stable
        if old is not None and await _was_active(old.version, ctx):
            await refresh_active(ctx, old.version)
    except Exception:  # the level is repaired; the conditions follow at the next pass
        log.exception(
            "refreshing the Active conditions after repairing %s failed", repair.wanted.key
        )


async def reconcile_environments(
    ctx: OperatorContext,
    envs: Sequence[str],
    *,
    trigger: str,
    post_event: effects.PostEvent | None = None,
) -> list[Repair]:
    """Rewrite every environment's level that differs from PostgreSQL; the repairs made."""
    wanted = await effects.wanted_env_levels(ctx, envs)
    found = await effects.found_levels(ctx, [level.key for level in wanted])
    repairs = decide(wanted, found)
    for repair in repairs:
        await _rewrite(ctx, repair, trigger=trigger, post_event=post_event)
        await _refresh_snapshots(ctx, repair)
    return repairs


def _status_ref(value: Any) -> Ref | None:
    if not isinstance(value, Mapping) or not value.get("version"):
        return None
    snapshot_id = value.get("snapshotId")
    return Ref(
        str(value["version"]),
        int(snapshot_id) if isinstance(snapshot_id, int) else None,
        str(value.get("checksum") or "") or None,
    )


def rollout_level(
    status: Mapping[str, Any], *, uid: str, env: str, target: str, region: str
) -> Level | None:
    """The level a deployment's status says is published; None before its first publication."""
    if not status.get("lastPublish"):
        return None
    canary = _status_ref(status.get("canary"))
    weight = float(status.get("weight") or 0.0) if canary is not None else 0.0
    return Level(
        key=sig.rollout_key(env, target, region),
        env=env,
        stable=_status_ref(status.get("stable")),
        target=target,
        region=region,
        deployment=uid,
        canary=canary,
        canary_percent=weight,
        shadow=_status_shadow(status.get("shadow")),
        prepare=_status_prepare(status.get("prepare")),
    )


def _status_prepare(value: Any) -> sig.PrepareSpec | None:
    ref = _status_ref(value)
    if ref is None or not isinstance(value, Mapping):
        return None
    return sig.PrepareSpec(ref, float(value.get("weight") or 0.0))


def _status_shadow(value: Any) -> sig.ShadowSpec | None:
    ref = _status_ref(value)
    if ref is None or not isinstance(value, Mapping) or not value.get("step"):
        return None
    return sig.ShadowSpec(
        ref,
        float(value.get("sampleRate") or 0.0),
        str(value["step"]),
        str(value.get("deploymentName") or ""),
    )


async def repair_rollout(
    ctx: OperatorContext,
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    env: str,
    target: str,
    region: str,
) -> Repair | None:
    """Rewrite this rollout's level when Redis holds none or another one; the repair made."""
    wanted = rollout_level(
        status, uid=str(body["metadata"]["uid"]), env=env, target=target, region=region
    )
    if wanted is None:
        return None
    found = await effects.found_levels(ctx, [wanted.key])
    repairs = decide([wanted], found)
    if not repairs:
        return None
    await _rewrite(ctx, repairs[0], trigger="rollout", owner=body)
    return repairs[0]
