"""The facts levels' I/O: each environment's facts version from PostgreSQL, written to
Redis as ``pkg:facts:{env}`` with an epoch from PostgreSQL, and the record of a repair.

The level reconciler (:mod:`pkg_operator.levels.loop`) calls
:func:`reconcile_facts` on every pass: at start, on its timer, and after a
``NOTIFY pkg_facts`` (migration 0007's trigger, on every change to an
environment's facts, however it was made). A level written because a fact
changed is an ordinary publication (a log line); one written because Redis held
none or a version PostgreSQL does not have is a repair (also a counter and an
audit row ``facts.repaired``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

from evaluator_sidecar import signals as sig
from evaluator_sidecar.store.levels import PKGLevelsDAO
from pkg_operator.context import OperatorContext
from pkg_operator.levels.facts_decide import FactsRepair, decide_facts
from pkg_operator.metrics import FACTS_WRITES

__all__ = ["FACTS_WRITES", "reconcile_facts"]

log = logging.getLogger(__name__)


async def _found(ctx: OperatorContext, envs: Sequence[str]) -> dict[str, sig.FactsLevel | None]:
    keys = [sig.facts_key(env) for env in envs]
    raws = await ctx.redis.mget(keys)
    out: dict[str, sig.FactsLevel | None] = {}
    for env, key, raw in zip(envs, keys, raws, strict=True):
        level = None
        if raw is not None:
            try:
                level = sig.FactsLevel.from_json(raw, f"facts level {key}")
            except sig.MessageError as exc:
                log.warning("facts level %s is malformed (%s); it will be rewritten", key, exc)
        out[env] = level
    return out


async def _floor(ctx: OperatorContext, repair: FactsRepair) -> int:
    raw = await ctx.redis.get(sig.EPOCH_KEY)
    counter = 0
    with contextlib.suppress(TypeError, ValueError):
        counter = int(raw or 0)
    return max(counter, repair.floor)


async def _write(ctx: OperatorContext, repair: FactsRepair, trigger: str) -> sig.FactsLevel:
    dao = PKGLevelsDAO(ctx.db.db)
    floor = await _floor(ctx, repair)
    for _attempt in (1, 2):
        level = sig.FactsLevel(
            env=repair.env,
            version=repair.version,
            epoch=await dao.next_desired_epoch(floor),
            updated_at=time.time(),
            reason=f"{repair.reason} ({trigger})",
        )
        if await ctx.signals.publish_facts_level(level):
            return level
        floor = max(floor, level.epoch)
        found = await ctx.signals.read_facts_level(repair.env)
        if found is not None:
            floor = max(floor, found.epoch)
    raise RuntimeError(f"{sig.facts_key(repair.env)}: another writer keeps storing newer epochs")


async def _record(
    ctx: OperatorContext, repair: FactsRepair, level: sig.FactsLevel, trigger: str
) -> None:
    FACTS_WRITES.labels(reason=repair.reason).inc()
    extra = {
        "event": "facts_level_repaired" if repair.is_repair else "facts_level_published",
        "key": level.key,
        "env": repair.env,
        "version": repair.version,
        "epoch": level.epoch,
        "reason": repair.reason,
        "trigger": trigger,
    }
    if not repair.is_repair:
        log.info(
            "published facts version %d of %s at epoch %d",
            level.version,
            repair.env,
            level.epoch,
            extra=extra,
        )
        return
    log.warning(
        "the facts level %s was %s in Redis (%s); rewrote it at epoch %d",
        level.key,
        repair.reason,
        repair.detail,
        level.epoch,
        extra=extra,
    )
    await ctx.db.append_audit(
        "facts.repaired",
        actor="pkg-operator",
        entity_type="facts_level",
        entity_id=level.key,
        details={
            "key": level.key,
            "reason": repair.reason,
            "detail": repair.detail,
            "found": None if repair.found is None else repair.found.to_dict(),
            "written": level.to_dict(),
            "trigger": trigger,
        },
    )


async def reconcile_facts(
    ctx: OperatorContext, envs: Sequence[str], *, trigger: str
) -> list[FactsRepair]:
    """Write every environment's facts level that differs from PostgreSQL; those written."""
    wanted = await ctx.db.facts_versions()
    found = await _found(ctx, envs)
    repairs = decide_facts(envs, wanted, found)
    for repair in repairs:
        level = await _write(ctx, repair, trigger)
        await _record(ctx, repair, level, trigger)
    return repairs
