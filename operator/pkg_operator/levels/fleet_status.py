"""Refresh an active PolicySnapshot's FleetConverged condition and ``status.fleet``.

Run by the snapshot's ``levels_lease`` timer (every ``PKG_LEVEL_RESYNC_SECONDS``),
from the live heartbeats in Redis (``pkg:hb:{env}:*``, which expire with the
sidecars' heartbeat TTL): the same reports the operator folds into
``pkg_device_versions``. A snapshot that is no longer active loses both.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from redis.exceptions import RedisError

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
    patch: kopf.Patch,
) -> None:
    conditions = list(status.get("conditions") or [])
    env = _active_env(status)
    if env is None:
        if any(c.get("type") == CONDITION for c in conditions):
            patch.status["conditions"] = [c for c in conditions if c.get("type") != CONDITION]
            patch.status["fleet"] = None
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
        patch.status["conditions"] = updated
        patch.status["fleet"] = {**view.summary, "observedAt": format_time(now)}
