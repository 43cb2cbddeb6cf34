"""The reconciler's I/O: epochs from PostgreSQL, levels read from and written to Redis,
and the record of every repair (audit row, Kubernetes event, log line, counter).

Every desired state the operator writes goes through :func:`publish`: its epoch
comes from PostgreSQL's sequence (``pkg_next_desired_epoch``), above the epoch
stored at the key and above Redis's counter ``pkg:epoch`` (which the sidecars
raise to the epoch they applied), so a Redis that lost its data never makes a
new level look old to the sidecars.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import kopf

from evaluator_sidecar import signals as sig
from evaluator_sidecar.store.levels import PKGLevelsDAO
from pkg_operator import kube
from pkg_operator.api import GROUP, VERSION
from pkg_operator.context import OperatorContext
from pkg_operator.levels.decide import Level, Ref, Repair
from pkg_operator.metrics import AUDIT_ROWS, REPAIRS

__all__ = [
    "REPAIRS",
    "PostEvent",
    "found_levels",
    "kopf_event",
    "level_of",
    "publish",
    "record_repair",
    "snapshot_body",
    "state_of",
    "wanted_env_levels",
]

log = logging.getLogger(__name__)

_REPAIR_ACTOR = "pkg-operator"

#: Posts a Kubernetes event: (object, type, reason, message). kopf.event needs kopf's
#: context, which a task spawned at start-up lacks; the loop passes one that has it.
PostEvent = Callable[[Any, str, str, str], None]


def _kopf_event(body: Any, type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)


kopf_event = _kopf_event


def _dao(ctx: OperatorContext) -> PKGLevelsDAO:
    return PKGLevelsDAO(ctx.db.db)


async def _epoch_floor(ctx: OperatorContext, key: str) -> int:
    raw_counter, raw_level = await ctx.redis.mget([sig.EPOCH_KEY, key])
    floor = 0
    try:
        floor = int(raw_counter or 0)
    except ValueError:
        log.warning("%s holds %r, not an integer; ignoring it", sig.EPOCH_KEY, raw_counter)
    if raw_level is not None:
        with contextlib.suppress(sig.MessageError):  # a malformed level yields to any epoch
            floor = max(floor, sig.DesiredState.from_json(raw_level, key).epoch)
    return floor


async def publish(
    ctx: OperatorContext, state: sig.DesiredState, *, floor: int = 0, announce: bool = True
) -> sig.DesiredState:
    """Stamp ``state`` with a new epoch from PostgreSQL, write it and announce it.

    The epoch is above ``floor``, the epoch stored at the key and Redis's counter.
    A writer that stored a newer epoch in between makes the compare-and-set refuse;
    then a second epoch above it is taken, once.
    """
    levels = _dao(ctx)
    for _attempt in (1, 2):
        floor = max(floor, await _epoch_floor(ctx, state.key))
        epoch = await levels.next_desired_epoch(floor)
        stamped = replace(state, epoch=epoch, updated_at=time.time())
        if await ctx.signals.publish_desired(stamped, announce=announce):
            return stamped
    raise RuntimeError(f"{state.key}: another writer keeps storing newer epochs")


# ---- conversions between the signals' desired states and the pure levels


def level_of(state: sig.DesiredState) -> Level:
    return Level(
        key=state.key,
        env=state.env,
        stable=state.stable,
        target=state.target,
        region=state.region,
        deployment=state.deployment,
        canary=state.canary,
        canary_percent=state.canary_percent,
        epoch=state.epoch,
        shadow=state.shadow,
        prepare=state.prepare,
    )


def state_of(level: Level, reason: str) -> sig.DesiredState:
    return sig.DesiredState(
        epoch=0,
        env=level.env,
        stable=level.stable,
        reason=reason,
        target=level.target,
        region=level.region,
        deployment=level.deployment,
        canary=level.canary,
        canary_percent=level.canary_percent,
        shadow=level.shadow,
        prepare=level.prepare,
    )


# ---- reading both sides


async def wanted_env_levels(ctx: OperatorContext, envs: Sequence[str]) -> list[Level]:
    """Each environment's level as PostgreSQL says it must be (its active snapshot)."""
    active = await _dao(ctx).active_snapshots()
    out = []
    for env in envs:
        snap = active.get(env)
        stable = None if snap is None else Ref(snap.version, snap.snapshot_id, snap.checksum)
        out.append(Level(key=sig.env_key(env), env=env, stable=stable))
    return out


async def found_levels(ctx: OperatorContext, keys: Sequence[str]) -> dict[str, Level | None]:
    """The levels stored in Redis under ``keys`` (None: absent or malformed), one round trip."""
    if not keys:
        return {}
    raws = await ctx.redis.mget(list(keys))
    out: dict[str, Level | None] = {}
    for key, raw in zip(keys, raws, strict=True):
        if raw is None:
            out[key] = None
            continue
        try:
            out[key] = level_of(sig.DesiredState.from_json(raw, f"level {key}"))
        except sig.MessageError as exc:
            log.warning("level %s is malformed (%s); it will be rewritten", key, exc)
            out[key] = None
    return out


# ---- recording a repair


async def _snapshot_body(ctx: OperatorContext, version: str) -> Mapping[str, Any] | None:
    place = await ctx.db.snapshot_resource(version)
    if place is None or not place[0]:
        return None
    obj = await kube.get_object("policysnapshots", place[0], place[1])
    if obj is None:
        return None
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PolicySnapshot",
        "metadata": obj.get("metadata") or {},
    }


snapshot_body = _snapshot_body


async def record_repair(
    ctx: OperatorContext,
    repair: Repair,
    written: sig.DesiredState,
    *,
    trigger: str,
    owner: Mapping[str, Any] | None = None,
    post_event: PostEvent | None = None,
) -> None:
    """Audit row, Kubernetes event (on ``owner``, else the environment's active
    PolicySnapshot), log line and counter for one rewritten level."""
    kind = "rollout" if repair.wanted.is_rollout else "environment"
    found = None if repair.found is None else repair.found.to_dict()
    written_level = level_of(written)
    REPAIRS.labels(kind=kind, reason=repair.reason).inc()
    message = (
        f"the desired state {repair.wanted.key} was {repair.reason} in Redis "
        f"({repair.detail}); rewrote it at epoch {written.epoch}"
    )
    log.warning(
        message,
        extra={
            "event": "desired_state_repaired",
            "key": repair.wanted.key,
            "reason": repair.reason,
            "detail": repair.detail,
            "found_epoch": repair.floor,
            "epoch": written.epoch,
            "trigger": trigger,
        },
    )
    AUDIT_ROWS.labels(event="desired.repaired").inc()
    await ctx.db.append_audit(
        "desired.repaired",
        actor=_REPAIR_ACTOR,
        entity_type="desired_state",
        entity_id=repair.wanted.key,
        snapshot_id=None if repair.wanted.stable is None else repair.wanted.stable.snapshot_id,
        details={
            "key": repair.wanted.key,
            "reason": repair.reason,
            "detail": repair.detail,
            "found": found,
            "written": written_level.to_dict(),
            "trigger": trigger,
        },
    )
    body: Any = owner
    if body is None and repair.wanted.stable is not None and not repair.wanted.is_rollout:
        try:
            body = await _snapshot_body(ctx, repair.wanted.stable.version)
        except Exception:  # an event is a courtesy; the repair is done and audited
            log.exception("finding the PolicySnapshot of %s failed", repair.wanted.stable.version)
    if body is not None:
        try:
            (post_event or _kopf_event)(body, "Warning", "DesiredStateRepaired", message)
        except Exception:
            log.exception("posting the DesiredStateRepaired event failed")
