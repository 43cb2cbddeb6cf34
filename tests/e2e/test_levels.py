"""Redis follows PostgreSQL, always (issue 14, item 1): the level reconciler on the test bed.

The operator and a fleet of ``pkg-sidecar`` processes run against the test bed.
Each test breaks the desired state in Redis the way it was broken in the field
(Redis restarted empty just before a promotion, a promotion made in SQL alone, a
level written by hand, FLUSHALL) and measures how long the fleet took to run
what PostgreSQL says again; the figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from test_rollout import Fleet

from pkg_testbed.cluster import Cluster, condition, snapshot_doc, wait_for
from pkg_testbed.product import OperatorProcess, SidecarProcess
from pkg_testbed.redis import RedisServer

pytestmark = pytest.mark.e2e

#: The operator's PKG_LEVEL_RESYNC_SECONDS in these tests, and the sidecars' resync (Fleet).
LEVEL_RESYNC = 3.0
SIDECAR_RESYNC = 2.0
#: One reconciler pass plus one sidecar resync, plus room for loading a snapshot.
WITHIN = LEVEL_RESYNC + SIDECAR_RESYNC + 4.0
DEVICES = 6


class LevelFleet(Fleet):
    """test_rollout's fleet, with the sidecars' resync interval chosen per test."""

    resync = SIDECAR_RESYNC

    def start(self, region: str, count: int) -> list[str]:
        ids = [f"{self.target}:{region}:{i}" for i in range(count)]
        for device in ids:
            proc = SidecarProcess(
                self.workdir,
                {
                    "PKG_DATABASE_URL": self.cluster.database_url,
                    "PKG_REDIS_URL": self.cluster.redis_url,
                    "PKG_ENV": self.env,
                    "PKG_TARGET": self.target,
                    "PKG_REGION": region,
                    "PKG_DEVICE_TYPE": "router",
                    "PKG_HEARTBEAT_INTERVAL_SECONDS": "1",
                    "PKG_RESYNC_INTERVAL_SECONDS": str(self.resync),
                    "PKG_REDIS_BACKOFF_MAX_SECONDS": "2",
                    "PKG_LOG_LEVEL": "WARNING",
                },
                device_id=device,
            )
            proc.proc.start()
            self.sidecars[device] = proc
        for device in ids:
            self.sidecars[device].start_wait()
        return ids

    def send(self, ids: list[str], sig: signal.Signals) -> None:
        for device in ids:
            pid = self.sidecars[device].proc.pid
            assert pid is not None
            os.killpg(pid, sig)


@pytest.fixture
def fleet_factory(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[..., LevelFleet]]:
    fleets: list[LevelFleet] = []

    def make(env: str, resync: float = SIDECAR_RESYNC) -> LevelFleet:
        # A target of its own: earlier tests' rollouts of "router" in this environment
        # are still published in the shared Redis, and a rollout level wins over the
        # environment's for the devices it targets.
        target = f"levels-{uuid.uuid4().hex[:8]}"
        fleet = LevelFleet(cluster, cluster.workdir / request.node.name, env, target)
        fleet.resync = resync
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


def operator(start: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start(PKG_LEVEL_RESYNC_SECONDS=str(LEVEL_RESYNC), PKG_STANDALONE="false")


def annotate(cluster: Cluster, namespace: str, name: str, action: str) -> str:
    token = uuid.uuid4().hex[:12]
    value = json.dumps({"action": action, "token": token, "actor": "e2e-tester"})
    cluster.kubectl(
        "annotate", "psnap", name, "-n", namespace, "--overwrite", f"pkg.seedcore.io/action={value}"
    )
    return token


def wait_status(cluster: Cluster, namespace: str, name: str, kind: str, value: str) -> None:
    wait_for(
        lambda: condition(cluster.get("psnap", name, namespace), kind).get("status") == value,
        what=f"psnap/{name} {kind}={value}",
    )


async def query(cluster: Cluster, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def converge(fleet: Fleet, ids: list[str], version: str, *, timeout: float, what: str) -> float:
    """Seconds until every device in ``ids`` runs ``version``."""
    started = time.monotonic()
    wait_for(lambda: fleet.converged(dict.fromkeys(ids, version)), timeout=timeout, what=what)
    return time.monotonic() - started


def report(what: str, seconds: float) -> None:
    print(f"\n[levels] {what}: {seconds:.2f}s", flush=True)


def start_env(
    cluster: Cluster,
    namespace: str,
    fleet_factory: Callable[..., LevelFleet],
    env: str,
    tag: str,
    *,
    resync: float = SIDECAR_RESYNC,
) -> tuple[LevelFleet, list[str], str]:
    """v1 promoted in ``env`` (autoPromote) and a fleet of devices running it."""
    v1 = f"rules@1.0.0-{tag}-{namespace}"
    cluster.apply(namespace, snapshot_doc("one", v1, env=env, auto=True))
    wait_status(cluster, namespace, "one", "Active", "True")
    fleet = fleet_factory(env, resync)
    ids = fleet.start("eu-west", DEVICES)
    converge(fleet, ids, v1, timeout=60, what=f"the fleet to run {v1}")
    return fleet, ids, v1


async def test_a_promotion_right_after_redis_restarted_empty_reaches_every_sidecar(
    *,
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
    redis_server: RedisServer,
) -> None:
    operator(start_operator)
    env = "prod"
    fleet, ids, _v1 = start_env(cluster, namespace, fleet_factory, env, "restart")
    v2 = f"rules@2.0.0-restart-{namespace}"
    cluster.apply(namespace, snapshot_doc("two", v2, env=env))
    wait_status(cluster, namespace, "two", "Ready", "True")

    # The sidecars are held (SIGSTOP) while Redis restarts empty and the promotion is
    # written, as when they are still in their reconnect back-off: they come back to a
    # level written after the restart, and must take it as new.
    fleet.send(ids, signal.SIGSTOP)
    client = aioredis.from_url(cluster.redis_url)
    try:
        redis_server.stop()
        redis_server.start()
        started = time.monotonic()
        annotate(cluster, namespace, "two", "promote")
        while time.monotonic() - started < WITHIN:
            raw = await client.get(f"pkg:desired:{env}")
            if raw is not None and json.loads(raw)["stable"]["version"] == v2:
                break
            await asyncio.sleep(0.05)
        report("Redis restarted empty: the promotion's level written", time.monotonic() - started)
    finally:
        fleet.send(ids, signal.SIGCONT)
        await client.aclose()
    seconds = converge(
        fleet, ids, v2, timeout=WITHIN, what=f"every sidecar to run {v2} after the restart"
    )
    report(
        f"Redis restarted empty, promotion at once: {DEVICES}/{DEVICES} devices on v2 "
        "after the sidecars came back",
        seconds,
    )
    assert seconds <= WITHIN


async def test_a_promotion_made_in_sql_alone_reaches_every_sidecar(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
) -> None:
    operator(start_operator)
    env = "staging"
    fleet, ids, _v1 = start_env(cluster, namespace, fleet_factory, env, "sql")
    v2 = f"rules@2.0.0-sql-{namespace}"
    cluster.apply(namespace, snapshot_doc("two", v2, env=env))
    wait_status(cluster, namespace, "two", "Ready", "True")
    (row,) = await query(cluster, "SELECT id FROM pkg_snapshots WHERE version = $1", v2)

    started = time.monotonic()
    await query(
        cluster,
        "SELECT pkg_promote_snapshot($1, $2::pkg_env, 'dba-by-hand', 'promoted in psql')",
        row["id"],
        env,
    )
    converge(fleet, ids, v2, timeout=WITHIN, what=f"every sidecar to run {v2} promoted in SQL")
    seconds = time.monotonic() - started
    report(f"promotion in SQL (NOTIFY): {DEVICES}/{DEVICES} devices on v2", seconds)
    assert seconds <= WITHIN
    # The snapshot's conditions follow PostgreSQL too, and say what the fleet reports.
    wait_status(cluster, namespace, "two", "Active", "True")
    wait_status(cluster, namespace, "one", "Active", "False")
    wait_for(
        lambda: (
            condition(cluster.get("psnap", "two", namespace), "FleetConverged").get("message")
            == f"{DEVICES} of {DEVICES} devices run {v2}"
        ),
        timeout=LEVEL_RESYNC * 3 + 5,
        what="FleetConverged True on every device",
    )
    # An activate: override: counted as manual, and FleetConverged says the fleet is not there.
    client = aioredis.from_url(cluster.redis_url)
    try:
        await client.publish("pkg_updates", f"activate:{_v1}")
    finally:
        await client.aclose()
    converge(fleet, ids, _v1, timeout=WITHIN, what=f"the override to move every sidecar to {_v1}")
    obj = wait_for(
        lambda: (
            (o := cluster.get("psnap", "two", namespace))
            and condition(o, "FleetConverged").get("status") == "False"
            and (o["status"].get("fleet") or {}).get("manual") == DEVICES
            and o
        ),
        timeout=LEVEL_RESYNC * 3 + 5,
        what="FleetConverged False with the overridden devices counted",
    )
    assert condition(obj, "FleetConverged")["message"].startswith(f"0 of {DEVICES} devices run")


async def test_a_level_written_by_hand_is_repaired_with_an_audit_row(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
) -> None:
    operator(start_operator)
    env = "dev"
    fleet, ids, v1 = start_env(cluster, namespace, fleet_factory, env, "tamper")
    v3 = f"rules@3.0.0-tamper-{namespace}"
    cluster.apply(namespace, snapshot_doc("three", v3, env=env, expect="escalate_vip"))
    wait_status(cluster, namespace, "three", "Ready", "True")
    (row,) = await query(cluster, "SELECT id, checksum FROM pkg_snapshots WHERE version = $1", v3)

    client = aioredis.from_url(cluster.redis_url)
    try:
        key = f"pkg:desired:{env}"
        held = json.loads(await client.get(key))
        forged = {
            "epoch": held["epoch"] + 1000,
            "env": env,
            "stable": {"version": v3, "snapshot_id": row["id"], "checksum": row["checksum"]},
            "updated_at": time.time(),
            "reason": "written by hand",
        }
        await client.set(key, json.dumps(forged))
        await client.publish(
            "pkg_updates", json.dumps({"kind": "desired", "key": key, "state": forged})
        )
        started = time.monotonic()
        # The forged level moves the fleet at once (the defect), then the reconciler takes it
        # back within one pass.
        moved = wait_for(
            lambda: [d for d, v in fleet.versions(ids).items() if v == v3] or None,
            timeout=WITHIN,
            what=f"the forged level to move a sidecar to {v3}",
        )
        raw = None
        while time.monotonic() - started < WITHIN:
            raw = await client.get(key)
            if raw is not None and json.loads(raw)["epoch"] > forged["epoch"]:
                break
            await asyncio.sleep(0.05)
        repaired = time.monotonic() - started
        converge(fleet, ids, v1, timeout=WITHIN, what=f"every sidecar back on {v1}")
        seconds = time.monotonic() - started
        report(
            f"level written by hand (epoch +1000): {len(moved)} moved to it; level repaired",
            repaired,
        )
        report(f"level written by hand: {DEVICES}/{DEVICES} back on v1", seconds)
        assert seconds <= WITHIN
        assert raw is not None
        level = json.loads(raw)
        assert level["stable"]["version"] == v1
        assert level["epoch"] > forged["epoch"]
    finally:
        await client.aclose()

    audits = await query(
        cluster,
        "SELECT details FROM pkg_audit_log WHERE action = 'desired.repaired' "
        "AND entity_id = $1 ORDER BY id DESC",
        f"pkg:desired:{env}",
    )
    found = [
        d
        for d in (
            json.loads(a["details"]) if isinstance(a["details"], str) else a["details"]
            for a in audits
        )
        if (d.get("found") or {}).get("stable", {}).get("version") == v3
    ]
    assert found, audits
    assert found[0]["reason"] == "different"
    assert found[0]["written"]["stable"]["version"] == v1
    assert found[0]["written"]["epoch"] > forged["epoch"]


async def test_flushall_is_rebuilt_from_postgresql(
    cluster: Cluster,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    fleet_factory: Callable[..., LevelFleet],
) -> None:
    operator(start_operator)
    env = "prod"
    # The sidecars re-read the level only every 30 s: what reaches them is the edge.
    fleet, ids, v1 = start_env(cluster, namespace, fleet_factory, env, "flush", resync=30)
    v2 = f"rules@2.0.0-flush-{namespace}"
    cluster.apply(namespace, snapshot_doc("two", v2, env=env))
    wait_status(cluster, namespace, "two", "Ready", "True")
    client = aioredis.from_url(cluster.redis_url)
    try:
        await client.flushall()
        started = time.monotonic()
        raw = None
        while time.monotonic() - started < LEVEL_RESYNC + 2 and raw is None:
            raw = await client.get(f"pkg:desired:{env}")
            if raw is None:
                await asyncio.sleep(0.05)
        report("FLUSHALL: the environment's level rewritten", time.monotonic() - started)
        assert raw is not None, "the operator did not rewrite the flushed level"
        assert json.loads(raw)["stable"]["version"] == v1
        # A promotion right after: its epoch must beat what the sidecars hold.
        started = time.monotonic()
        annotate(cluster, namespace, "two", "promote")
        converge(fleet, ids, v2, timeout=WITHIN, what=f"every sidecar on {v2}")
        seconds = time.monotonic() - started
        report(f"after FLUSHALL, a promotion: {DEVICES}/{DEVICES} devices on v2", seconds)
        assert seconds <= WITHIN
    finally:
        await client.aclose()
