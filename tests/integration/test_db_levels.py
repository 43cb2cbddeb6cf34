"""Migration 0005 on a real PostgreSQL: epochs that only grow, and a NOTIFY per promotion."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.levels import PROMOTIONS_CHANNEL, PKGLevelsDAO

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]


async def test_epochs_grow_and_jump_past_a_floor(client: PKGClient) -> None:
    levels = PKGLevelsDAO(client.db)
    first = await levels.next_desired_epoch()
    second = await levels.next_desired_epoch()
    assert second > first
    # A level written by hand with a huge epoch: the next epoch is above it, and stays so.
    jumped = await levels.next_desired_epoch(1_000_000)
    assert jumped == 1_000_001
    assert await levels.next_desired_epoch() > jumped
    assert await levels.next_desired_epoch(5) > jumped  # a lower floor never moves it back


async def test_concurrent_allocations_past_a_floor_never_share_an_epoch(
    client: PKGClient,
) -> None:
    levels = PKGLevelsDAO(client.db)
    epochs = await asyncio.gather(*(levels.next_desired_epoch(500) for _ in range(20)))
    assert len(set(epochs)) == 20
    assert min(epochs) > 500


async def test_active_snapshots_name_each_environments_active_one(
    client: PKGClient, make_snapshot: MakeSnapshot
) -> None:
    levels = PKGLevelsDAO(client.db)
    assert await levels.active_snapshots() == {}
    first = await make_snapshot("rules@1.0.0")
    await client.promote_snapshot(first, "alice", "initial")
    active = await levels.active_snapshots()
    assert list(active) == ["prod"]
    assert (active["prod"].snapshot_id, active["prod"].version) == (first, "rules@1.0.0")
    assert active["prod"].checksum


async def test_every_promotion_and_rollback_row_sends_a_notify_with_its_env(
    client: PKGClient, make_snapshot: MakeSnapshot, migrated_dsn: str
) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(migrated_dsn)
    await listener.add_listener(
        PROMOTIONS_CHANNEL, lambda _c, _p, _ch, payload: received.put_nowait(str(payload))
    )
    try:
        first = await make_snapshot("rules@1.0.0")
        second = await make_snapshot("rules@1.1.0", tag="gold")
        await client.promote_snapshot(first, "alice", "initial")
        await client.promote_snapshot(second, "alice", "next")
        await client.rollback_snapshot(env="prod", actor="bob", reason="back")
        got = [await asyncio.wait_for(received.get(), timeout=5) for _ in range(3)]
        assert got == ["prod", "prod", "prod"]
    finally:
        await listener.close()
