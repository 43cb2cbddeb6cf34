"""What every handler needs: the settings and the clients for PostgreSQL and Redis.

``open_context`` runs once at start-up: it applies the migrations when
configured, and checks both connections, so that a wrong URL or an unreachable
server stops the operator at once with a message that says which and what to do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from evaluator_sidecar.signals import RedisSignals
from evaluator_sidecar.signals.connect import connect_redis
from evaluator_sidecar.store import PKGClient
from evaluator_sidecar.store.migrations import apply_migrations
from pkg_operator.settings import OperatorSettings

__all__ = ["ContextError", "OperatorContext", "open_context"]

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
    return OperatorContext(settings=settings, db=db, redis=redis, signals=signals)
