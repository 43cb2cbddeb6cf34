"""What every handler needs: the settings and the clients for PostgreSQL and Redis.

``open_context`` runs once at start-up: it applies the migrations when
configured, and checks both connections, so that a wrong URL or an unreachable
server stops the operator at once with a message that says which and what to do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

import redis.asyncio as aioredis

from evaluator_sidecar.signals import RedisSignals
from evaluator_sidecar.signals.connect import connect_redis
from evaluator_sidecar.store import PKGClient
from evaluator_sidecar.store.migrations import apply_migrations
from pkg_operator import crashpoints
from pkg_operator.settings import OperatorSettings

__all__ = ["DB_WRITES", "REDIS_WRITES", "ContextError", "OperatorContext", "open_context"]

#: The store client's and the signals publisher's methods that write: the crash points of
#: the chaos suite (pkg_operator.crashpoints) when its test-only settings arm them.
DB_WRITES = frozenset(
    {
        "store_snapshot",
        "store_snapshot_spec",
        "archive_snapshot",
        "restore_snapshot",
        "create_temporal_fact",
        "expire_temporal_fact",
        "delete_temporal_fact",
        "upsert_deployment",
        "create_validation_run",
        "finish_validation_run",
        "validate_snapshot",
        "create_promotion",
        "promote_snapshot",
        "rollback_snapshot",
        "update_device_heartbeat",
        "update_device_heartbeats",
        "update_device_counters",
        "capture_step_baseline",
        "record_shadow_diffs",
        "append_audit",
    }
)
REDIS_WRITES = frozenset(
    {
        "publish_desired",
        "publish_new_desired",
        "publish_facts_level",
        "publish_activate",
        "raise_epoch_floor",
        "ack_heartbeats",
    }
)

log = logging.getLogger(__name__)


class ContextError(RuntimeError):
    """PostgreSQL or Redis cannot be used; the message names which and what to check."""


@dataclass
class OperatorContext:
    settings: OperatorSettings
    db: PKGClient
    redis: aioredis.Redis
    signals: RedisSignals
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("background task %s failed while stopping", task.get_name())
        await self.db.close()
        await self.redis.aclose()


async def open_context(settings: OperatorSettings) -> OperatorContext:
    if settings.migrate_on_start:
        applied = await apply_migrations(settings.database_url)
        names = [migration.name for migration in applied]
        log.info("migrations applied at start: %s", ", ".join(names) or "none pending")
    db = await PKGClient.connect(settings.database_url)
    redis = connect_redis(**settings.redis_options(), socket_connect_timeout=5)
    try:
        await asyncio.wait_for(redis.ping(), timeout=10)
    except (OSError, aioredis.RedisError, TimeoutError) as exc:
        await db.close()
        await redis.aclose()
        raise ContextError(
            f"Redis at {settings.redis_url.split('@')[-1]} does not answer ({exc}); check "
            "PKG_REDIS_URL (and PKG_REDIS_SENTINELS, PKG_REDIS_TLS_*) and that Redis is running "
            "and reachable from the operator"
        ) from exc
    signals = RedisSignals(redis)
    await signals.ensure_heartbeat_group()
    crashpoints.configure(crash_at=settings.test_crash_at, record=settings.test_crash_record)
    if crashpoints.enabled():
        db = cast(PKGClient, crashpoints.CrashingProxy(db, prefix="pg", writes=DB_WRITES))
        signals = cast(
            RedisSignals, crashpoints.CrashingProxy(signals, prefix="redis", writes=REDIS_WRITES)
        )
    return OperatorContext(settings=settings, db=db, redis=redis, signals=signals)
