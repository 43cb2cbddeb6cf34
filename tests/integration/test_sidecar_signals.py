"""The Redis protocol against the real Redis: compare-and-set, pub/sub, heartbeats stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from evaluator_sidecar.signals import (
    CHANNEL,
    CONSUMER_GROUP,
    EPOCH_KEY,
    HEARTBEAT_STREAM,
    ActivateMessage,
    DesiredMessage,
    DesiredState,
    Heartbeat,
    RedisSignals,
    SnapshotRef,
)
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def signals(redis_server: RedisServer) -> AsyncIterator[RedisSignals]:
    client = Redis.from_url(redis_server.url())
    keys = [k async for k in client.scan_iter(match="pkg:*")]
    if keys:
        await client.delete(*keys)
    yield RedisSignals(client)
    await client.aclose()


def state(epoch: int, version: str, env: str = "staging") -> DesiredState:
    return DesiredState(
        epoch=epoch, env=env, stable=SnapshotRef(version, 1, "a" * 64), updated_at=1.0
    )


class TestCompareAndSet:
    async def test_an_older_or_equal_epoch_is_refused(self, signals: RedisSignals) -> None:
        assert await signals.publish_desired(state(10, "rules@1.5.0"))
        assert not await signals.publish_desired(state(9, "rules@1.4.0"))
        assert not await signals.publish_desired(state(10, "rules@1.4.0"))
        stored = await signals.read_state("pkg:desired:staging")
        assert stored == state(10, "rules@1.5.0")

    async def test_writing_raises_the_global_counter_to_the_epoch(
        self, signals: RedisSignals
    ) -> None:
        await signals.publish_desired(state(40, "rules@1.5.0"))
        assert int(await signals.redis.get(EPOCH_KEY) or 0) == 40
        assert await signals.next_epoch() == 41

    async def test_new_epochs_always_increase(self, signals: RedisSignals) -> None:
        first = await signals.publish_new_desired(state(0, "rules@1.5.0"))
        second = await signals.publish_new_desired(state(0, "rules@1.6.0"))
        assert second.epoch > first.epoch
        assert (await signals.read_state(second.key)) == second

    async def test_the_epoch_floor_survives_a_reset_counter(self, signals: RedisSignals) -> None:
        await signals.redis.delete(EPOCH_KEY)
        assert await signals.raise_epoch_floor(77) == 77
        assert await signals.raise_epoch_floor(5) == 77
        assert await signals.next_epoch() == 78

    async def test_a_malformed_level_reads_as_absent(self, signals: RedisSignals) -> None:
        await signals.redis.set("pkg:desired:staging", b"{not json")
        levels = await signals.read_levels("staging", "router", "global")
        assert levels.env_state is None
        # ...and a valid writer repairs it.
        assert await signals.publish_desired(state(3, "rules@1.5.0"))


class TestPubSub:
    async def test_a_write_announces_the_structured_message(self, signals: RedisSignals) -> None:
        pubsub = await signals.subscribe()
        try:
            await signals.publish_desired(state(11, "rules@1.5.0"))
            await signals.publish_desired(state(10, "rules@1.0.0"))  # refused: no message
            await signals.publish_activate("rules@1.6.0")
            await signals.redis.publish(CHANNEL, b"garbage that is skipped")
            received = []
            async for message in signals.messages(pubsub, idle_seconds=0.5):
                if message is None:
                    break
                received.append(message)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        assert received == [
            DesiredMessage("pkg:desired:staging", state(11, "rules@1.5.0")),
            ActivateMessage("rules@1.6.0"),
        ]

    async def test_a_silent_write_publishes_nothing(self, signals: RedisSignals) -> None:
        pubsub = await signals.subscribe()
        try:
            await signals.publish_desired(state(12, "rules@1.5.0"), announce=False)
            message = await anext(signals.messages(pubsub, idle_seconds=0.3))
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        assert message is None
        assert (await signals.read_state("pkg:desired:staging")) == state(12, "rules@1.5.0")


def beat(device: str, evaluations: int = 10) -> Heartbeat:
    return Heartbeat(
        device_id=device,
        device_type="door",
        env="staging",
        target="edge:door",
        region="us-west",
        version="rules@1.5.0",
        snapshot_id=3,
        checksum="a" * 64,
        epoch=12,
        cohort="stable",
        evaluations=evaluations,
    )


class TestHeartbeats:
    async def test_a_beat_sets_the_device_key_with_ttl_and_appends_to_the_stream(
        self, signals: RedisSignals
    ) -> None:
        await signals.write_heartbeat(beat("door:D-1"), ttl_seconds=15)
        ttl = await signals.redis.ttl("pkg:hb:staging:door:D-1")
        assert 0 < ttl <= 15
        assert await signals.redis.xlen(HEARTBEAT_STREAM) == 1
        live = await signals.live_heartbeats("staging")
        assert [b.device_id for b in live] == ["door:D-1"]

    async def test_the_consumer_group_delivers_each_beat_once_until_acknowledged(
        self, signals: RedisSignals
    ) -> None:
        await signals.ensure_heartbeat_group()
        await signals.ensure_heartbeat_group()  # idempotent
        for i in range(3):
            await signals.write_heartbeat(beat(f"door:D-{i}", evaluations=i), ttl_seconds=15)
        await signals.redis.xadd(HEARTBEAT_STREAM, {"hb": b"{broken"})
        got = await signals.read_heartbeats("op-1", count=10, block_ms=100)
        assert [hb.device_id for _, hb in got] == ["door:D-0", "door:D-1", "door:D-2"]
        assert await signals.read_heartbeats("op-1", count=10, block_ms=100) == []
        # Unacknowledged beats are re-read after a restart; the malformed one was acknowledged.
        pending = await signals.read_heartbeats("op-1", pending=True)
        assert len(pending) == 3
        assert await signals.ack_heartbeats([eid for eid, _ in pending]) == 3
        assert await signals.read_heartbeats("op-1", pending=True) == []
        info = await signals.redis.xinfo_groups(HEARTBEAT_STREAM)
        assert any(g["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode()) for g in info)

    async def test_expired_devices_drop_out_of_the_live_set(self, signals: RedisSignals) -> None:
        await signals.write_heartbeat(beat("door:D-9"), ttl_seconds=1)
        assert [b.device_id for b in await signals.live_heartbeats("staging")] == ["door:D-9"]
        deadline = asyncio.get_running_loop().time() + 5
        while await signals.live_heartbeats("staging"):
            assert asyncio.get_running_loop().time() < deadline, "the device never expired"
            await asyncio.sleep(0.1)
