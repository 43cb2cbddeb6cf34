"""A sidecar reports a swap in a heartbeat at once, not at its next heartbeat interval.

The operator counts a rollout's coverage from heartbeats; with a 30 s interval a
device that swapped just after its regular beat would stay uncounted for 30 s.
A real ``pkg-sidecar`` process on the real PostgreSQL and Redis.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sidecar_fixtures import (
    Sidecar,
    create_database,
    drop_database,
    run,
    spec,
    store_snapshots,
    wait_for,
    with_signals,
)

from evaluator_sidecar.signals import (
    HEARTBEAT_STREAM,
    DesiredState,
    Heartbeat,
    RedisSignals,
    SnapshotRef,
)
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

INTERVAL = 30  # seconds: far longer than any wait below
V1, V2 = f"beat-{uuid.uuid4().hex[:6]}@1.0.0", f"beat-{uuid.uuid4().hex[:6]}@2.0.0"


class Setup:
    def __init__(self, sidecar: Sidecar, redis: RedisServer, ids: dict[str, int]) -> None:
        self.sidecar, self.redis, self.ids = sidecar, redis, ids

    def publish(self, version: str) -> DesiredState:
        state = DesiredState(
            epoch=0, env="dev", stable=SnapshotRef(version, self.ids[version]), reason="test"
        )

        async def go(signals: RedisSignals) -> DesiredState:
            return await signals.publish_new_desired(state)

        return run(with_signals(self.redis.url(), go))

    def beats(self) -> list[Heartbeat]:
        async def go(signals: RedisSignals) -> list[Heartbeat]:
            entries: Any = await signals.redis.xrange(HEARTBEAT_STREAM)
            mine = self.sidecar.device_id.encode()
            # The stream is shared: other tests put malformed beats on it on purpose.
            raws = [fields[b"hb"] for _, fields in entries if mine in fields.get(b"hb", b"")]
            beats = [Heartbeat.from_json(raw) for raw in raws]
            return [b for b in beats if b.device_id == self.sidecar.device_id]

        return run(with_signals(self.redis.url(), go))


@pytest.fixture(scope="module")
def setup(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    dsn = create_database(postgres_server, pkg_template_db)
    ids = store_snapshots(dsn, [spec(V1, env="dev"), spec(V2, env="dev")])
    workdir: Path = tmp_path_factory.mktemp("beat")
    sidecar = Sidecar(
        workdir,
        device_id=f"beat-{uuid.uuid4().hex[:8]}",
        database_url=dsn,
        redis_url=redis_server.url(),
        env="dev",
        extra={
            "PKG_HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL),
            "PKG_RESYNC_INTERVAL_SECONDS": str(INTERVAL),
        },
    )
    result = Setup(sidecar, redis_server, ids)
    try:
        result.publish(V1)
        sidecar.start()
        yield result
    finally:
        sidecar.stop()
        drop_database(postgres_server, dsn)


def test_the_sidecar_reports_its_first_snapshot(setup: Setup) -> None:
    wait_for(
        lambda: any(b.version == V1 for b in setup.beats()),
        timeout=10,
        what=f"a heartbeat naming {V1} (interval {INTERVAL} s)",
    )


def test_a_swap_is_reported_within_a_second_or_two_with_its_epoch(setup: Setup) -> None:
    wait_for(lambda: setup.sidecar.version() == V1, timeout=10, what=f"on {V1}")
    before = len(setup.beats())
    started = time.monotonic()
    level = setup.publish(V2)
    wait_for(
        lambda: any(b.version == V2 and b.epoch == level.epoch for b in setup.beats()),
        timeout=10,
        what=f"a heartbeat naming {V2} at epoch {level.epoch}",
    )
    assert time.monotonic() - started < INTERVAL / 3
    # One early beat for one swap, not a burst.
    assert len(setup.beats()) - before <= 2
