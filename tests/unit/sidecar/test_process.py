"""The process-wide manager: concurrent first calls start exactly one."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from evaluator_sidecar.policy.model import PKGSnapshotData
from evaluator_sidecar.sidecar import process
from evaluator_sidecar.sidecar.manager import PKGManager


class NoClient:
    async def get_active_snapshot(self) -> PKGSnapshotData | None:
        return None

    async def get_snapshot_by_version(self, version: str) -> PKGSnapshotData | None:
        return None


async def test_concurrent_first_calls_start_one_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[PKGManager] = []

    async def slow_start(self: PKGManager) -> None:
        await asyncio.sleep(0.05)  # the window two unlocked first calls both fall into
        started.append(self)

    monkeypatch.setattr(PKGManager, "start", slow_start)
    redis = Redis.from_url("redis://127.0.0.1:1")  # never connects: start() is replaced
    process.set_global_pkg_manager(None)
    try:
        managers = await asyncio.gather(
            *(process.initialize_global_pkg_manager(NoClient(), redis) for _ in range(5))
        )
        assert len(started) == 1
        assert all(m is started[0] for m in managers)
        assert process.get_global_pkg_manager() is started[0]
    finally:
        process.set_global_pkg_manager(None)
