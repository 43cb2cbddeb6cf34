"""The test bed gives real servers: each smoke test talks to the real thing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis

from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration


async def test_asyncpg_runs_a_query_on_a_real_postgresql(postgres_server: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres_server.dsn())
    try:
        version = await conn.fetchval("SELECT current_setting('server_version_num')::int")
        assert version >= 140000
        assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
    finally:
        await conn.close()


async def test_a_redis_subscriber_receives_what_is_published(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url())
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("smoke")
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        assert await client.publish("smoke", "hello") == 1
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
        assert message is not None
        assert message["data"] == b"hello"
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_redis_comes_back_on_the_same_port_after_a_restart(redis_server: RedisServer) -> None:
    redis_server.stop()
    redis_server.start()
    client = aioredis.from_url(redis_server.url())
    try:
        assert await asyncio.wait_for(client.ping(), 5)
    finally:
        await client.aclose()
