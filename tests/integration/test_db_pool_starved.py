"""A caller waiting for a pooled PostgreSQL connection gives up after a bound, with an
error saying so: a starved pool must fail loudly and be retried, never stall forever."""

from __future__ import annotations

import time

import pytest

from evaluator_sidecar.store import pool as pool_module
from evaluator_sidecar.store.errors import DatabaseUnavailableError
from evaluator_sidecar.store.pool import Database

pytestmark = pytest.mark.integration


async def test_a_caller_gives_up_when_every_connection_stays_busy(
    migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "ACQUIRE_TIMEOUT_SECONDS", 0.5)
    db = Database(migrated_dsn, min_size=1, max_size=1)
    try:
        async with db.connection() as held:
            began = time.monotonic()
            with pytest.raises(DatabaseUnavailableError, match="all 1 of the pool in use"):
                async with db.transaction():
                    pass
            assert time.monotonic() - began < 5
            assert await held.fetchval("SELECT 1") == 1
        # Released: the next caller gets it at once.
        async with db.transaction() as conn:
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await db.close()
