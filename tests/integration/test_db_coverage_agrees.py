"""pkg_deployment_coverage agrees with the operator's coverage, device by device.

The view counts what ``pkg_operator.rollout.coverage.fold`` counts in a
PolicyDeployment's status: live devices only, of the deployment's environment,
target and region, running what their canary cohort should run. The cohort in
SQL (``pkg_cohort_bucket``) is the sidecars' Python cohort, bit for bit.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from evaluator_sidecar.signals.cohorts import bucket, in_canary
from evaluator_sidecar.store.client import PKGClient
from evaluator_sidecar.store.migrations import apply_migrations, migrations_dir
from evaluator_sidecar.store.models import DeviceHeartbeat
from pkg_operator.rollout import coverage
from pkg_operator.rollout.spec import DEFAULT_HEARTBEAT_TTL_SECONDS

pytestmark = pytest.mark.integration

MakeSnapshot = Callable[..., Awaitable[int]]
MIGRATION = Path(__file__).resolve().parents[2] / "migrations" / "0006_pkg_device_environments.sql"


def _ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-:_./éß漢🙂"
    out = ["", "a", "router-0", "x" * 300, "é\u00e9", "edge:door/17"]
    while len(out) < n:
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
    return out


class TestCohortInSql:
    async def test_the_sql_bucket_is_the_python_bucket_for_many_ids(
        self, sql: asyncpg.Connection
    ) -> None:
        devices = _ids(1500, seed=14)
        deployments = ["3f1c9a2e-0000-4000-8000-000000000001", "uid-β", "42"]
        for deployment in deployments:
            rows = await sql.fetch(
                "SELECT d, pkg_cohort_bucket($1, d) AS b FROM unnest($2::text[]) AS d",
                deployment,
                devices,
            )
            got = {r["d"]: r["b"] for r in rows}
            mismatched = [d for d in devices if got[d] != bucket(d, deployment)]
            assert mismatched == [], f"{len(mismatched)} buckets differ, e.g. {mismatched[:3]}"

    async def test_membership_at_every_percent_is_the_python_membership(
        self, sql: asyncpg.Connection
    ) -> None:
        devices = _ids(600, seed=7)
        deployment = "0b4e7c1d-1111-4222-8333-444455556666"
        for percent in (0, 0.5, 1, 10, 33.3, 50, 99, 100):
            rows = await sql.fetch(
                "SELECT d, pkg_in_canary($1, d, $3) AS c FROM unnest($2::text[]) AS d",
                deployment,
                devices,
                float(percent),
            )
            got = {r["d"]: r["c"] for r in rows}
            want = {d: in_canary(d, deployment, percent) for d in devices}
            assert got == want, f"cohorts differ at {percent}%"


def test_the_views_default_ttl_is_the_operators_default() -> None:
    text = MIGRATION.read_text(encoding="utf-8")
    [default] = re.findall(r"coalesce\(d\.heartbeat_ttl_seconds,\s*(\d+)\)", text)
    assert int(default) == DEFAULT_HEARTBEAT_TTL_SECONDS


async def test_migration_0006_places_existing_devices_in_their_snapshots_environment(
    empty_dsn: str, tmp_path: Path
) -> None:
    before = tmp_path / "before-0006"
    before.mkdir()
    for path in sorted(migrations_dir().glob("000[1-5]_*.sql")):
        shutil.copy(path, before / path.name)
    await apply_migrations(empty_dsn, directory=before)
    conn = await asyncpg.connect(empty_dsn)
    try:
        staging = await conn.fetchval(
            "INSERT INTO pkg_snapshots (version, env, engine, checksum, content_sha256) "
            "VALUES ('rules@1.0.0-s', 'staging', 'native', repeat('a', 64), repeat('b', 64)) "
            "RETURNING id"
        )
        await conn.execute(
            "INSERT INTO pkg_device_versions (device_id, device_type, target, snapshot_id, version)"
            " VALUES ('by-id', 'router', 'router', $1, 'rules@1.0.0-s'),"
            "        ('by-version', 'router', 'router', NULL, 'rules@1.0.0-s'),"
            "        ('nowhere', 'router', 'router', NULL, 'rules@never-stored')",
            staging,
        )
        await apply_migrations(empty_dsn)
        rows = await conn.fetch(
            "SELECT device_id, environment FROM pkg_device_versions ORDER BY device_id"
        )
        assert [tuple(r) for r in rows] == [
            ("by-id", "staging"),
            ("by-version", "staging"),
            ("nowhere", "unknown"),
        ]
        key = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'pkg_device_versions_pkey'"
        )
        assert key == "PRIMARY KEY (environment, device_id)"
    finally:
        await conn.close()


class TestDevicesPerEnvironment:
    async def test_two_environments_keep_a_row_each_for_one_device_name(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        prod = await make_snapshot("rules@1.0.0")
        staging = await make_snapshot("rules@1.0.0-rc", env="staging")
        await client.update_device_heartbeats(
            [
                DeviceHeartbeat("r1", "router", prod, environment="prod"),
                DeviceHeartbeat("r1", "router", staging, environment="staging"),
            ]
        )
        rows = await client.get_device_versions(target="router")
        assert sorted((r["environment"], r["version"]) for r in rows) == [
            ("prod", "rules@1.0.0"),
            ("staging", "rules@1.0.0-rc"),
        ]
        only_staging = await client.get_device_versions(environment="staging")
        assert [r["version"] for r in only_staging] == ["rules@1.0.0-rc"]

    async def test_a_heartbeat_without_an_environment_takes_its_snapshots(
        self, client: PKGClient, make_snapshot: MakeSnapshot
    ) -> None:
        staging = await make_snapshot("rules@2.0.0", env="staging")
        await client.update_device_heartbeat("r9", "router", None, "rules@2.0.0")
        await client.update_device_heartbeat("r8", "router", None, "rules@never-stored")
        rows = {r["device_id"]: r for r in await client.get_device_versions(target="router")}
        assert (rows["r9"]["environment"], rows["r9"]["snapshot_id"]) == ("staging", staging)
        assert rows["r8"]["environment"] == "unknown"


async def _world(client: PKGClient, make_snapshot: MakeSnapshot) -> dict[str, object]:
    """prod and staging, each with a canary of router/eu at 30 %, and the same device names."""
    v1 = await make_snapshot("rules@1.0.0")
    v2 = await make_snapshot("rules@1.1.0", tag="gold")
    s1 = await make_snapshot("rules@1.0.0-s", env="staging")
    s2 = await make_snapshot("rules@1.1.0-s", env="staging", tag="gold")
    await client.promote_snapshot(v1, "ci", env="prod")
    await client.promote_snapshot(s1, "ci", env="staging")
    uid, staging_uid = "pdep-prod-router-eu", "pdep-staging-router-eu"
    await client.upsert_deployment(
        snapshot_id=v2, target="router", region="eu", percent=30, deployment_uid=uid
    )
    await client.upsert_deployment(
        snapshot_id=s2, target="router", region="eu", percent=30, deployment_uid=staging_uid
    )
    now = dt.datetime.now(dt.UTC)
    old = now - dt.timedelta(seconds=DEFAULT_HEARTBEAT_TTL_SECONDS * 4)
    beats = []
    for i in range(40):
        device = f"router-{i}"
        cohort = in_canary(device, uid, 30)
        # Most run what their cohort should; every seventh runs the other version.
        right = i % 7 != 0
        version = (
            ("rules@1.1.0" if cohort else "rules@1.0.0")
            if right
            else ("rules@1.0.0" if cohort else "rules@1.1.0")
        )
        beats.append(DeviceHeartbeat(device, "router", None, version, "eu", environment="prod"))
        # staging uses the same names, target and region, all on its canary.
        beats.append(
            DeviceHeartbeat(device, "router", None, "rules@1.1.0-s", "eu", environment="staging")
        )
    for i in range(5):  # silent for four TTLs: stale, counted by neither side
        beats.append(
            DeviceHeartbeat(
                f"router-old-{i}",
                "router",
                None,
                "rules@1.1.0",
                "eu",
                seen_at=old,
                environment="prod",
            )
        )
    beats.append(
        DeviceHeartbeat("router-us", "router", None, "rules@1.1.0", "us", environment="prod")
    )
    await client.update_device_heartbeats(beats)
    return {"uid": uid, "now": now}


class TestTheViewAgreesWithTheOperator:
    async def test_each_deployment_counts_with_its_own_heartbeat_ttl(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        v1 = await make_snapshot("rules@1.0.0")
        await client.promote_snapshot(v1, "ci", env="prod")
        for uid, target, ttl in (("short", "door", 5), ("default", "gate", None)):
            await client.upsert_deployment(
                snapshot_id=v1,
                target=target,
                region="eu",
                percent=100,
                deployment_uid=uid,
                heartbeat_ttl_seconds=ttl,
            )
        ten_seconds_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
        await client.update_device_heartbeats(
            [
                DeviceHeartbeat(f"{t}-1", t, v1, region="eu", seen_at=ten_seconds_ago)
                for t in ("door", "gate")
            ]
        )
        rows = await sql.fetch(
            "SELECT deployment_uid, devices_total, devices_stale FROM pkg_deployment_coverage"
        )
        # Silent for 10 s: stale at a 5 s TTL, live at the default 30 s.
        assert {r["deployment_uid"]: (r["devices_total"], r["devices_stale"]) for r in rows} == {
            "short": (0, 1),
            "default": (1, 0),
        }

    async def test_mid_canary_with_stale_devices_and_a_second_environment(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        world = await _world(client, make_snapshot)
        uid = str(world["uid"])
        # What the operator folds into status.coverage (rollout.observe's read, then fold).
        ttl = DEFAULT_HEARTBEAT_TTL_SECONDS
        rows = await client.get_device_versions(
            target="router", seen_within=dt.timedelta(seconds=ttl * 10), environment="prod"
        )
        covered, _ = coverage.fold(
            [
                coverage.DeviceReport(
                    r["device_id"], r["target"], r["region"], r["version"], r["last_seen"]
                )
                for r in rows
            ],
            target="router",
            region="eu",
            deployment_uid=uid,
            stable_version="rules@1.0.0",
            canary_version="rules@1.1.0",
            weight=30.0,
            ttl_seconds=ttl,
            step_started_at=None,
            now=dt.datetime.now(dt.UTC),
        )
        [view] = await sql.fetch(
            "SELECT * FROM pkg_deployment_coverage WHERE deployment_uid = $1", uid
        )
        assert view["environment"] == "prod"
        assert view["stable_version"] == "rules@1.0.0"
        assert {
            "targeted": view["devices_total"],
            "onCanary": view["devices_on_snapshot"],
            "expectedCanary": view["devices_expected_on_snapshot"],
            "onIntended": view["devices_on_intended"],
            "stale": view["devices_stale"],
        } == {
            "targeted": covered.targeted,
            "onCanary": covered.on_canary,
            "expectedCanary": covered.expected_canary,
            "onIntended": covered.on_intended,
            "stale": covered.stale,
        }
        # And the figures are what the world says: 40 live, 5 stale, 6 wrong (0, 7, .., 35).
        assert (covered.targeted, covered.stale, covered.on_intended) == (40, 5, 34)
        expected = sum(1 for i in range(40) if in_canary(f"router-{i}", uid, 30))
        assert covered.expected_canary == expected

    async def test_the_second_environment_is_counted_apart(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        await _world(client, make_snapshot)
        [staging] = await sql.fetch(
            "SELECT * FROM pkg_deployment_coverage WHERE environment = 'staging'"
        )
        assert (staging["devices_total"], staging["devices_on_snapshot"]) == (40, 40)
        # Outside the 30 % cohort, staging's devices should run its stable, not its canary.
        in_cohort = staging["devices_expected_on_snapshot"]
        assert staging["devices_on_intended"] == in_cohort

    async def test_a_longer_ttl_counts_the_silent_devices_as_live(
        self, client: PKGClient, make_snapshot: MakeSnapshot, sql: asyncpg.Connection
    ) -> None:
        world = await _world(client, make_snapshot)
        [row] = await sql.fetch(
            "SELECT devices_total, devices_stale FROM pkg_deployment_coverage_within($1) "
            "WHERE deployment_uid = $2",
            dt.timedelta(minutes=10),
            world["uid"],
        )
        assert (row["devices_total"], row["devices_stale"]) == (45, 0)
