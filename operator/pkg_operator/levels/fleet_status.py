"""Refresh an active PolicySnapshot's FleetConverged condition and ``status.fleet``.

Run by the snapshot's ``levels_lease`` timer (every ``PKG_LEVEL_RESYNC_SECONDS``),
from the live heartbeats in Redis (``pkg:hb:{env}:*``, which expire with the
sidecars' heartbeat TTL): the same reports the operator folds into
``pkg_device_versions``. A snapshot that is no longer active loses both.

Written with the resourceVersion the timer saw, not through kopf's patch: a merge patch
replaces ``conditions`` whole, and a timer that read the object before its handler
wrote Ready must not write the old list back. A conflict waits for the next tick.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

from pkg_operator import kube
from pkg_operator.conditions import format_time, set_condition
from pkg_operator.context import OperatorContext
from pkg_operator.levels.fleet import DeviceReport, fleet_view

__all__ = ["refresh_fleet"]

log = logging.getLogger(__name__)

CONDITION = "FleetConverged"


def _active_env(status: Mapping[str, Any]) -> str | None:
    for item in status.get("conditions") or []:
        if item.get("type") == "Active" and item.get("status") == "True":
            env = status.get("activeIn")
            return str(env) if env else None
    return None


async def refresh_fleet(
    ctx: OperatorContext,
    *,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
) -> None:
    conditions = list(status.get("conditions") or [])
    env = _active_env(status)
    if env is None:
        if any(c.get("type") == CONDITION for c in conditions):
            kept = [c for c in conditions if c.get("type") != CONDITION]
            await _write(meta, {"conditions": kept, "fleet": None})
        return
    version = str(spec.get("version") or "")
    try:
        beats = await ctx.signals.live_heartbeats(env)
    except (RedisError, OSError) as exc:
        log.debug("heartbeats of %s unavailable (%s); FleetConverged left as it is", env, exc)
        return
    view = fleet_view(version, env, [DeviceReport(b.device_id, b.version, b.cohort) for b in beats])
    now = dt.datetime.now(dt.UTC)
    updated = set_condition(
        conditions,
        CONDITION,
        view.status,
        view.reason,
        view.message,
        int(meta.get("generation") or 0),
        now,
    )
    previous = {k: v for k, v in (status.get("fleet") or {}).items() if k != "observedAt"}
    if updated != conditions or previous != view.summary:
        await _write(
            meta, {"conditions": updated, "fleet": {**view.summary, "observedAt": format_time(now)}}
        )


async def _write(meta: Mapping[str, Any], status: dict[str, Any]) -> None:
    try:
        await kube.patch_status(
            "policysnapshots",
            str(meta["namespace"]),
            str(meta["name"]),
            status,
            resource_version=str(meta["resourceVersion"]),
            crash_point="fleet_status",
        )
    except kube.Conflict as exc:
        log.debug("FleetConverged not written (%s); the next tick reads it again", exc)
