"""One pass of the level reconciler, and the repair of one rollout's level.

An environment's level must name its active snapshot in PostgreSQL; a
rollout's level must be what its PolicyDeployment's status says was published
(the rollout state machine owns that status; ``rollout.reconcile`` calls
:func:`repair_rollout` at every tick, before deciding). A level that is missing
or different is rewritten: see :mod:`pkg_operator.levels.effects`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evaluator_sidecar import signals as sig
from pkg_operator.context import OperatorContext
from pkg_operator.levels import effects
from pkg_operator.levels.decide import Level, Ref, Repair, decide

__all__ = ["reconcile_environments", "repair_rollout", "rollout_level"]


async def _rewrite(
    ctx: OperatorContext,
    repair: Repair,
    *,
    trigger: str,
    owner: Mapping[str, Any] | None = None,
) -> None:
    state = effects.state_of(repair.wanted, f"repair: {repair.reason}: {repair.detail}")
    written = await effects.publish(ctx, state, floor=repair.floor)
    await effects.record_repair(ctx, repair, written, trigger=trigger, owner=owner)


async def reconcile_environments(
    ctx: OperatorContext, envs: Sequence[str], *, trigger: str
) -> list[Repair]:
    """Rewrite every environment's level that differs from PostgreSQL; the repairs made."""
    wanted = await effects.wanted_env_levels(ctx, envs)
    found = await effects.found_levels(ctx, [level.key for level in wanted])
    repairs = decide(wanted, found)
    for repair in repairs:
        await _rewrite(ctx, repair, trigger=trigger)
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
