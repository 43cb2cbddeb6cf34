"""The heartbeat folder folds again within seconds of PostgreSQL's return, however long it was away.

Coverage, and so every rollout step, is read from what the folder writes into
``pkg_device_versions``. The chaos scenario outage/postgres-down-30s/mid-rollout found
the folder asleep in a back-off of up to 30 s after a 30 s outage, the rollout standing
still all that time. Here the operator's context reaches PostgreSQL through a fault
proxy that refuses it for 16 s, long enough for the old back-off to reach its cap;
a heartbeat sent once it is back must be in the table within a few seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from evaluator_sidecar.signals import Heartbeat, RedisSignals
from pkg_operator.context import open_context
from pkg_operator.heartbeats import RETRY_CAP_SECONDS, retry_delay, start_folder
from pkg_operator.settings import OperatorSettings
from pkg_testbed.chaos.faultproxy import FaultProxy
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

OUTAGE_S = 16.0
#: The longest the folder may wait between two attempts.
CAP_S = 2.0
#: A heartbeat must be folded this soon after PostgreSQL is back: the longest wait, one
#: blocking stream read (1 s) and room for a loaded machine.
WITHIN_S = CAP_S + 4.0


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    url = redis_server.url(6)  # a database of its own; flushed before and after
    client = aioredis.from_url(url)
    await client.flushdb()
    yield url
    await client.flushdb()
    await client.aclose()


def test_the_retry_delay_never_exceeds_the_cap_whatever_the_failures() -> None:
    assert RETRY_CAP_SECONDS <= CAP_S
    assert all(0 <= retry_delay(n) <= CAP_S for n in range(1, 200) for _ in range(20))


async def _folded(dsn: str, device: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchval("SELECT 1 FROM pkg_device_versions WHERE device_id = $1", device)
    finally:
        await conn.close()
    return row is not None


async def test_heartbeats_are_folded_within_seconds_of_postgres_coming_back(
    migrated_dsn: str, redis_url: str
) -> None:
    with FaultProxy.for_url(migrated_dsn) as proxy:
        settings = OperatorSettings(
            database_url=proxy.url(migrated_dsn),
            redis_url=redis_url,
            migrate_on_start=False,
            heartbeat_fold_interval_seconds=1.0,
        )
        ctx = await open_context(settings)
        ctx.tasks.append(start_folder(ctx))
        sender = aioredis.from_url(redis_url)
        signals = RedisSignals(sender)
        try:
            proxy.down()
            started = time.monotonic()
            # Beats arrive all through the outage: the folder fails on each batch.
            while time.monotonic() - started < OUTAGE_S:
                await signals.write_heartbeat(
                    _beat(f"during-{uuid.uuid4().hex[:6]}"), ttl_seconds=5
                )
                await asyncio.sleep(0.5)
            proxy.passthrough()
            back = time.monotonic()
            device = f"after-{uuid.uuid4().hex[:8]}"
            await signals.write_heartbeat(_beat(device), ttl_seconds=5)
            while not await _folded(migrated_dsn, device):
                assert time.monotonic() - back < WITHIN_S, (
                    f"no heartbeat folded {WITHIN_S:g} s after PostgreSQL came back"
                )
                await asyncio.sleep(0.2)
        finally:
            await sender.aclose()
            await ctx.close()


def _beat(device: str) -> Heartbeat:
    return Heartbeat(
        device_id=device,
        device_type="router",
        env="prod",
        target="router",
        region="eu",
        version="rules@1",
        snapshot_id=None,
        checksum=None,
        epoch=1,
        cohort="stable",
        ts=time.time(),
    )
