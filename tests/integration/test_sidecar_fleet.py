"""Several pkg-sidecar processes on the real PostgreSQL and Redis: hot-swap, epochs, resync,
Redis outages, canary cohorts, heartbeats and self-test failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sidecar_fixtures import (
    Sidecar,
    all_on,
    clear_protocol_keys,
    create_database,
    drop_database,
    redis_cli,
    run,
    spec,
    store_snapshots,
    wait_for,
    with_signals,
)

from evaluator_sidecar.signals import (
    EPOCH_KEY,
    HEARTBEAT_STREAM,
    DesiredState,
    Heartbeat,
    RedisSignals,
    SnapshotRef,
    encode_desired_message,
)
from evaluator_sidecar.signals.cohorts import bucket
from pkg_testbed.postgres import PostgresServer
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.integration

DEPLOYMENT = "deployment-fleet-uid"


def device_in(low: float, high: float) -> str:
    """The first device id whose bucket for DEPLOYMENT lies in [low, high)."""
    for i in range(100_000):
        device = f"router-{i}"
        if low <= bucket(device, DEPLOYMENT) < high:
            return device
    raise AssertionError("no such device")


# Chosen so that the expected cohort is known: A joins at 10 %, B at 50 %, C only at 100 %.
DEVICE_A = device_in(0, 10)
DEVICE_B = device_in(10, 50)
DEVICE_C = device_in(50, 100)


class Fleet:
    def __init__(self, sidecars: list[Sidecar], redis: RedisServer, ids: dict[str, int]) -> None:
        self.sidecars = sidecars
        self.redis = redis
        self.ids = ids
        self.by_id = {s.device_id: s for s in sidecars}

    def publish_level(self, state: DesiredState, *, announce: bool = True) -> DesiredState:
        async def go(signals: RedisSignals) -> DesiredState:
            return await signals.publish_new_desired(state, announce=announce)

        return run(with_signals(self.redis.url(), go))

    def ref(self, version: str) -> SnapshotRef:
        return SnapshotRef(version, self.ids[version])

    def env_level(self, version: str) -> DesiredState:
        return DesiredState(epoch=0, env="prod", stable=self.ref(version), reason="test")

    def rollout_level(self, stable: str | None, canary: str | None, percent: float) -> DesiredState:
        return DesiredState(
            epoch=0,
            env="prod",
            stable=self.ref(stable) if stable else None,
            target="router",
            region="global",
            deployment=DEPLOYMENT,
            canary=self.ref(canary) if canary else None,
            canary_percent=percent,
            reason="test",
        )

    def wait_all_on(self, version: str, timeout: float = 8.0) -> None:
        try:
            wait_for(all_on(self.sidecars, version), timeout=timeout, what=f"all on {version}")
        except AssertionError:
            states = {s.device_id: s.health() for s in self.sidecars}
            raise AssertionError(f"not all on {version}: {states}") from None


@pytest.fixture(scope="module")
def fleet(
    postgres_server: PostgresServer,
    redis_server: RedisServer,
    pkg_template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    dsn = create_database(postgres_server, pkg_template_db)
    ids = store_snapshots(
        dsn,
        [
            spec("rules@1.4.0"),
            spec("rules@1.5.0"),
            spec("rules@1.6.0"),
            spec("rules@1.7.0", good_fixtures=False),
            spec("staging@1.0.0", env="staging"),
        ],
        promote="rules@1.4.0",
    )
    clear_protocol_keys(redis_server.url())
    workdir: Path = tmp_path_factory.mktemp("fleet")
    sidecars = [
        Sidecar(workdir, device_id=d, database_url=dsn, redis_url=redis_server.url())
        for d in (DEVICE_A, DEVICE_B, DEVICE_C)
    ]
    try:
        for s in sidecars:
            s.start(wait=False)
        for s in sidecars:  # started together, waited for one by one
            wait_for(s.alive, timeout=20, what=f"{s.device_id} alive")
        yield Fleet(sidecars, redis_server, ids)
    finally:
        for s in sidecars:
            s.stop()
        if not redis_server.running():
            redis_server.start()
        drop_database(postgres_server, dsn)


def heartbeats(redis: RedisServer, device: str) -> list[Heartbeat]:
    async def go(signals: RedisSignals) -> list[Heartbeat]:
        entries: Any = await signals.redis.xrange(HEARTBEAT_STREAM)
        beats = [Heartbeat.from_json(fields[b"hb"]) for _, fields in entries]
        return [b for b in beats if b.device_id == device]

    return run(with_signals(redis.url(), go))


def test_starts_on_the_databases_active_snapshot_and_beats(fleet: Fleet) -> None:
    fleet.wait_all_on("rules@1.4.0")
    for s in fleet.sidecars:
        assert s.evaluated_version() == "rules@1.4.0"
        health = s.health()
        assert health["redis_connected"] is True
        assert health["db_connected"] is True
    wait_for(lambda: bool(heartbeats(fleet.redis, DEVICE_A)), timeout=5, what="a heartbeat")
    beat = heartbeats(fleet.redis, DEVICE_A)[-1]
    assert (beat.version, beat.env, beat.target, beat.region) == (
        "rules@1.4.0",
        "prod",
        "router",
        "global",
    )
    key = redis_cli(fleet.redis.port, "GET", f"pkg:hb:prod:{DEVICE_A}")
    assert orjson.loads(key)["device_id"] == DEVICE_A
    assert 0 < int(redis_cli(fleet.redis.port, "TTL", f"pkg:hb:prod:{DEVICE_A}")) <= 2


def test_a_plain_activate_publish_swaps_every_sidecar(fleet: Fleet) -> None:
    started = time.monotonic()
    redis_cli(fleet.redis.port, "PUBLISH", "pkg_updates", "activate:rules@1.5.0")
    fleet.wait_all_on("rules@1.5.0", timeout=5)
    assert time.monotonic() - started < 5
    for s in fleet.sidecars:
        assert s.evaluated_version() == "rules@1.5.0"
        assert s.health()["cohort"] == "manual"


def test_a_plain_publish_for_another_environment_is_ignored(fleet: Fleet) -> None:
    fleet.wait_all_on("rules@1.5.0")
    failures = [s.health()["activation_failures"] for s in fleet.sidecars]
    redis_cli(fleet.redis.port, "PUBLISH", "pkg_updates", "activate:staging@1.0.0")
    time.sleep(1.5)  # a window for the message to arrive: what must not happen has no signal
    assert [s.version() for s in fleet.sidecars] == ["rules@1.5.0"] * 3
    assert [s.health()["activation_failures"] for s in fleet.sidecars] == failures


def test_a_structured_message_with_an_older_epoch_is_ignored(fleet: Fleet) -> None:
    level = fleet.publish_level(fleet.env_level("rules@1.6.0"))
    fleet.wait_all_on("rules@1.6.0")
    stale = DesiredState(
        epoch=level.epoch - 1, env="prod", stable=fleet.ref("rules@1.4.0"), updated_at=1.0
    )
    # Published raw, as a stale writer bypassing the compare-and-set would.
    redis_cli(fleet.redis.port, "PUBLISH", "pkg_updates", encode_desired_message(stale).decode())
    time.sleep(2.5)  # two resync intervals: a window in which nothing may change
    for s in fleet.sidecars:
        assert s.version() == "rules@1.6.0"
        assert s.health()["desired_epoch"] == level.epoch


def test_a_level_written_without_its_message_converges_by_resync(fleet: Fleet) -> None:
    fleet.publish_level(fleet.env_level("rules@1.6.0"))
    fleet.wait_all_on("rules@1.6.0")
    fleet.publish_level(fleet.env_level("rules@1.5.0"), announce=False)
    fleet.wait_all_on("rules@1.5.0", timeout=5)


@pytest.mark.parametrize(
    ("percent", "canaries"),
    [(10, {DEVICE_A}), (50, {DEVICE_A, DEVICE_B}), (100, {DEVICE_A, DEVICE_B, DEVICE_C})],
)
def test_canary_cohorts_hold_the_expected_devices(
    fleet: Fleet, percent: int, canaries: set[str]
) -> None:
    fleet.publish_level(fleet.rollout_level("rules@1.4.0", "rules@1.5.0", percent))

    def converged() -> bool:
        return all(
            s.version() == ("rules@1.5.0" if s.device_id in canaries else "rules@1.4.0")
            for s in fleet.sidecars
        )

    wait_for(converged, timeout=8, what=f"cohorts at {percent} %")
    for s in fleet.sidecars:
        expected = "canary" if s.device_id in canaries else "stable"
        assert s.health()["cohort"] == expected
    wait_for(
        lambda: all(heartbeats(fleet.redis, d)[-1].cohort == "canary" for d in canaries),
        timeout=3,
        what="heartbeats report the canary cohort",
    )


def test_a_snapshot_failing_its_fixtures_keeps_the_current_one_and_is_reported(
    fleet: Fleet,
) -> None:
    fleet.publish_level(fleet.env_level("rules@1.6.0"))
    fleet.publish_level(fleet.rollout_level(None, None, 0))  # the rollout defers to the env
    fleet.wait_all_on("rules@1.6.0")
    redis_cli(fleet.redis.port, "PUBLISH", "pkg_updates", "activate:rules@1.7.0")
    wait_for(
        lambda: all("fixtures" in (s.health()["last_error"] or "") for s in fleet.sidecars),
        timeout=5,
        what="self-test failure reported",
    )
    for s in fleet.sidecars:
        assert s.evaluated_version() == "rules@1.6.0"
        health = s.health()
        assert health["activation_failures"] >= 1
        assert health["degraded_mode"] is True
        status, metrics = s.get("/metrics")
        assert status == 200
        assert "pkg_fixture_failures_total 1.0" in metrics
    wait_for(
        lambda: any(
            b.activation_failures >= 1 and "fixtures" in (b.last_error or "")
            for b in heartbeats(fleet.redis, DEVICE_C)
        ),
        timeout=3,
        what="a heartbeat carrying the failure",
    )


def test_redis_lost_and_back_keeps_serving_and_converges(fleet: Fleet) -> None:
    level = fleet.publish_level(fleet.env_level("rules@1.5.0"))
    fleet.wait_all_on("rules@1.5.0")
    fleet.redis.stop()
    try:
        wait_for(
            lambda: all(not s.health()["redis_connected"] for s in fleet.sidecars),
            timeout=5,
            what="sidecars notice Redis is gone",
        )
        for s in fleet.sidecars:
            assert s.evaluated_version() == "rules@1.5.0"
            assert s.get("/readyz")[0] == 200
        time.sleep(1.5)
    finally:
        fleet.redis.start()
    wait_for(
        lambda: all(s.health()["redis_connected"] for s in fleet.sidecars),
        timeout=8,
        what="sidecars reconnect",
    )
    # Redis came back empty; the sidecars put the epoch counter back above what they run.
    wait_for(
        lambda: int(redis_cli(fleet.redis.port, "GET", EPOCH_KEY) or 0) >= level.epoch,
        timeout=5,
        what="epoch floor restored",
    )
    fleet.publish_level(fleet.env_level("rules@1.4.0"))
    fleet.wait_all_on("rules@1.4.0")
    for s in fleet.sidecars:
        assert "pkg_redis_reconnect_count_total 1.0" in s.get("/metrics")[1]


def test_bad_requests_get_400s_from_the_process(fleet: Fleet) -> None:
    s = fleet.sidecars[0]
    status, body = s.request("POST", "/v1/evaluate", b"{oops")
    assert status == 400
    assert "not valid JSON" in body["error"]["message"]
    status, body = s.post("/v1/evaluate", {"signals": {"x2": "high"}})
    assert status == 400
    assert "signals" in body["error"]["message"]
    status, body = s.post("/v1/evaluate?version=rules@0.0.1", {"tags": ["vip"]})
    assert status == 404
